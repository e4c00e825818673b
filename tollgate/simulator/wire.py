"""OpenAI wire-format bodies: errors, ``chat.completion`` objects and SSE chunk events."""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = [
    "DONE_EVENT",
    "FINGERPRINT",
    "INVALID_EVENT",
    "ChunkEncoder",
    "completion_body",
    "error_body",
    "error_for_status",
    "usage_object",
]

FINGERPRINT: Final = "fp_simulator"
DONE_EVENT: Final = b"data: [DONE]\n\n"
INVALID_EVENT: Final = b"data: {not json\n\n"

_ERRORS: Final[dict[int, tuple[str, str, str | None]]] = {
    400: ("invalid_request_error", "Simulated invalid request.", None),
    401: ("authentication_error", "Incorrect API key provided.", "invalid_api_key"),
    403: ("permission_error", "You are not allowed to sample from this model.", None),
    404: (
        "invalid_request_error",
        "The model does not exist or you do not have access to it.",
        "model_not_found",
    ),
    408: ("timeout_error", "Request timed out.", None),
    409: ("invalid_request_error", "Conflict.", None),
    422: ("invalid_request_error", "Unprocessable request.", None),
    429: (
        "rate_limit_error",
        "Rate limit reached for requests. Please try again later.",
        "rate_limit_exceeded",
    ),
    500: ("server_error", "The server had an error while processing your request. Sorry about that!", None),
    502: ("server_error", "Bad gateway.", None),
    503: ("server_error", "The engine is currently overloaded, please try again later.", None),
    504: ("server_error", "Gateway timeout.", None),
}


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> bytes:  # fmt: skip
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def error_for_status(status: int) -> bytes:
    """A plausible OpenAI error body for an injected HTTP status."""
    known = _ERRORS.get(status)
    if known is None:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
        return error_body(f"Simulated error {status}.", type_)
    type_, message, code = known
    return error_body(message, type_, None, code)


def usage_object(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    """The ``usage`` object of chat completions, with OpenAI's detail sub-objects."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_body(cid: str, created: int, model: str, content: str, finish: str,
                    usage: dict[str, Any] | None, stop_reason: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A ``chat.completion`` object (``usage`` left out when None). ``stop_reason``: the stop sequence that
    ended it, reported on the choice as vLLM does (left out when none did, as OpenAI does)."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
    }
    if stop_reason is not None:
        body["choices"][0]["stop_reason"] = stop_reason
    if usage is not None:
        body["usage"] = usage
    body["service_tier"] = "default"
    body["system_fingerprint"] = FINGERPRINT
    return body


_ROLE_CHOICE: Final = (
    b'{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
    b'"logprobs":null,"finish_reason":null}]'
)
_CONTENT_OPEN: Final = b'{"index":0,"delta":{"content":'
_CONTENT_CLOSE: Final = b'},"logprobs":null,"finish_reason":null}]'


class ChunkEncoder:
    """Encodes ``chat.completion.chunk`` SSE events with a precomputed common prefix."""

    __slots__ = ("_head", "_tail")

    def __init__(self, cid: str, created: int, model: str, include_usage: bool) -> None:
        common = orjson.dumps(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
            }
        )
        self._head = b"data: " + common[:-1] + b',"choices":['
        self._tail = (b',"usage":null}' if include_usage else b"}") + b"\n\n"

    def role(self) -> bytes:
        """First chunk: ``delta: {"role": "assistant", "content": ""}``."""
        return self._head + _ROLE_CHOICE + self._tail

    def content(self, piece: str) -> bytes:
        """One content-token chunk."""
        return b"".join((self._head, _CONTENT_OPEN, orjson.dumps(piece), _CONTENT_CLOSE, self._tail))

    def finish(self, reason: str, stop_reason: str | None = None) -> bytes:
        """Empty delta with the finish reason (and the stop sequence that ended it, vLLM's ``stop_reason``)."""
        matched = b',"stop_reason":' + orjson.dumps(stop_reason) if stop_reason is not None else b""
        choice = (
            b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"'
            + reason.encode()
            + b'"'
            + matched
            + b"}]"
        )
        return self._head + choice + self._tail

    def usage(self, usage: dict[str, Any]) -> bytes:
        """Final usage chunk with ``"choices": []``."""
        return self._head + b'],"usage":' + orjson.dumps(usage) + b"}\n\n"
