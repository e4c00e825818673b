"""The HTTP server's own limits: how much of a request is read, and how long a client may take to send it.

``tollgate serve`` runs uvicorn with httptools. uvicorn provides the connection limit (``limit_concurrency``:
503 past ``max_connections``), the listen ``backlog`` and the keep-alive timeout between requests, and
``uvicorn_options`` passes those on. httptools leaves the rest to its caller: it has no limit on the size or
number of request headers (it concatenates a header's pieces as they arrive, so a 200 MB header holds the
event loop for tens of seconds), and uvicorn starts no timer before a request's first response, so a
connection that sends nothing, or a byte at a time, is held forever. ``LimitedHttpToolsProtocol`` adds
those limits in the one place that sees the bytes as they arrive, the connection's protocol, before the
parser or the application runs:

- request line and headers: at most ``max_header_bytes`` (431), at most ``max_headers`` headers (431),
  received within ``header_timeout`` seconds of the connection or of the request's first byte (408);
- body: received within ``body_timeout`` seconds of the headers, with no silence longer than
  ``idle_timeout`` seconds (408). Past ``body_limit`` bytes (only upload routes, such as a batch job's
  input, take more) the body is no longer held to ``body_timeout``, which would cap an upload's size by the
  client's bandwidth; the idle timeout still applies.

A refused connection gets a short plain-text answer (when it has sent part of a request) and is closed.
"""

from __future__ import annotations

import time
from asyncio import Transport
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tollgate.settings import ServerConfig


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header-size, header-count and read-time limits (module docstring)."""

    limits: ServerConfig = ServerConfig()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = True
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False
        self._deadline = 0.0  # when the headers or the body must be complete (monotonic)
        self._last_read = 0.0
        self._timer: Any = None
        self._body_bytes = 0  # of the request being read

    # connection --------------------------------------------------------------------------------------------
    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._last_read = time.monotonic()
        if not self._reading_headers:
            super().data_received(data)
            return
        # Feed no more than the headers' remaining room; what follows is fed only once they are complete.
        room = self.limits.max_header_bytes - self._header_bytes
        head, rest = data[:room], data[room:]
        self._header_bytes += len(head)
        super().data_received(head)
        if rest and not self._refused:
            if self._reading_headers:
                self._refuse(431, f"Request headers over the limit of {self.limits.max_header_bytes} bytes")
            else:
                super().data_received(rest)

    # parser callbacks --------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:  # a further request on this connection
            self._reading_headers = True
            self._start_header_clock()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            if not self._refused:
                self._refuse(431, f"More than {self.limits.max_headers} request headers")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._reading_headers = False
        self._header_bytes = self._header_count = 0
        super().on_headers_complete()
        self._start_body_clock()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            self._body_bytes += len(body)
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._stop_clock()
        super().on_message_complete()

    # clocks ------------------------------------------------------------------------------------------------
    def _start_header_clock(self) -> None:
        self._stop_clock()
        self._deadline = time.monotonic() + self.limits.header_timeout
        self._timer = self.loop.call_at(self._deadline, self._check_clock)

    def _start_body_clock(self) -> None:
        self._stop_clock()
        now = time.monotonic()
        self._deadline, self._last_read = now + self.limits.body_timeout, now
        self._body_bytes = 0
        self._timer = self.loop.call_at(
            min(self._deadline, now + self.limits.idle_timeout), self._check_clock
        )

    def _stop_clock(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_clock(self) -> None:
        """The headers' or the body's time is up, or the body may have been silent too long."""
        self._timer = None
        now = time.monotonic()
        if self._reading_headers:
            if self._header_bytes or self.cycle is not None:
                self._refuse(408, f"Request headers not received within {self.limits.header_timeout:g} s")
            else:  # a connection that never sent a request: nothing to answer
                self._close()
        elif now >= self._deadline and self._body_bytes <= self.limits.body_limit:
            self._refuse(408, f"Request body not received within {self.limits.body_timeout:g} s")
        elif now - self._last_read >= self.limits.idle_timeout:
            self._refuse(408, f"No request body data for {self.limits.idle_timeout:g} s")
        else:
            wake = self._last_read + self.limits.idle_timeout
            if self._body_bytes <= self.limits.body_limit:
                wake = min(self._deadline, wake)
            self._timer = self.loop.call_at(wake, self._check_clock)

    # refusals ----------------------------------------------------------------------------------------------
    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` unless a response has begun, then close the connection."""
        self._refused = True
        self._stop_clock()
        self.logger.debug("refused a request from %s: %s", self.client, message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application reads a disconnect and its answer is dropped
            cycle.message_event.set()
        if cycle is None or not cycle.response_started:
            body = message.encode()
            self.transport.write(
                STATUS_LINE[status]
                + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                + b"content-length: %d\r\n\r\n" % len(body)
                + body
            )
        self._close()

    def _close(self) -> None:
        self._refused = True
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(server: ServerConfig) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for ``server``'s limits (uvicorn builds one instance per connection)."""
    return type("GatewayHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": server})


def uvicorn_options(server: ServerConfig) -> dict[str, Any]:
    """What ``uvicorn.run`` needs to apply ``server``'s HTTP limits."""
    return {
        "http": protocol_class(server),
        "timeout_keep_alive": server.keep_alive_timeout,
        "limit_concurrency": server.max_connections,
        "backlog": server.backlog,
    }
