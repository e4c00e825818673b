"""The simulator's Gemini endpoints on the wire: framing, bodies, errors and options (raw HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tollgate.simulator import SimServer

CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}
TOOLS = {
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "lookup",
                    "parametersJsonSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
                }
            ]
        }
    ]
}


@pytest.fixture
async def http(sim: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    sim.clear()
    async with aiohttp.ClientSession(base_url=sim.url) as session:
        yield session


async def call(http: aiohttp.ClientSession, model: str, body: Any, method: str = "generateContent",
               **headers: str) -> tuple[int, str, bytes]:  # fmt: skip
    async with http.post(f"/v1beta/models/{model}:{method}", json=body, headers=headers) as resp:
        return resp.status, resp.headers["content-type"], await resp.read()


async def test_generate_content_answers_a_generate_content_response(http: aiohttp.ClientSession) -> None:
    body = {**CONTENTS, "systemInstruction": {"parts": [{"text": "be kind"}]}}
    status, ctype, raw = await call(http, "gemini-sim@completion_tokens=2,cached_tokens=3", body)
    assert (status, ctype) == (200, "application/json")
    data = orjson.loads(raw)
    assert data["candidates"] == [
        {
            "content": {"parts": [{"text": "lorem ipsum "}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ]
    assert data["usageMetadata"] == {
        "promptTokenCount": 15,  # 3 + (4 + 2 system words) + (4 + 2 user words)
        "cachedContentTokenCount": 3,
        "candidatesTokenCount": 2,
        "totalTokenCount": 17,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 15}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 3}],
    }
    assert data["modelVersion"] == "gemini-sim" and data["responseId"].startswith("sim-")


async def test_max_output_tokens_ends_with_max_tokens(http: aiohttp.ClientSession) -> None:
    body = {**CONTENTS, "generationConfig": {"maxOutputTokens": 3}}
    data = orjson.loads((await call(http, "m", body))[2])
    assert data["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert data["usageMetadata"]["candidatesTokenCount"] == 3


async def test_stream_is_crlf_framed_sse_without_an_end_marker(
    http: aiohttp.ClientSession, sim: SimServer
) -> None:
    async with http.post(
        "/v1beta/models/m@completion_tokens=2:streamGenerateContent?alt=sse", json=CONTENTS
    ) as r:
        assert r.headers["content-type"] == "text/event-stream"
        raw = await r.read()
    assert raw.endswith(b"\r\n\r\n") and b"[DONE]" not in raw
    events = [orjson.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\r\n\r\n") if e]
    assert [e["candidates"][0]["content"]["parts"] for e in events] == [
        [{"text": "lorem "}],
        [{"text": "ipsum "}],
    ]
    assert (
        "finishReason" not in events[0]["candidates"][0]
        and "candidatesTokenCount" not in events[0]["usageMetadata"]
    )
    assert events[1]["candidates"][0]["finishReason"] == "STOP"
    assert events[1]["usageMetadata"]["candidatesTokenCount"] == 2
    rec = sim.requests()[-1]
    assert rec["query"] == "alt=sse" and rec["completed"] and rec["chunks_sent"] == 2


async def test_stream_without_alt_sse_is_a_json_array(http: aiohttp.ClientSession) -> None:
    status, ctype, raw = await call(http, "m@completion_tokens=2", CONTENTS, "streamGenerateContent")
    assert (status, ctype) == (200, "application/json")
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in orjson.loads(raw)] == [
        "lorem ",
        "ipsum ",
    ]


async def test_function_call_reply_uses_the_declared_schema(http: aiohttp.ClientSession) -> None:
    data = orjson.loads((await call(http, "m@tool_call=lookup", {**CONTENTS, **TOOLS}))[2])
    (part,) = data["candidates"][0]["content"]["parts"]
    assert part["functionCall"] == {"name": "lookup", "args": {"q": "lorem"}} and part["thoughtSignature"]
    assert data["candidates"][0]["finishReason"] == "STOP"
    plain = orjson.loads((await call(http, "m@tool_call=lookup,completion_tokens=1", CONTENTS))[2])
    assert plain["candidates"][0]["content"]["parts"] == [{"text": "lorem "}]  # no tools declared: text
    status, _, raw = await call(http, "m@tool_call=other", {**CONTENTS, **TOOLS})
    assert status == 400 and "undeclared" in orjson.loads(raw)["error"]["message"]


async def test_thought_parts_only_when_thoughts_are_asked_for(http: aiohttp.ClientSession) -> None:
    config = {"generationConfig": {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}}
    data = orjson.loads(
        (await call(http, "m@thoughts_tokens=9,completion_tokens=1", {**CONTENTS, **config}))[2]
    )
    thought, text = data["candidates"][0]["content"]["parts"]
    assert thought["thought"] is True and text == {"text": "lorem "}
    assert (
        data["usageMetadata"]["thoughtsTokenCount"] == 9
        and data["usageMetadata"]["totalTokenCount"] == 9 + 1 + 9
    )
    hidden = orjson.loads((await call(http, "m@thoughts_tokens=9,completion_tokens=1", CONTENTS))[2])
    assert len(hidden["candidates"][0]["content"]["parts"]) == 1
    assert hidden["usageMetadata"]["thoughtsTokenCount"] == 9


@pytest.mark.parametrize(
    ("option", "status", "error"),
    [
        ("error=429,retry_after=2", 429, {"code": 429, "status": "RESOURCE_EXHAUSTED"}),
        ("error=503", 503, {"code": 503, "status": "UNAVAILABLE"}),
        ("error=500", 500, {"code": 500, "status": "INTERNAL"}),
        ("error=400", 400, {"code": 400, "status": "INVALID_ARGUMENT"}),
    ],
)
async def test_injected_errors_use_googles_envelope(
    http: aiohttp.ClientSession, option: str, status: int, error: dict[str, Any]
) -> None:
    got_status, ctype, raw = await call(http, f"m@{option}", CONTENTS)
    assert (got_status, ctype) == (status, "application/json")
    body = orjson.loads(raw)["error"]
    assert {k: body[k] for k in ("code", "status")} == error and body["message"]
    if status == 429:
        assert body["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]


async def test_request_errors(http: aiohttp.ClientSession) -> None:
    status, _, raw = await call(http, "m", {"contents": []})
    assert status == 400 and orjson.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
    status, _, raw = await call(http, "m", CONTENTS, "countTokens")
    assert status == 404 and orjson.loads(raw)["error"]["status"] == "NOT_FOUND"
    status, _, raw = await call(http, "m@bogus=1", CONTENTS)
    assert status == 400 and "bogus" in orjson.loads(raw)["error"]["message"]
    async with http.post("/v1beta/models/m:generateContent", data=b"{nope") as resp:
        assert resp.status == 400


async def test_require_key_checks_the_goog_api_key_header(http: aiohttp.ClientSession) -> None:
    model = "m@require_key=secret,completion_tokens=1"
    assert (await call(http, model, CONTENTS, **{"x-goog-api-key": "secret"}))[0] == 200
    status, _, raw = await call(http, model, CONTENTS, **{"x-goog-api-key": "wrong"})
    assert status == 400 and orjson.loads(raw)["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    status, _, raw = await call(http, model, CONTENTS)
    assert status == 403 and orjson.loads(raw)["error"]["status"] == "PERMISSION_DENIED"


async def test_sim_object_in_the_body_sets_options(http: aiohttp.ClientSession) -> None:
    body = {**CONTENTS, "sim": {"completion_tokens": 1, "thoughts_tokens": 2}}
    data = orjson.loads((await call(http, "m", body))[2])
    assert data["usageMetadata"]["candidatesTokenCount"] == 1
    assert data["usageMetadata"]["thoughtsTokenCount"] == 2


async def test_stream_error_event_follows_the_content(http: aiohttp.ClientSession) -> None:
    url = "/v1beta/models/m@completion_tokens=2,stream_error=503:streamGenerateContent?alt=sse"
    async with http.post(url, json=CONTENTS) as resp:
        raw = await resp.read()
    events = [orjson.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\r\n\r\n") if e]
    assert len(events) == 3 and all("finishReason" not in e.get("candidates", [{}])[0] for e in events)
    assert events[-1] == {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }
