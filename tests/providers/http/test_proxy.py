"""tollgate/providers/proxy.py and the upstream client through a proxy: a CONNECT tunnel for https
upstreams, absolute-form requests for http ones, credentials, and a proxy that refuses."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.providers.http.scripted import Script, ok, serve_forever
from tests.support.proxy import LoopbackProxy
from tollgate.errors import UpstreamUnavailableError
from tollgate.providers import h1
from tollgate.providers.http import HttpClient
from tollgate.providers.proxy import Proxy


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Script, str]]:
    s = Script(serve_forever(lambda body: ok(b"upstream got " + body)))
    url = await s.start()
    yield s, url
    await s.stop()


async def test_an_http_upstream_is_asked_through_the_proxy_in_absolute_form(upstream) -> None:  # type: ignore[no-untyped-def]
    s, url = upstream
    proxy = LoopbackProxy(password="me:s3cret")
    where = await proxy.start()
    try:
        client = h1.Client(proxy=Proxy.parse(f"http://me:s3cret@{where}"))
        for body in (b"one", b"two"):
            assert (
                await (await client.post(url + "/v1/chat?x=1", body, {}, 5)).read() == b"upstream got " + body
            )
        client.close()
    finally:
        await proxy.stop()
    assert len(proxy.heads) == 1  # one kept-alive connection to the proxy carried both requests
    assert proxy.heads[0][0] == f"POST {url}/v1/chat?x=1 HTTP/1.1"
    assert s.requests[0][1]["host"] == url.removeprefix("http://")
    assert s.requests[0][1]["proxy-authorization"] == "Basic " + base64.b64encode(b"me:s3cret").decode()


async def test_an_https_upstream_is_reached_through_a_connect_tunnel(
    certificate: tuple[Path, Path], server_tls: ssl.SSLContext
) -> None:
    cert, _ = certificate
    s = Script(serve_forever(lambda body: ok(b"secure " + body)))
    url = await s.start(server_tls)
    proxy = LoopbackProxy(password="u:p w")
    where = await proxy.start()
    try:
        client = h1.Client(
            tls=ssl.create_default_context(cafile=str(cert)), proxy=Proxy.parse(f"http://u:p%20w@{where}")
        )
        assert await (await client.post(url + "/x", b"hi", {}, 5)).read() == b"secure hi"
        client.close()
    finally:
        await proxy.stop()
        await s.stop()
    authority = url.removeprefix("https://")
    assert proxy.heads[0][:2] == [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    assert proxy.heads[0][2] == "Proxy-Authorization: Basic " + base64.b64encode(b"u:p w").decode()
    line, headers, _ = s.requests[0]
    assert line == b"POST /x HTTP/1.1" and "proxy-authorization" not in headers  # the tunnel hides it


async def test_a_proxy_that_refuses_the_tunnel_is_a_connect_error(certificate: tuple[Path, Path]) -> None:
    proxy = LoopbackProxy(password="right:one")
    where = await proxy.start()
    try:
        client = HttpClient("up", proxy=f"http://wrong:one@{where}")
        with pytest.raises(
            UpstreamUnavailableError, match="refused a tunnel to example.test:443: HTTP/1.1 407"
        ):
            await client.post("https://example.test/v1/x", b"", {}, 5)
        await client.close()
    finally:
        await proxy.stop()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://proxy.test:3128", "starts with http://"),
        ("proxy.test:3128", "starts with http://"),
        ("http://:3128", "names no host"),
        ("http://proxy.test:3128/path", "only http://"),
    ],
)
def test_proxy_urls_that_cannot_be_used_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Proxy.parse(url)


def test_a_proxy_url_gives_host_port_and_credentials() -> None:
    assert Proxy.parse("http://proxy.test") == Proxy("proxy.test", 80, b"")
    assert Proxy.parse("http://a%40b:pw@proxy.test:3128/") == Proxy(
        "proxy.test", 3128, b"Proxy-Authorization: Basic " + base64.b64encode(b"a@b:pw") + b"\r\n"
    )
