"""OpenAI-compatible upstreams (OpenAI, DeepSeek, Groq, vLLM, Ollama, ...): forward, barely translated.

The request goes out as the client sent it (unknown fields included) with the upstream model name and, for
streams, ``stream_options.include_usage`` set so every stream can be billed exactly. Responses go back to
the client byte for byte.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollgate.errors import (
    UpstreamBadResponseError,
    UpstreamError,
    UpstreamRateLimitError,
    UpstreamRejectedError,
    UpstreamUnavailableError,
)
from tollgate.providers.base import ChatResult, ChatStream, EmbeddingsResult, Provider
from tollgate.providers.http import HttpClient, UpstreamResponse
from tollgate.providers.openai_responses import ResponsesStream, parse_response
from tollgate.providers.presets import GENERIC, Preset, adapt_body, preset
from tollgate.providers.sse import DONE, encode_data, parse_event
from tollgate.providers.upstream_stream import UpstreamSSEStream
from tollgate.providers.usage import Usage
from tollgate.settings import ProviderConfig


def _upstream_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        return text or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return str(data)[:200]


def map_error(provider: str, status: int, body: bytes, retry_after: str | None = None) -> UpstreamError:
    msg = f"{provider}: upstream answered {status}: {_upstream_message(body)}"
    headers = {"Retry-After": retry_after} if retry_after else {}
    if status == 429:
        return UpstreamRateLimitError(msg, headers=headers)
    if status in (401, 403):
        return UpstreamBadResponseError(
            f"{provider}: the upstream rejected the gateway's provider credentials ({status}); "
            "the operator must fix the provider key"
        )
    if status == 503:
        return UpstreamUnavailableError(msg, headers=headers)
    if 400 <= status < 500 and status not in (404, 408, 409):
        return UpstreamRejectedError(msg)
    return UpstreamBadResponseError(msg)


def prepare_body(
    body: dict[str, Any], upstream_model: str, *, stream: bool, quirks: Preset = GENERIC
) -> bytes:
    out = adapt_body(body, quirks) if quirks is not GENERIC else dict(body)
    out["model"] = upstream_model
    if stream and quirks.stream_usage:
        opts = out.get("stream_options")
        out["stream_options"] = (
            {**opts, "include_usage": True} if isinstance(opts, dict) else {"include_usage": True}
        )
    elif stream:
        out.pop("stream_options", None)
    return orjson.dumps(out)


class OpenAIStream(UpstreamSSEStream):
    """OpenAI-compatible chunks relayed as they come, each as one data line; reads usage and the end marker, and keeps
    each chunk's ``choices`` for ``text()`` (walked only when the upstream reported no usage)."""

    def __init__(self, provider: str, resp: UpstreamResponse) -> None:
        super().__init__(provider, resp)
        self._choices: list[list[Any]] = []

    def _event(self, raw: bytes) -> bytes:
        data = parse_event(raw)[1]
        if not data:
            return b""
        if data == b"[DONE]":
            self.finished = True
            return b""
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponseError(
                f"{self._provider}: the upstream sent invalid JSON in its stream"
            ) from None
        if type(chunk) is not dict:
            raise UpstreamBadResponseError(f"{self._provider}: the upstream sent a non-object stream chunk")
        if "error" in chunk:
            raise UpstreamBadResponseError(
                f"{self._provider}: upstream stream error: {_upstream_message(data)}"
            )
        if not self.chunks:
            self.meta = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        choices = chunk.get("choices")
        if choices and type(choices) is list:
            self._choices.append(choices)
        self.chunks += 1
        return encode_data(data)

    def text(self) -> str:
        parts = []
        for choices in self._choices:
            first = choices[0]
            delta = first.get("delta") if isinstance(first, dict) else None
            if isinstance(delta, dict):
                for field in ("content", "reasoning_content"):
                    piece = delta.get(field)
                    if piece and isinstance(piece, str):
                        parts.append(piece)
        return "".join(parts)


class CompletionsStream(OpenAIStream):
    """A legacy ``/completions`` stream relayed as it comes (``native``: the relay adds nothing; the
    upstream's own ``[DONE]`` ends it, and a failure ends it with an error frame and ``[DONE]``)."""

    native = True

    def _event(self, raw: bytes) -> bytes:
        out = super()._event(raw)
        return DONE if self.finished and not out else out

    def text(self) -> str:
        return "".join(
            c["text"]
            for choices in self._choices
            for c in choices
            if isinstance(c, dict) and isinstance(c.get("text"), str)
        )

    def failure_event(self, err: UpstreamError) -> bytes:
        error = {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
        return encode_data(orjson.dumps({"error": error})) + DONE


class OpenAICompatProvider(Provider):
    def __init__(self, config: ProviderConfig, api_key: str | None) -> None:
        self.name = config.name
        self.config = config
        headers = {"Content-Type": "application/json", **config.headers}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._url = config.base_url + "/chat/completions"
        self._quirks = preset(config.preset)
        self.responses_api = (
            config.responses_api if config.responses_api is not None else self._quirks.responses_api
        )
        self.completions_api = config.completions_api
        self._client = HttpClient.for_provider(config)

    async def chat(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatResult:
        payload = prepare_body(body, upstream_model, stream=False, quirks=self._quirks)
        raw, data = await self._post(self._url, payload, timeout)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamBadResponseError(f"{self.name}: the upstream answer is not a chat completion")
        return ChatResult(raw, data, Usage.from_openai(data.get("usage")))

    async def chat_stream(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatStream:
        payload = prepare_body(body, upstream_model, stream=True, quirks=self._quirks)
        return OpenAIStream(self.name, await self._open(self._url, payload, timeout))

    async def responses(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatResult:
        """``POST {base_url}/responses``: the body as the client sent it, with the upstream model name."""
        payload = orjson.dumps({**body, "model": upstream_model})
        url = self.config.base_url + "/responses"
        raw = await self._client.post(url, payload, self._headers, min(timeout, self.config.timeout))
        if raw.status >= 400:
            raise map_error(self.name, raw.status, raw.body, raw.headers.get("Retry-After"))
        return parse_response(self.name, raw.body)

    async def responses_stream(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatStream:
        payload = orjson.dumps({**body, "model": upstream_model})
        resp = await self._open(self.config.base_url + "/responses", payload, timeout)
        return ResponsesStream(self.name, resp)

    async def completions(self, body: dict[str, Any], upstream_model: str, timeout: float) -> ChatResult:
        """``POST {base_url}/completions``: the body as the client sent it, with the upstream model name."""
        payload = orjson.dumps({**body, "model": upstream_model})
        raw, data = await self._post(self.config.base_url + "/completions", payload, timeout)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamBadResponseError(f"{self.name}: the upstream answer is not a text completion")
        return ChatResult(raw, data, Usage.from_openai(data.get("usage")))

    async def completions_stream(
        self, body: dict[str, Any], upstream_model: str, timeout: float
    ) -> ChatStream:
        out = {**body, "model": upstream_model}
        if self._quirks.stream_usage:  # asked for billing; stripped again if the client did not want it
            opts = out.get("stream_options")
            out["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        resp = await self._open(self.config.base_url + "/completions", orjson.dumps(out), timeout)
        return CompletionsStream(self.name, resp)

    async def _post(self, url: str, payload: bytes, timeout: float) -> tuple[bytes, Any]:
        """POST and parse JSON; an error status is raised here, mapped."""
        limit = min(timeout, self.config.timeout)
        return await self._client.post_json(url, payload, self._headers, limit, self._map_error)

    async def _open(self, url: str, payload: bytes, timeout: float) -> UpstreamResponse:
        """Open a streamed request; an error status is raised here, mapped."""
        limit = min(timeout, self.config.timeout)
        return await self._client.open_stream(url, payload, self._headers, limit, self._map_error)

    def _map_error(self, status: int, body: bytes, retry_after: str | None) -> UpstreamError:
        return map_error(self.name, status, body, retry_after)

    async def embeddings(self, body: dict[str, Any], upstream_model: str, timeout: float) -> EmbeddingsResult:
        """``POST {base_url}/embeddings``: the body as the client sent it, with the upstream model name."""
        payload = orjson.dumps({**body, "model": upstream_model})
        raw, data = await self._post(self.config.base_url + "/embeddings", payload, timeout)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamBadResponseError(f"{self.name}: the upstream answer is not an embeddings list")
        return EmbeddingsResult(raw, data, Usage.from_openai(data.get("usage")))

    async def close(self) -> None:
        await self._client.close()
