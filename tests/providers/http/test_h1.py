"""tollgate/providers/h1/: the upstream HTTP/1.1 client, against a scripted server on loopback.

The server is a raw asyncio socket server: each test says byte for byte what it answers, so framing
(Content-Length, chunked, close-delimited), keep-alive, compression and every failure are exercised exactly.
Each async test runs on asyncio's loop and on uvloop (conftest.py).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.providers.http.scripted import Handler, Script, ok, serve_forever
from tollgate.errors import UpstreamBadResponseError, UpstreamTimeoutError, UpstreamUnavailableError
from tollgate.providers import h1
from tollgate.providers.h1 import connection
from tollgate.providers.http import HttpClient


@pytest.fixture
async def script() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[Script, str]]]]:
    started: list[Script] = []

    async def make(handler: Handler) -> tuple[Script, str]:
        s = Script(handler)
        started.append(s)
        return s, await s.start()

    yield make
    for s in started:
        await s.stop()


async def test_post_sends_one_well_formed_request_and_reads_a_sized_body(script) -> None:  # type: ignore[no-untyped-def]
    s, url = await script(serve_forever(lambda body: ok(b"echo:" + body, b"X-Thing: A\r\n")))
    client = h1.Client()
    resp = await client.post(url + "/v1/chat?x=1", b'{"a":1}', {"Authorization": "Bearer k"}, 5)
    assert resp.status == 200
    assert resp.headers.get("x-thing") == "A" and resp.headers["X-THING"] == "A" and "X-Thing" in resp.headers
    assert await resp.read() == b'echo:{"a":1}'
    line, headers, body = s.requests[0]
    assert line == b"POST /v1/chat?x=1 HTTP/1.1"
    port = url.rsplit(":", 1)[1]
    assert headers["host"] == f"127.0.0.1:{port}"
    assert headers["authorization"] == "Bearer k"
    assert headers["content-length"] == "7" and body == b'{"a":1}'
    client.close()


async def test_keep_alive_reuses_one_connection_for_sequential_requests(script) -> None:  # type: ignore[no-untyped-def]
    s, url = await script(serve_forever(lambda body: ok(body)))
    client = h1.Client()
    for i in range(5):
        resp = await client.post(url + "/x", b"%d" % i, {}, 5)
        assert await resp.read() == b"%d" % i
    assert s.connections == 1
    client.close()


async def test_concurrent_requests_open_connections_up_to_the_limit_and_queue_the_rest(script) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        while True:
            await s.read_request(reader)
            await gate.wait()
            writer.write(ok(b"done"))
            await writer.drain()

    s, url = await script(handler)
    client = h1.Client(limit=2)
    calls = [asyncio.create_task(client.post(url + "/x", b"", {}, 5)) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert s.connections == 2 and len(s.requests) == 2  # the third waits for a free slot
    gate.set()
    for call in calls:
        assert await (await call).read() == b"done"
    assert s.connections == 2 and len(s.requests) == 3
    client.close()


async def test_waiting_for_a_pool_slot_counts_against_the_timeout(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        await asyncio.sleep(10)

    _, url = await script(handler)
    client = h1.Client(limit=1)
    first = asyncio.create_task(client.post(url + "/x", b"", {}, 5))
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await client.post(url + "/x", b"", {}, 0.1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    client.close()


async def test_chunked_body_streams_each_chunk_as_it_arrives(script) -> None:  # type: ignore[no-untyped-def]
    step = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await step.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await s.read_request(reader)  # the connection stays usable
        writer.write(ok(b"again"))
        await writer.drain()

    s, url = await script(handler)
    client = h1.Client()
    resp = await client.post(url + "/x", b"", {}, 5)
    resp.idle = 5
    parts = []
    async for data in resp.iter_any():
        parts.append(data)
        step.set()  # the second chunk is sent only once the first was read
    assert parts == [b"first", b"second"]
    assert await (await client.post(url + "/x", b"", {}, 5)).read() == b"again"
    assert s.connections == 1
    client.close()


async def test_body_delimited_by_the_close_is_read_whole_and_the_connection_not_reused(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")
        await writer.drain()

    s, url = await script(handler)
    client = h1.Client()
    assert await (await client.post(url + "/x", b"", {}, 5)).read() == b"part one, part two"
    assert await (await client.post(url + "/x", b"", {}, 5)).read() == b"part one, part two"
    assert s.connections == 2
    client.close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(script, encoding: str) -> None:  # type: ignore[no-untyped-def]
    payload = b'{"choices": []}' * 50
    packed = gzip.compress(payload) if encoding == "gzip" else zlib.compress(payload)
    _, url = await script(
        serve_forever(lambda _: ok(packed, b"Content-Encoding: %s\r\n" % encoding.encode()))
    )
    client = h1.Client()
    assert await (await client.post(url + "/x", b"", {}, 5)).read() == payload
    client.close()


async def test_a_corrupt_compressed_body_is_a_protocol_error(script) -> None:  # type: ignore[no-untyped-def]
    _, url = await script(serve_forever(lambda _: ok(b"not gzip at all", b"Content-Encoding: gzip\r\n")))
    client = h1.Client()
    resp = await client.post(url + "/x", b"", {}, 5)
    with pytest.raises(h1.ProtocolError, match="corrupt compressed body"):
        await resp.read()
    client.close()


async def test_a_body_larger_than_the_buffer_high_water_arrives_intact(script) -> None:  # type: ignore[no-untyped-def]
    big = bytes(range(256)) * (3 * h1.HIGH_WATER // 256)
    _, url = await script(serve_forever(lambda _: ok(big)))
    client = h1.Client()
    resp = await client.post(url + "/x", b"", {}, 5)
    resp.idle = 5
    received = bytearray()
    async for data in resp.iter_any():
        received += data
        await asyncio.sleep(0)  # a slow reader: the connection pauses and resumes
    assert bytes(received) == big
    client.close()


async def test_connection_close_from_the_upstream_means_a_new_connection_next_time(script) -> None:  # type: ignore[no-untyped-def]
    s, url = await script(serve_forever(lambda _: ok(b"bye", b"Connection: close\r\n")))
    client = h1.Client()
    for _ in range(2):
        assert await (await client.post(url + "/x", b"", {}, 5)).read() == b"bye"
    assert s.connections == 2
    client.close()


async def test_an_idle_connection_closed_by_the_upstream_is_not_reused(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        writer.write(ok(b"one"))
        await writer.drain()  # then the server closes the idle keep-alive connection

    s, url = await script(handler)
    client = h1.Client()
    assert await (await client.post(url + "/x", b"", {}, 5)).read() == b"one"
    await s.closed.wait()
    await asyncio.sleep(0.05)
    assert await (await client.post(url + "/x", b"", {}, 5)).read() == b"one"
    assert s.connections == 2
    client.close()


def closes_on_the_second_request(partial: bytes) -> Handler:
    """The first connection answers one request, then on the next sends ``partial`` and closes (a keep-alive
    connection closed by its idle timeout as a request arrived); later connections answer normally."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        first = s.connections == 1
        _, _, body = await s.read_request(reader)
        writer.write(ok(b"answer:" + body))
        await writer.drain()
        await s.read_request(reader)
        if first:
            writer.write(partial)
            return
        writer.write(ok(b"second connection"))
        await writer.drain()

    return handler


async def test_a_reused_connection_closed_before_any_answer_is_retried_once_on_a_new_one(script) -> None:  # type: ignore[no-untyped-def]
    s, url = await script(closes_on_the_second_request(b""))
    client = h1.Client()
    assert await (await client.post(url + "/x", b"1", {}, 5)).read() == b"answer:1"
    assert await (await client.post(url + "/x", b"2", {}, 5)).read() == b"answer:2"
    assert s.connections == 2
    assert [body for _, _, body in s.requests] == [b"1", b"2", b"2"]
    client.close()


async def test_a_reused_connection_closed_after_part_of_an_answer_is_not_retried(script) -> None:  # type: ignore[no-untyped-def]
    s, url = await script(closes_on_the_second_request(b"HTTP/1.1 200 OK\r\nContent-Le"))
    client = h1.Client()
    assert await (await client.post(url + "/x", b"1", {}, 5)).read() == b"answer:1"
    with pytest.raises(h1.Disconnected) as caught:
        await client.post(url + "/x", b"2", {}, 5)
    assert not isinstance(caught.value, h1.ClosedBeforeAnswer)
    assert s.connections == 1 and len(s.requests) == 2
    client.close()


async def test_a_response_abandoned_mid_body_drops_its_connection(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()
        await reader.read()  # until the client hangs up

    s, url = await script(handler)
    client = h1.Client()
    resp = await client.post(url + "/x", b"", {}, 5)
    resp.close()
    await asyncio.wait_for(s.closed.wait(), 2)
    client.close()


async def test_the_pool_gives_back_every_slot_whatever_becomes_of_its_requests(script) -> None:  # type: ignore[no-untyped-def]
    """200 requests through 4 slots, each ending one of six ways; afterwards no slot is held, at most 4
    connections are open, and a plain request still goes through."""
    endings = ["ok", "close", "cut", "slow", "stream", "garbage"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        while True:
            _, _, body = await s.read_request(reader)
            how = body.decode()
            if how == "close":  # closes without an answer
                return
            if how == "cut":  # closes mid-body
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort")
                return
            if how == "garbage":
                writer.write(b"NOT HTTP\r\n\r\n")
                return
            if how == "slow":  # answers after the client's timeout
                await asyncio.sleep(0.05)
            if how == "stream":  # the client abandons it after the first chunk
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
                await writer.drain()
                await asyncio.sleep(0.02)
                writer.write(b"1\r\nb\r\n0\r\n\r\n")
            else:
                writer.write(ok(b"fine"))
            await writer.drain()

    _, url = await script(handler)
    client = h1.Client(limit=4)
    outcomes: dict[str, int] = {}

    async def one(i: int) -> None:
        how = endings[i % len(endings)]
        try:
            resp = await client.post(url + "/x", how.encode(), {}, 0.03 if how == "slow" else 5)
            if how == "stream":
                resp.idle = 5
                async for _ in resp.iter_any():
                    break
                resp.close()
            else:
                await resp.read()
            outcome = "ok"
        except (OSError, TimeoutError) as exc:
            outcome = type(exc).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    await asyncio.gather(*(one(i) for i in range(200)))
    await asyncio.sleep(0.1)
    (pool,) = client._pools.values()
    assert pool._busy == 0 and not pool._waiters
    assert len(pool._all) <= 4
    # 34 requests each of ok and close (i % 6 == 0, 1), 33 each of cut, slow, stream and garbage
    assert outcomes == {"ok": 34 + 33, "ClosedBeforeAnswer": 34, "Disconnected": 33, "TimeoutError": 33,
                        "ProtocolError": 33}  # fmt: skip
    assert await (await client.post(url + "/x", b"ok", {}, 5)).read() == b"fine"
    client.close()


async def test_connection_refused_is_a_connect_error_and_maps_to_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    url = f"http://127.0.0.1:{port}/x"
    with pytest.raises(h1.ConnectError):
        await h1.Client().post(url, b"", {}, 2)
    with pytest.raises(UpstreamUnavailableError, match="cannot connect"):
        await HttpClient("up").post(url, b"", {}, 2)


async def test_each_address_of_the_host_is_tried_until_one_connects(
    script, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    refused = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = refused.sockets[0].getsockname()[1]
    refused.close()
    await refused.wait_closed()
    _, url = await script(serve_forever(lambda body: ok(b"reached")))
    port = int(url.rsplit(":", 1)[1])
    tried: list[str] = []

    async def two_addresses(host: str, _port: int) -> list[Any]:
        tried.append(host)
        tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(*tcp, ("127.0.0.1", dead_port)), (*tcp, ("127.0.0.1", port))]

    monkeypatch.setattr(connection, "resolve", two_addresses)
    client = h1.Client()
    assert await (await client.post("http://upstream.test:1234/x", b"", {}, 5)).read() == b"reached"
    assert tried == ["upstream.test"]
    client.close()


async def test_close_before_answering_is_disconnected_and_maps_to_bad_response(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)

    _, url = await script(handler)
    with pytest.raises(h1.Disconnected):
        await h1.Client().post(url + "/x", b"", {}, 5)
    with pytest.raises(UpstreamBadResponseError, match="closed the connection"):
        await HttpClient("up").post(url + "/x", b"", {}, 5)


async def test_close_mid_body_is_disconnected(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()

    _, url = await script(handler)
    resp = await h1.Client().post(url + "/x", b"", {}, 5)
    with pytest.raises(h1.Disconnected):
        await resp.read()
    with pytest.raises(UpstreamBadResponseError, match="mid-response"):
        await HttpClient("up").post(url + "/x", b"", {}, 5)


async def test_bytes_that_are_not_http_are_a_protocol_error(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    _, url = await script(handler)
    with pytest.raises(h1.ProtocolError, match="invalid HTTP response"):
        await h1.Client().post(url + "/x", b"", {}, 5)
    with pytest.raises(UpstreamBadResponseError, match="transport error"):
        await HttpClient("up").post(url + "/x", b"", {}, 5)


async def test_headers_that_do_not_arrive_in_time_time_out_and_drop_the_connection(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        await reader.read()  # never answers; returns when the client hangs up

    s, url = await script(handler)
    client = h1.Client()
    with pytest.raises(TimeoutError):
        await client.post(url + "/x", b"", {}, 0.1)
    await asyncio.wait_for(s.closed.wait(), 2)
    with pytest.raises(UpstreamTimeoutError, match="within 0.1 s"):
        await HttpClient("up").post(url + "/x", b"", {}, 0.1)
    client.close()


async def test_a_stream_silent_for_longer_than_idle_times_out(script) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Script) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await writer.drain()
        await reader.read()

    _, url = await script(handler)
    resp = await h1.Client().post(url + "/x", b"", {}, 5)
    resp.idle = 0.1
    got = []
    with pytest.raises(TimeoutError):
        async for data in resp.iter_any():
            got.append(data)
    assert got == [b"hi"]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://api.example.com/v1", b"api.example.com"),
        ("http://api.example.com:80/v1", b"api.example.com"),
        ("https://api.example.com/v1", b"api.example.com"),
        ("https://api.example.com:8443/v1", b"api.example.com:8443"),
        ("http://api.example.com:443/v1", b"api.example.com:443"),
        ("http://[::1]:9000/v1", b"[::1]:9000"),
        ("https://bücher.example/v1", b"xn--bcher-kva.example"),
    ],
)
def test_the_host_header_names_the_port_only_when_it_is_not_the_schemes_default(
    url: str, host: bytes
) -> None:
    pool, _ = h1.Client()._target(url)
    assert pool.host_header == host


async def test_an_ipv6_upstream_is_reached() -> None:
    s = Script(serve_forever(lambda body: ok(b"v6:" + body)))
    url = await s.start(host="::1")
    try:
        client = h1.Client()
        assert await (await client.post(url + "/x", b"hi", {}, 5)).read() == b"v6:hi"
        assert s.requests[0][1]["host"] == url.removeprefix("http://")
        client.close()
    finally:
        await s.stop()


def test_header_values_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        h1.encode_headers({"X-Evil": "a\r\nInjected: yes"})
    assert h1.encode_headers({"A": "1", "B": "two"}) == b"A: 1\r\nB: two\r\n"


async def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        await h1.Client().post("ftp://example.invalid/x", b"", {}, 1)


async def test_https_verifies_the_upstream_certificate(
    certificate: tuple[Path, Path], server_tls: ssl.SSLContext
) -> None:
    cert, _ = certificate
    s = Script(serve_forever(lambda body: ok(b"secure:" + body)))
    url = await s.start(server_tls)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        client = h1.Client(tls=trusting)
        assert await (await client.post(url + "/x", b"hi", {}, 5)).read() == b"secure:hi"
        client.close()
        with pytest.raises(h1.ConnectError):  # the system trust store does not know this certificate
            await h1.Client().post(url + "/x", b"hi", {}, 5)
    finally:
        await s.stop()
