"""tollgate/api/server.py against a real ``tollgate serve``: keyless clients that send huge headers, slow
bodies or nothing at all are cut off, and the event loop keeps serving everybody else."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest
import yaml

from tests.support.gateway import gateway_config
from tests.support.replicas import Replica
from tests.support.servers import run
from tollgate.accounts.keys import generate_key
from tollgate.api.server import LimitedHttpToolsProtocol, uvicorn_options
from tollgate.settings import ServerConfig
from tollgate.simulator import SimServer
from tollgate.storage import open_storage

LIMITS = {
    "header_timeout": 1.5,
    "body_timeout": 2.0,
    "idle_timeout": 1.0,
    "max_header_bytes": 16_384,
    "body_limit": 65_536,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> Iterator[tuple[Replica, str]]:
    """A ``tollgate serve`` process with short read limits, and a funded key."""
    tmp = tmp_path_factory.mktemp("server-limits")
    db_url = f"sqlite+aiosqlite:///{tmp / 'tollgate.db'}"
    config = tmp / "tollgate.yaml"
    config.write_text(yaml.safe_dump(gateway_config(sim.base_url, db_url, **LIMITS)))

    async def key() -> str:
        store = open_storage(db_url)
        try:
            await store.migrate()
            account = await store.ensure_account("default")
            await store.add_balance(account.id, Decimal(10))
            new = generate_key(account.id, "test")
            await store.insert_key(new.record)
            return new.secret
        finally:
            await store.close()

    secret = str(run(key()))
    replica = Replica(config, tmp / "serve.log")
    try:
        replica.wait_ready()
        yield replica, secret
    finally:
        replica.stop()


def chat_latency(replica: Replica, key: str) -> float:
    client = openai.OpenAI(base_url=replica.url + "/v1", api_key=key, max_retries=0, timeout=30)
    started = time.monotonic()
    reply = client.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    return time.monotonic() - started


def connect(replica: Replica) -> socket.socket:
    return socket.create_connection(("127.0.0.1", replica.port), timeout=10)


def answer(sock: socket.socket) -> bytes:
    """What the server sent before closing the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_headers_past_the_size_limit_are_refused_with_431(served: tuple[Replica, str]) -> None:
    replica, _ = served
    with connect(replica) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        got = answer(sock)
    assert got.startswith(b"HTTP/1.1 431 ")
    assert got.endswith(b"Request headers over the limit of 16384 bytes")


def test_too_many_headers_are_refused_with_431(served: tuple[Replica, str]) -> None:
    replica, _ = served
    with connect(replica) as sock:
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        got = answer(sock)
    assert got.startswith(b"HTTP/1.1 431 ") and got.endswith(b"More than 100 request headers")


def test_a_200_mb_header_is_cut_off_while_other_clients_are_served_promptly(
    served: tuple[Replica, str],
) -> None:
    replica, key = served
    chat_latency(replica, key)  # warm
    sent = 0
    started = time.monotonic()

    def flood() -> None:
        nonlocal sent
        with connect(replica) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                while sent < 200_000_000:
                    sock.sendall(b"a" * 1_000_000)
                    sent += 1_000_000
            except OSError:  # the server closed the connection
                pass

    attacker = threading.Thread(target=flood)
    attacker.start()
    latencies = [chat_latency(replica, key) for _ in range(5)]
    attacker.join(30)
    assert not attacker.is_alive()
    # Before these limits the gateway read all 200 MB (≈ 100 s) and other requests waited up to 17 s.
    assert sent < 10_000_000 and time.monotonic() - started < 10
    assert max(latencies) < 2.0, latencies


def test_a_slow_body_is_cut_after_the_body_timeout_with_408(served: tuple[Replica, str]) -> None:
    replica, _ = served
    with connect(replica) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        sock.settimeout(0.3)
        got = b""
        while not got and time.monotonic() - started < 10:
            try:
                sock.sendall(b" ")  # one byte every 0.3 s: never silent for the idle timeout
                got = sock.recv(4096)
            except TimeoutError:
                continue
        lifetime = time.monotonic() - started
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert got.endswith(b"Request body not received within 2 s")
    assert 1.8 < lifetime < 5  # before: never cut


def test_an_upload_past_the_body_limit_is_not_held_to_the_body_timeout(served: tuple[Replica, str]) -> None:
    """A batch input bigger than ``body_limit`` sent steadily for longer than ``body_timeout`` is stored: only
    the idle timeout applies past the limit (else an upload's size would be capped by the client's speed)."""
    import httpx

    replica, key = served
    job = httpx.post(
        replica.url + "/v1/batch", json={"labels": ["a", "b"]}, headers={"Authorization": f"Bearer {key}"}
    ).json()
    line = b'{"text": "' + b"x" * 1000 + b'"}\n'
    body = line * 100  # 100 KB: over the 64 KB body limit
    head = (
        f"PUT /v1/batch/{job['job_id']}/input HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with connect(replica) as sock:
        sock.sendall(head + body[:70_000])
        started = time.monotonic()
        rest = body[70_000:]
        while rest:  # a line every 0.2 s: ~6 s, three times the body timeout, never idle for 1 s
            sock.sendall(rest[:1002])
            rest = rest[1002:]
            time.sleep(0.2)
        took = time.monotonic() - started
        got = answer_once(sock)
    assert took > 2 * LIMITS["body_timeout"]
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    status = httpx.get(
        replica.url + f"/v1/batch/{job['job_id']}", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert status["input_bytes"] == len(body)


def answer_once(sock: socket.socket) -> bytes:
    """The first bytes of the server's answer (the connection stays open: keep-alive)."""
    sock.settimeout(10)
    return sock.recv(65536)


def test_a_silent_body_is_cut_after_the_idle_timeout(served: tuple[Replica, str]) -> None:
    replica, _ = served
    with connect(replica) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        started = time.monotonic()
        got = answer(sock)
    assert got.startswith(b"HTTP/1.1 408 ") and got.endswith(b"No request body data for 1 s")
    assert time.monotonic() - started < 2.5


def test_idle_keyless_connections_are_closed_and_do_not_block_a_real_client(
    served: tuple[Replica, str],
) -> None:
    replica, key = served
    idle = [connect(replica) for _ in range(300)]
    partial = [connect(replica) for _ in range(50)]
    for sock in partial:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    try:
        assert chat_latency(replica, key) < 2.0
        time.sleep(LIMITS["header_timeout"] + 1.0)
        assert all(answer(s) == b"" for s in idle), "a connection that sent nothing is closed silently"
        assert all(answer(s).startswith(b"HTTP/1.1 408 ") for s in partial)
    finally:
        for sock in idle + partial:
            sock.close()
    assert chat_latency(replica, key) < 2.0


def test_serve_passes_the_limits_to_uvicorn() -> None:
    server = ServerConfig(keep_alive_timeout=3, max_connections=10, backlog=64, max_headers=7)
    options = uvicorn_options(server)
    assert issubclass(options["http"], LimitedHttpToolsProtocol) and options["http"].limits is server
    assert (options["timeout_keep_alive"], options["limit_concurrency"], options["backlog"]) == (3, 10, 64)
