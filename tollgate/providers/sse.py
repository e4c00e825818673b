"""Server-sent events: split a byte stream into complete events without buffering more than one event."""

from __future__ import annotations

import re

import orjson

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class SSESplitter:
    """Feed raw bytes, get back complete events (each without its trailing blank line)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        if b"\r" not in buf:  # the common case (every major provider ends lines with \n): a plain split
            if b"\n\n" not in buf:
                self._buf = buf
                return []
            parts = buf.split(b"\n\n")
        elif b"\n\n" not in buf and b"\r\r" not in buf and b"\r\n\r\n" not in buf:
            self._buf = buf
            return []
        else:
            parts = _BOUNDARY.split(buf)
        self._buf = parts.pop()
        return [p for p in parts if p]

    @property
    def pending(self) -> bytes:
        return self._buf


def parse_event(raw: bytes) -> tuple[str, bytes]:
    """``(event name, data)`` of one event; data lines are joined with newlines, comments dropped."""
    if raw.startswith(b"data: ") and b"\n" not in raw and b"\r" not in raw:
        return "message", raw[6:]  # the common case: one data line
    name = "message"
    data: list[bytes] = []
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            v = line[5:]
            data.append(v[1:] if v.startswith(b" ") else v)
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode()
    return name, b"\n".join(data)


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"


def rename_model(frames: bytes, model: str) -> bytes:
    """``frames`` (whole ``data:`` events of chat-completion chunks) with each chunk's ``model`` set to
    ``model``: when a fallback model served a stream, its chunks name it, as a JSON reply's body does."""
    out = []
    for event in frames.split(b"\n\n"):
        if event.startswith(b"data: {"):
            try:
                chunk = orjson.loads(event[6:])
            except orjson.JSONDecodeError:
                chunk = None
            if isinstance(chunk, dict) and "model" in chunk:
                chunk["model"] = model
                event = b"data: " + orjson.dumps(chunk)
        out.append(event)
    return b"\n\n".join(out)
