"""Outbound HTTP proxies for upstream calls (a provider's ``proxy: http://[user:password@]host:port``).

An https upstream is reached through a ``CONNECT`` tunnel, so TLS runs end to end between Tollgate and the
upstream and the proxy sees only the host name; an http upstream is sent to the proxy with the request target
in absolute form (RFC 9112 §3.2.2). Credentials in the proxy URL go as ``Proxy-Authorization: Basic``.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MAX_REPLY = 16 * 1024  # a CONNECT reply's head larger than this is refused


class ProxyError(OSError):
    """The proxy could not be used: it refused the tunnel, or closed the connection."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: bytes  # the ``Proxy-Authorization`` header line (with its CRLF), or b""

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """``http://[user:password@]host[:port]`` (port 80 when left out); ``ValueError`` says what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"a proxy URL starts with http:// (got {url!r})")
        if not parts.hostname:
            raise ValueError(f"the proxy URL {url!r} names no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"a proxy URL is only http://[user:password@]host:port (got {url!r})")
        auth = b""
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            auth = b"Proxy-Authorization: Basic " + base64.b64encode(pair) + b"\r\n"
        return cls(parts.hostname, parts.port or 80, auth)


async def open_tunnel(sock: socket.socket, proxy: Proxy, authority: bytes) -> None:
    """Ask the proxy, over the connected ``sock``, for a tunnel to ``authority`` (``host:port``); returns
    once it is open (a 2xx answer), else raises ``ProxyError`` with the proxy's status line."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(
        sock, b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (authority, authority, proxy.authorization)
    )
    reply = b""
    while b"\r\n\r\n" not in reply:  # the proxy says nothing more before the client's first TLS bytes
        data = await loop.sock_recv(sock, 4096)
        if not data:
            raise ProxyError(None, f"the proxy {proxy.host}:{proxy.port} closed the connection")
        reply += data
        if len(reply) > MAX_REPLY:
            raise ProxyError(None, f"the proxy {proxy.host}:{proxy.port} sent an over-long answer")
    status_line = reply.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit() or not 200 <= int(fields[1]) < 300:
        target = authority.decode("idna")
        raise ProxyError(
            None, f"the proxy {proxy.host}:{proxy.port} refused a tunnel to {target}: {status_line}"
        )
