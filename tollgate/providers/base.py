"""What every provider adapter offers the services: a JSON chat call and a streamed one, both in OpenAI shape.
Providers whose upstream serves OpenAI's Responses API (``responses_api``) also forward ``/responses`` natively.

Adapters translate; ``HttpClient`` does the I/O. A provider kind is registered in ``registry.py`` by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tollgate.errors import UpstreamError, UpstreamRejectedError
from tollgate.providers.usage import Usage


@dataclass(slots=True)
class ChatResult:
    """An OpenAI ``chat.completion``: the encoded body as it goes to the client, and its parsed form."""

    body: bytes
    data: dict[str, Any]
    usage: Usage | None


@dataclass(slots=True)
class EmbeddingsResult:
    """An OpenAI embeddings ``list`` response: encoded body, parsed form, and usage (prompt tokens only)."""

    body: bytes
    data: dict[str, Any]
    usage: Usage | None


class ChatStream(ABC):
    """An open upstream stream, yielding OpenAI SSE frames (``data: {chunk}\\n\\n``) without ``[DONE]``;
    one item may hold several frames (all that one upstream read completed).

    While iterating it keeps ``usage`` (when the upstream reported it), the completion text seen so far
    (to estimate usage when it did not) and ``finished`` (the upstream ended the stream properly).

    A ``native`` stream (``Provider.responses_stream``) yields the upstream's own Responses API events: they
    are relayed unchanged, with no usage chunk and no ``[DONE]`` added.
    """

    native = False

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.text_parts: list[str] = []
        self.finished = False
        self.chunks = 0
        self.meta: dict[str, Any] = {}

    def text(self) -> str:
        """The completion text seen so far (the usage estimate's input when the upstream reported none)."""
        return "".join(self.text_parts)

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abstractmethod
    def close(self) -> None:
        """Abort the upstream request (synchronous: it must work inside a cancelled task)."""

    def failure_event(self, err: UpstreamError) -> bytes:
        """The event that ends a ``native`` stream whose upstream failed after it started."""
        raise NotImplementedError(f"{type(self).__name__} is not a native stream ({err.message})")


class Provider(ABC):
    name: str
    responses_api: bool = False  # the upstream serves ``POST /responses``: see ``responses``
    completions_api: bool = False  # the upstream serves legacy ``POST /completions``: see ``completions``

    @abstractmethod
    async def chat(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatResult: ...

    @abstractmethod
    async def chat_stream(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatStream:
        """Open a stream; returns once the upstream accepted it (errors before that are raised here)."""

    async def embeddings(
        self,
        body: dict[str, Any],  # noqa: ARG002 - the default refuses whatever it is given
        upstream_model: str,  # noqa: ARG002
        timeout: float,  # noqa: ARG002
    ) -> EmbeddingsResult:
        """``POST /v1/embeddings`` in OpenAI shape; providers without embeddings keep this default."""
        raise UpstreamRejectedError(f"{self.name}: this provider does not offer embeddings")

    async def responses(
        self,
        body: dict[str, Any],  # noqa: ARG002 - the default refuses whatever it is given
        upstream_model: str,  # noqa: ARG002
        timeout: float,  # noqa: ARG002
    ) -> ChatResult:
        """``POST /responses`` forwarded as it is (``responses_api`` providers): ``data`` is the response
        object and ``usage`` is read from its Responses-shaped ``usage``."""
        raise UpstreamRejectedError(f"{self.name}: this provider does not serve the Responses API")

    async def responses_stream(
        self,
        body: dict[str, Any],  # noqa: ARG002 - the default refuses whatever it is given
        upstream_model: str,  # noqa: ARG002
        timeout: float,  # noqa: ARG002
    ) -> ChatStream:
        """``POST /responses`` with ``stream: true``, forwarded as it is: a ``native`` stream."""
        raise UpstreamRejectedError(f"{self.name}: this provider does not serve the Responses API")

    def serves(self, api: str) -> bool:
        """Whether the upstream serves ``api`` (``"responses"``, ``"completions"``) itself."""
        return self.responses_api if api == "responses" else api == "completions" and self.completions_api

    async def completions(
        self,
        body: dict[str, Any],  # noqa: ARG002 - the default refuses whatever it is given
        upstream_model: str,  # noqa: ARG002
        timeout: float,  # noqa: ARG002
    ) -> ChatResult:
        """Legacy ``POST /completions`` forwarded as it is (``completions_api`` providers): ``data`` is the
        ``text_completion`` object."""
        raise UpstreamRejectedError(f"{self.name}: this provider does not serve legacy completions")

    async def completions_stream(
        self,
        body: dict[str, Any],  # noqa: ARG002 - the default refuses whatever it is given
        upstream_model: str,  # noqa: ARG002
        timeout: float,  # noqa: ARG002
    ) -> ChatStream:
        """Legacy ``POST /completions`` with ``stream: true``, forwarded: a ``native`` stream."""
        raise UpstreamRejectedError(f"{self.name}: this provider does not serve legacy completions")

    @abstractmethod
    async def close(self) -> None: ...


@dataclass(slots=True)
class Capabilities:
    stream_usage: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
