"""Anthropic Messages API client (kind ``anthropic``): the only I/O of the Anthropic adapter.

OpenAI request bodies go out through ``build_request`` to ``POST {base_url}/v1/messages`` with the
``x-api-key`` and ``anthropic-version: 2023-06-01`` headers; answers come back through
``to_openai_response`` (JSON) or ``StreamTranslator`` (SSE) as OpenAI ``chat.completion`` bodies and
``chat.completion.chunk`` frames; error statuses and mid-stream ``error`` events go through ``map_error``
and ``error_from_event``. ``count_tokens`` forwards an Anthropic ``count_tokens`` body as it is (only the
model renamed) to ``POST {base_url}/v1/messages/count_tokens``; its errors are mapped the same way.

``base_url`` is the API root *without* ``/v1``, as Anthropic's own SDKs take it
(``https://api.anthropic.com``); a base URL that already ends in ``/v1`` is accepted too and not doubled.

The ``model`` of translated responses and chunks is the one the upstream reports (the upstream model
name), as the OpenAI-compatible passthrough relays it. Anthropic always reports usage, so every stream
ends with OpenAI's usage chunk (``choices: []``) emitted here, exact, with cache reads and writes counted
in ``prompt_tokens`` and cache reads in ``prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from tollgate.errors import UpstreamBadResponseError
from tollgate.providers.anthropic.errors import map_error
from tollgate.providers.anthropic.request import build_request, json_tool_name
from tollgate.providers.anthropic.response import to_openai_response, usage_from_anthropic
from tollgate.providers.anthropic.stream import StreamTranslator
from tollgate.providers.base import ChatResult, ChatStream, Provider
from tollgate.providers.http import HttpClient, UpstreamResponse
from tollgate.providers.sse import encode_data, parse_event
from tollgate.providers.upstream_stream import UpstreamSSEStream
from tollgate.settings import ProviderConfig

__all__ = ["API_VERSION", "AnthropicProvider", "AnthropicStream", "count_tokens_url", "messages_url"]

API_VERSION = "2023-06-01"


def messages_url(base_url: str) -> str:
    """``{base_url}/v1/messages``, tolerating a base URL that already ends in ``/v1``."""
    base = base_url.rstrip("/")
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def count_tokens_url(base_url: str) -> str:
    """``{base_url}/v1/messages/count_tokens``, with the same ``/v1`` tolerance as ``messages_url``."""
    return messages_url(base_url) + "/count_tokens"


class AnthropicStream(UpstreamSSEStream):
    """Reads Anthropic's SSE events and yields OpenAI chunk frames: one item per upstream read.

    ``finished`` turns true on ``message_stop``, which is also when the folded ``usage`` is set and the
    usage chunk is emitted. An ``error`` event (or an unreadable one) ends the stream with the mapped
    error, raised after the frames already translated from the same read were yielded.
    """

    def __init__(self, provider: str, resp: UpstreamResponse, translator: StreamTranslator) -> None:
        super().__init__(provider, resp)
        self._translator = translator

    def _event(self, raw: bytes) -> bytes:
        return b"".join(self._frame(chunk) for chunk in self._handle(raw))

    def _frame(self, chunk: dict[str, Any]) -> bytes:
        if not self.chunks:
            self.meta = {k: chunk[k] for k in ("id", "created", "model")}
        self.chunks += 1
        choices = chunk.get("choices")
        if choices:
            content = choices[0]["delta"].get("content")
            if content:
                self.text_parts.append(content)
        return encode_data(orjson.dumps(chunk))

    def _handle(self, raw: bytes) -> list[dict[str, Any]]:
        event, data = parse_event(raw)
        if not data:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponseError(
                f"{self._provider}: the upstream sent invalid JSON in its stream"
            ) from None
        translator = self._translator
        if event == "message_start" and isinstance(payload, dict):
            message = payload.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("id"), str) and message["id"]:
                    translator.chunk_id = message["id"]
                if isinstance(message.get("model"), str) and message["model"]:
                    translator.model = message["model"]
        chunks = translator.feed(event, payload)
        if translator.done:
            self.finished = True
            self.usage = translator.usage
            chunks.append(translator.usage_chunk())
        return chunks


class AnthropicProvider(Provider):
    def __init__(self, config: ProviderConfig, api_key: str | None) -> None:
        self.name = config.name
        self.config = config
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION, **config.headers}
        if api_key:
            headers["x-api-key"] = api_key
        self._headers = headers
        self._url = messages_url(config.base_url)
        self._client = HttpClient.for_provider(config)

    async def chat(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatResult:
        json_tool = json_tool_name(body)
        request = build_request(body, upstream_model)
        request.pop("stream", None)
        data = await self._post_json(self._url, request, timeout)
        if not isinstance(data, dict):
            raise UpstreamBadResponseError(f"{self.name}: the upstream answer is not a message object")
        reported = data.get("model")
        model = reported if isinstance(reported, str) and reported else upstream_model
        out = to_openai_response(data, model=model, created=int(time.time()), json_tool=json_tool)
        return ChatResult(orjson.dumps(out), out, usage_from_anthropic(data.get("usage")))

    async def chat_stream(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatStream:
        json_tool = json_tool_name(body)
        request = build_request(body, upstream_model)
        request["stream"] = True
        limit = min(timeout, self.config.timeout)
        resp = await self._client.open_stream(
            self._url, orjson.dumps(request), self._headers, limit, map_error
        )
        translator = StreamTranslator(
            model=upstream_model,
            created=int(time.time()),
            chunk_id=f"msg_{uuid.uuid4().hex}",
            json_tool=json_tool,
        )
        return AnthropicStream(self.name, resp, translator)

    async def count_tokens(self, body: dict[str, Any], upstream_model: str, timeout: float) -> int:
        """The upstream's ``input_tokens`` for an Anthropic ``count_tokens`` request ``body`` (Anthropic's
        own shape, not OpenAI's), sent with ``model`` set to ``upstream_model``."""
        url = count_tokens_url(self.config.base_url)
        data = await self._post_json(url, {**body, "model": upstream_model}, timeout)
        tokens = data.get("input_tokens") if isinstance(data, dict) else None
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise UpstreamBadResponseError(f"{self.name}: the upstream's token count has no input_tokens")
        return tokens

    async def _post_json(self, url: str, request: dict[str, Any], timeout: float) -> Any:
        """POST ``request``; an error status raises mapped, an answer that is not JSON raises a 502."""
        limit = min(timeout, self.config.timeout)
        _, data = await self._client.post_json(url, orjson.dumps(request), self._headers, limit, map_error)
        return data

    async def close(self) -> None:
        await self._client.close()
