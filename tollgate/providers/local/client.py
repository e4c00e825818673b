"""``kind: local``: a GGUF chat model run in-process by llama-cpp-python, and the bundled MiniLM embeddings.

Chat answers in OpenAI's shapes (``chat.completion`` JSON; ``chat.completion.chunk`` SSE frames ending with
a usage chunk), with usage counted exactly by the model's own tokenizer and sampler. Scheduling (FIFO, one
generation at a time per model, bounded queue) is described in ``engine.py``. Without the ``tollgate[local]``
extra, requests fail with 503 and the install hint; the rest of the gateway is unaffected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tollgate.local.bundled import INSTALL_HINT, MissingLocalModel, chat_model_path, installed
from tollgate.providers.base import ChatResult, ChatStream, EmbeddingsResult, Provider
from tollgate.providers.local.engine import END, ChatEngine, Job, get_engine
from tollgate.providers.local.request import chat_kwargs, embedding_inputs, embeddings_response
from tollgate.providers.sse import encode_data
from tollgate.providers.usage import Usage
from tollgate.settings import ProviderConfig

if TYPE_CHECKING:
    from tollgate.local.embedder import Embedder

EMBEDDING_MODEL = "all-minilm-l6-v2"
"""The upstream model name of the bundled embedder in deployments (``{provider: local, model: ...}``)."""


def map_failure(provider: str, exc: BaseException) -> UpstreamError:
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, MissingLocalModel):
        return UpstreamUnavailableError(f"{provider}: {exc}")
    if isinstance(exc, ValueError):  # llama-cpp-python: prompt + max_tokens over the context window, ...
        return UpstreamRejectedError(f"{provider}: {exc}")
    return UpstreamBadResponseError(f"{provider}: the local model failed: {type(exc).__name__}: {exc}")


class LocalStream(ChatStream):
    def __init__(self, provider: str, job: Job) -> None:
        super().__init__()
        self._provider = provider
        self._job = job

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        """One item per wake-up of the loop: every chunk the model produced meanwhile, in one piece."""
        queue = self._job.queue
        try:
            while not self.finished:
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                frames: list[bytes] = []
                for item in items:
                    if item is END:
                        self.finished = True
                        frames.append(self._usage_frame())
                        break
                    if isinstance(item, BaseException):
                        if frames:
                            yield b"".join(frames)
                        raise map_failure(self._provider, item)
                    frames.append(self._handle(item))
                yield b"".join(frames)
        finally:
            if not self.finished:
                self.close()

    def _handle(self, chunk: dict[str, Any]) -> bytes:
        if not self.chunks:
            self.meta = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
        choices = chunk.get("choices")
        if choices:
            content = (choices[0].get("delta") or {}).get("content")
            if content:
                self.text_parts.append(content)
        self.chunks += 1
        return encode_data(orjson.dumps(chunk))

    def _usage_frame(self) -> bytes:
        self.usage = Usage(
            prompt_tokens=self._job.prompt_tokens, completion_tokens=self._job.completion_tokens
        )
        chunk = {
            **self.meta,
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": self.usage.to_openai(),
        }
        return encode_data(orjson.dumps(chunk))

    def close(self) -> None:
        """Stop the generation between two tokens (or drop the request from the queue). Tokens generated
        so far were counted by the model: they become the usage, exact."""
        self._job.cancel()
        if self.usage is None and self._job.started and self._job.prompt_tokens:
            self.usage = Usage(
                prompt_tokens=self._job.prompt_tokens, completion_tokens=self._job.completion_tokens
            )


class LocalProvider(Provider):
    def __init__(self, config: ProviderConfig, api_key: str | None) -> None:  # noqa: ARG002 (no key)
        self.name = config.name
        self.config = config
        self._engine: ChatEngine | None = None
        self._embedder: Embedder | None = None

    # chat ---------------------------------------------------------------------------------------------

    def engine(self) -> ChatEngine:
        if self._engine is None:
            if not installed("llama_cpp"):
                raise UpstreamUnavailableError(
                    f"{self.name}: the local chat model needs llama-cpp-python; {INSTALL_HINT}"
                )
            try:
                path = self.config.model_path or str(chat_model_path())
            except MissingLocalModel as exc:
                raise UpstreamUnavailableError(f"{self.name}: {exc}") from None
            self._engine = get_engine(path, self.config.n_ctx)
        return self._engine

    def _submit(self, body: dict[str, Any], upstream_model: str, *, stream: bool) -> Job:
        if upstream_model == EMBEDDING_MODEL:
            raise UpstreamRejectedError(
                f"{self.name}: {upstream_model} is an embedding model (POST /v1/embeddings)"
            )
        kwargs = chat_kwargs(self.name, body, upstream_model, stream=stream)
        return self.engine().submit(kwargs, max_queue=self.config.max_queue, provider=self.name)

    async def chat(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatResult:
        job = self._submit(body, upstream_model, stream=False)
        try:
            async with asyncio.timeout(min(timeout, self.config.timeout)):
                item = await job.queue.get()
        except TimeoutError:
            job.cancel()
            raise UpstreamTimeoutError(f"{self.name}: the local model did not finish in time") from None
        except asyncio.CancelledError:
            job.cancel()
            raise
        if isinstance(item, BaseException):
            raise map_failure(self.name, item)
        data: dict[str, Any] = item
        # llama-cpp-python counts a JSON completion itself (the same tokens our counters see in streams).
        usage = Usage.from_openai(data.get("usage")) or Usage(
            prompt_tokens=job.prompt_tokens, completion_tokens=job.completion_tokens
        )
        data["model"] = upstream_model
        data["usage"] = usage.to_openai()
        return ChatResult(orjson.dumps(data), data, usage)

    async def chat_stream(
        self,
        body: dict[str, Any],
        upstream_model: str,
        timeout: float,  # noqa: ARG002
    ) -> ChatStream:
        # Accepted once queued; the caller's first-token deadline covers the wait in the queue.
        return LocalStream(self.name, self._submit(body, upstream_model, stream=True))

    # embeddings ---------------------------------------------------------------------------------------

    async def embeddings(self, body: dict[str, Any], upstream_model: str, timeout: float) -> EmbeddingsResult:
        if upstream_model != EMBEDDING_MODEL:
            raise UpstreamRejectedError(
                f"{self.name}: {upstream_model} is not an embedding model (local embeddings: {EMBEDDING_MODEL})"
            )
        if self._embedder is None:
            try:
                from tollgate.local.embedder import get_embedder
            except ImportError as exc:
                raise UpstreamUnavailableError(
                    f"{self.name}: local embeddings need {exc.name!r}; {INSTALL_HINT}"
                ) from None
            self._embedder = get_embedder()
        embedder = self._embedder
        try:
            async with asyncio.timeout(min(timeout, self.config.timeout)):
                await embedder.aload()
                texts = embedding_inputs(self.name, body, embedder.dimensions)
                vectors, counts = await embedder.aencode_counted(texts)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"{self.name}: the local embedding model did not finish in time"
            ) from None
        except (MissingLocalModel, ValueError, RuntimeError) as exc:
            raise map_failure(self.name, exc) from None
        data = embeddings_response(
            vectors, upstream_model, sum(counts), base64_encoding=body.get("encoding_format") == "base64"
        )
        return EmbeddingsResult(orjson.dumps(data), data, Usage(prompt_tokens=sum(counts)))

    async def close(self) -> None:
        """Nothing per provider: the models are shared by the process and live as long as it."""
