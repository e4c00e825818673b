"""The read loop every HTTP upstream stream shares: SSE in, one item per upstream read out.

A subclass turns one upstream event into the bytes the client gets (``_event``: OpenAI frames for translated
providers, the raw event for native ones) and may add bytes after each read (``_after_read``, e.g. a usage
chunk once usage is known). A bad event raises an ``UpstreamError``: the frames of the same read before it
are still yielded, then the error ends the stream. Transport failures map into the error tree.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator

from tollgate.errors import UpstreamError
from tollgate.providers.base import ChatStream
from tollgate.providers.http import UpstreamResponse, transport_error
from tollgate.providers.sse import SSESplitter


class UpstreamSSEStream(ChatStream):
    # Stop reading once ``finished`` (the upstream's end marker); Gemini has none and reads to the close.
    stop_when_finished = True

    def __init__(self, provider: str, resp: UpstreamResponse) -> None:
        super().__init__()
        self._provider = provider
        self._resp = resp

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        splitter = SSESplitter()
        try:
            async for data in self._resp.iter_any():
                out, failure = self._read(splitter.feed(data))
                if out:
                    yield out
                if failure is not None:
                    raise failure
                if self.finished and self.stop_when_finished:
                    return
        except (OSError, TimeoutError) as exc:
            raise transport_error(self._provider, exc) from None
        out, failure = self._read(splitter.feed(b"\n\n"))
        if out:
            yield out
        if failure is not None:
            raise failure

    def _read(self, events: list[bytes]) -> tuple[bytes, UpstreamError | None]:
        frames: list[bytes] = []
        for raw in events:
            try:
                frames.append(self._event(raw))
            except UpstreamError as err:
                return b"".join(frames), err
            if self.finished and self.stop_when_finished:
                break
        frames.append(self._after_read())
        return b"".join(frames), None

    @abstractmethod
    def _event(self, raw: bytes) -> bytes:
        """The bytes to relay for one upstream event (``b""`` for none); raise ``UpstreamError`` if bad."""

    def _after_read(self) -> bytes:
        return b""

    def close(self) -> None:
        self._resp.close()
