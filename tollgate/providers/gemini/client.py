"""``kind: gemini`` providers: the I/O around the pure Gemini translators of this package.

* ``base_url`` is the API host **without** the version segment, normally ``DEFAULT_BASE_URL``
  (``https://generativelanguage.googleapis.com``); ``endpoint_path`` adds ``/v1beta/models/{model}:method``.
  A ``base_url`` that already ends in ``/v1beta`` is accepted and the segment is not doubled.
* Auth: the provider key goes in the ``x-goog-api-key`` header (never in the query string, which leaks into
  logs); ``headers`` from the config are added as they are.
* ``chat``: ``:generateContent`` → ``to_openai_response`` → the OpenAI body encoded with orjson.
* ``chat_stream``: ``:streamGenerateContent?alt=sse`` → ``GeminiStream``. Gemini sends no ``[DONE]``: the
  stream ends when the connection closes, and it ended properly when every choice got a ``finishReason``.
* Non-2xx answers and error events inside a stream → ``map_error`` / ``map_error_payload``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from tollgate.errors import UpstreamBadResponseError
from tollgate.providers.base import ChatResult, ChatStream, Provider
from tollgate.providers.gemini.errors import map_error
from tollgate.providers.gemini.request import build_request, endpoint_path
from tollgate.providers.gemini.response import to_openai_response, usage_from_gemini
from tollgate.providers.gemini.stream import StreamTranslator
from tollgate.providers.http import HttpClient, UpstreamResponse
from tollgate.providers.sse import encode_data, parse_event
from tollgate.providers.upstream_stream import UpstreamSSEStream
from tollgate.settings import ProviderConfig

__all__ = ["DEFAULT_BASE_URL", "GeminiProvider", "GeminiStream"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
_VERSION_SUFFIX = "/v1beta"


def _response_id(data: dict[str, Any]) -> str:
    rid = data.get("responseId")
    return f"chatcmpl-{rid}" if isinstance(rid, str) and rid else f"chatcmpl-{uuid.uuid4().hex}"


def _model_of(data: dict[str, Any], upstream_model: str) -> str:
    version = data.get("modelVersion")
    return version if isinstance(version, str) and version else upstream_model


class GeminiStream(UpstreamSSEStream):
    """One ``streamGenerateContent?alt=sse`` response, re-framed as OpenAI chunks.

    Each upstream read becomes at most one yielded item holding every frame that read completed. Once every
    choice finished and Gemini reported ``usageMetadata``, that item also carries the OpenAI usage chunk and
    ``usage`` is set (later figures, if any, still update ``usage``); otherwise ``usage`` stays ``None`` and
    the relay estimates.
    """

    stop_when_finished = False  # Gemini sends no end marker: read until the connection closes

    def __init__(self, provider: str, resp: UpstreamResponse, upstream_model: str) -> None:
        super().__init__(provider, resp)
        self._model = upstream_model
        self._translator: StreamTranslator | None = None

    def _event(self, raw: bytes) -> bytes:
        return b"".join(self._handle(raw))

    def _after_read(self) -> bytes:
        return self._ending()

    def _ending(self) -> bytes:
        """Once every choice finished: ``finished``, and the usage chunk as soon as usage is known (Gemini
        puts the final ``usageMetadata`` on the ``finishReason`` event, so it goes out in the same write)."""
        translator = self._translator
        if translator is None or not translator.finished:
            return b""
        self.finished = True
        usage = translator.usage
        if usage is None:
            return b""
        sent, self.usage = self.usage is not None, usage
        return b"" if sent else encode_data(orjson.dumps(translator.usage_chunk()))

    def _handle(self, raw: bytes) -> list[bytes]:
        _, data = parse_event(raw)
        if not data.strip():
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponseError(
                f"{self._provider}: the upstream sent invalid JSON in its stream"
            ) from None
        if not isinstance(payload, dict):
            raise UpstreamBadResponseError(f"{self._provider}: the upstream sent a non-object stream event")
        translator = self._translator
        if translator is None:
            translator = self._translator = StreamTranslator(
                model=_model_of(payload, self._model),
                created=int(time.time()),
                chunk_id=_response_id(payload),
            )
        frames: list[bytes] = []
        for chunk in translator.feed(payload):
            if not self.chunks:
                self.meta = {"id": chunk["id"], "created": chunk["created"], "model": chunk["model"]}
            self.chunks += 1
            for choice in chunk["choices"]:
                self._collect_text(choice["delta"])
            frames.append(encode_data(orjson.dumps(chunk)))
        return frames

    def _collect_text(self, delta: dict[str, Any]) -> None:
        """Keep what the relay needs to estimate completion tokens if usage never comes."""
        for key in ("reasoning_content", "content"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self.text_parts.append(text)
        for call in delta.get("tool_calls") or ():
            args = call.get("function", {}).get("arguments")
            if isinstance(args, str) and args:
                self.text_parts.append(args)


class GeminiProvider(Provider):
    def __init__(self, config: ProviderConfig, api_key: str | None) -> None:
        self.name = config.name
        self.config = config
        headers = {"Content-Type": "application/json", **config.headers}
        if api_key:
            headers["x-goog-api-key"] = api_key
        self._headers = headers
        base = config.base_url.rstrip("/")
        self._base = base[: -len(_VERSION_SUFFIX)] if base.endswith(_VERSION_SUFFIX) else base
        self._client = HttpClient.for_provider(config)

    def _url(self, upstream_model: str, *, stream: bool) -> str:
        return self._base + endpoint_path(upstream_model, stream=stream)

    async def chat(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatResult:
        payload = orjson.dumps(build_request(body))
        url = self._url(upstream_model, stream=False)
        limit = min(timeout, self.config.timeout)
        _, data = await self._client.post_json(url, payload, self._headers, limit, map_error)
        if not isinstance(data, dict):
            raise UpstreamBadResponseError(
                f"{self.name}: the upstream answer is not a GenerateContentResponse"
            )
        out = to_openai_response(
            data,
            model=_model_of(data, upstream_model),
            created=int(time.time()),
            response_id=_response_id(data),
        )
        meta = data.get("usageMetadata")
        usage = usage_from_gemini(meta) if isinstance(meta, dict) else None
        return ChatResult(orjson.dumps(out), out, usage)

    async def chat_stream(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatStream:
        payload = orjson.dumps(build_request(body))
        limit = min(timeout, self.config.timeout)
        url = self._url(upstream_model, stream=True)
        resp = await self._client.open_stream(url, payload, self._headers, limit, map_error)
        return GeminiStream(self.name, resp, upstream_model)

    async def close(self) -> None:
        await self._client.close()
