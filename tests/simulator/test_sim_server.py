"""End-to-end tests of the provider simulator over real HTTP (aiohttp and the openai SDK)."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tollgate.simulator import SimServer, create_app
from tollgate.simulator.app import MAX_RECORDS, SimState
from tollgate.simulator.behaviour import OptionError

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer() as sim:
        yield sim


@pytest.fixture
def sim(server: SimServer) -> SimServer:
    server.clear()
    return server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


async def post(http: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any],
               path: str = "/chat/completions") -> tuple[int, Any]:  # fmt: skip
    async with http.post(sim.base_url + path, json=body) as resp:
        return resp.status, orjson.loads(await resp.read())


async def sse(http: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any]) -> list[bytes]:
    """The ``data:`` payloads of a stream, in order."""
    async with http.post(sim.base_url + "/chat/completions", json={**body, "stream": True}) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = await resp.read()
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    assert all(e.startswith(b"data: ") for e in events[:-1])
    return [e[6:] for e in events[:-1]]


async def test_json_completion_parsed_by_sdk(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    resp = await client.chat.completions.create(model="sim-small@completion_tokens=4", messages=MSGS)
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-sim-")
    assert resp.model == "sim-small"
    choice = resp.choices[0]
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert choice.message.role == "assistant" and choice.message.refusal is None
    assert choice.message.content == "lorem ipsum dolor sit "
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (9, 4, 13)
    assert resp.usage.prompt_tokens_details and resp.usage.prompt_tokens_details.cached_tokens == 0
    assert resp.usage.completion_tokens_details and resp.usage.completion_tokens_details.reasoning_tokens == 0
    assert resp.system_fingerprint


async def test_json_raw_shape_and_options(sim: SimServer, http: aiohttp.ClientSession) -> None:
    body = {"model": "m@prompt_tokens=50", "messages": MSGS, "sim": {"cached_tokens": 20, "no_usage": False}}
    status, data = await post(http, sim, body)
    assert status == 200
    assert list(data) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    ]
    assert data["model"] == "m" and "sim" not in data
    assert (
        data["usage"]["prompt_tokens"] == 50 and data["usage"]["prompt_tokens_details"]["cached_tokens"] == 20
    )
    assert data["choices"][0]["message"]["refusal"] is None and data["choices"][0]["logprobs"] is None
    status, data = await post(http, sim, {"model": "m@no_usage", "messages": MSGS})
    assert "usage" not in data
    status, data = await post(
        http, sim, {"model": "m", "messages": MSGS, "sim": {"reply": "Hi you", "cached_tokens": 99}}
    )
    assert data["choices"][0]["message"]["content"] == "Hi you "
    assert data["usage"]["prompt_tokens_details"]["cached_tokens"] == data["usage"]["prompt_tokens"]


async def test_stream_parsed_by_sdk_without_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="sim-small@completion_tokens=3", messages=MSGS, stream=True
    )
    chunks = [c async for c in stream]
    assert len(chunks) == 5
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "lorem ipsum dolor "
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(
        c.usage is None and c.model == "sim-small" and c.object == "chat.completion.chunk" for c in chunks
    )
    assert len({c.id for c in chunks}) == 1


async def test_stream_parsed_by_sdk_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="sim-small", messages=MSGS, stream=True, stream_options={"include_usage": True}, max_tokens=2
    )
    chunks = [c async for c in stream]
    assert chunks[-2].choices[0].finish_reason == "length"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (9, 2)


async def test_stream_raw_events(sim: SimServer, http: aiohttp.ClientSession) -> None:
    body = {"model": "m@completion_tokens=2", "messages": MSGS, "stream_options": {"include_usage": True}}
    events = await sse(http, sim, body)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["delta"] if c["choices"] else None for c in chunks] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "lorem "},
        {"content": "ipsum "},
        {},
        None,
    ]
    assert all(c["usage"] is None for c in chunks[:-1]) and chunks[-1]["usage"]["completion_tokens"] == 2
    assert list(chunks[1]) == ["id", "object", "created", "model", "service_tier", "system_fingerprint",
                               "choices", "usage"]  # fmt: skip
    assert chunks[1]["choices"][0] == {"index": 0, "delta": {"content": "lorem "}, "logprobs": None,
                                       "finish_reason": None}  # fmt: skip
    ignored = await sse(http, sim, {**body, "sim": {"ignore_include_usage": True}})
    assert len(ignored) == len(events) - 1 and all(b'"usage"' not in e for e in ignored)
    [rec, _] = sim.requests()
    assert rec["completed"] and rec["chunks_sent"] == 5 and not rec["cancelled"]


async def test_stop_and_max_completion_tokens(client: openai.AsyncOpenAI) -> None:
    resp = await client.chat.completions.create(model="m", messages=MSGS, stop=["sit"])
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == ("lorem ipsum dolor ", "stop")
    assert resp.usage and resp.usage.completion_tokens == 3
    resp = await client.chat.completions.create(model="m", messages=MSGS, max_completion_tokens=1)
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == ("lorem ", "length")
    stream = await client.chat.completions.create(model="m", messages=MSGS, stop="ipsum", stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "lorem "


@pytest.mark.parametrize(
    ("status", "exc_type", "err_type"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "authentication_error"),
        (429, openai.RateLimitError, "rate_limit_error"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
async def test_injected_errors(client: openai.AsyncOpenAI, status: int, exc_type: type[openai.APIStatusError],
                               err_type: str) -> None:  # fmt: skip
    with pytest.raises(exc_type) as info:
        await client.chat.completions.create(
            model="m", messages=MSGS, extra_body={"sim": {"error": status, "retry_after": 2}}
        )
    assert info.value.status_code == status
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.type == err_type
    assert info.value.response.json()["error"].keys() == {"message", "type", "param", "code"}


async def test_validation_and_require_key(sim: SimServer, http: aiohttp.ClientSession) -> None:
    status, data = await post(http, sim, {"messages": MSGS})
    assert status == 400 and data["error"]["param"] == "model"
    assert data["error"]["type"] == "invalid_request_error"
    status, data = await post(http, sim, {"model": "m", "messages": []})
    assert status == 400 and data["error"]["param"] == "messages"
    status, data = await post(http, sim, {"model": "m", "messages": MSGS, "sim": {"bogus": 1}})
    assert status == 400 and "bogus" in data["error"]["message"]
    async with http.post(sim.base_url + "/chat/completions", data=b"{nope") as resp:
        assert resp.status == 400
    status, data = await post(http, sim, {"model": "m@require_key=k1", "messages": MSGS})
    assert status == 401 and data["error"]["message"].startswith("Incorrect API key provided")
    assert data["error"]["code"] == "invalid_api_key"
    headers = {"Authorization": "Bearer k1"}
    body = {"model": "m@require_key=k1", "messages": MSGS}
    async with http.post(sim.base_url + "/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
    async with http.get(sim.url + "/nope") as resp:
        assert resp.status == 404 and "error" in orjson.loads(await resp.read())


async def test_fail_first_per_scenario(sim: SimServer, http: aiohttp.ClientSession) -> None:
    body = {"model": "m@fail_first=2,scenario=a", "messages": MSGS}
    assert [(await post(http, sim, body))[0] for _ in range(3)] == [500, 500, 200]
    other = {"model": "m", "messages": MSGS, "sim": {"fail_first": 1, "scenario": "b", "error": 429}}
    assert [(await post(http, sim, other))[0] for _ in range(2)] == [429, 200]
    assert (await post(http, sim, body))[0] == 200
    async with http.delete(sim.url + "/_sim/requests") as resp:
        assert resp.status == 200
    assert sim.requests() == []
    assert (await post(http, sim, body))[0] == 500


async def test_invalid_json(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with http.post(
        sim.base_url + "/chat/completions", json={"model": "m@invalid_json", "messages": MSGS}
    ) as r:
        assert r.status == 200 and r.headers["content-type"] == "application/json"
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(await r.read())
    events = await sse(http, sim, {"model": "m@invalid_json", "messages": MSGS})
    assert len(events) == 3 and events[1] == b"{not json" and events[2] == b"[DONE]"
    orjson.loads(events[0])


@pytest.mark.parametrize("cut_after", [0, 2])
async def test_cut_after_stream(sim: SimServer, http: aiohttp.ClientSession, cut_after: int) -> None:
    body = {"model": f"m@cut_after={cut_after}", "messages": MSGS, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    received = b""
    async with http.post(sim.base_url + "/chat/completions", json=body) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for line in resp.content:
                received += line
    assert b"[DONE]" not in received and b'"usage":{' not in received
    assert received.count(b"data: ") == (0 if cut_after == 0 else 1 + cut_after)
    [rec] = sim.requests()
    assert not rec["completed"] and rec["chunks_sent"] == (0 if cut_after == 0 else 1 + cut_after)


async def test_cut_after_json_and_sdk_stream(sim: SimServer, http: aiohttp.ClientSession,
                                             client: openai.AsyncOpenAI) -> None:  # fmt: skip
    async with http.post(
        sim.base_url + "/chat/completions", json={"model": "m@cut_after=0", "messages": MSGS}
    ) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(model="m@cut_after=1", messages=MSGS, stream=True)
        _ = [c async for c in stream]


@pytest.mark.parametrize("model", ["m@hang", "m@latency_ms=5000", "m@latency_ms=20,hang"])
async def test_hang_records_cancel(sim: SimServer, http: aiohttp.ClientSession, model: str) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await http.post(
            sim.base_url + "/chat/completions",
            json={"model": model, "messages": MSGS},
            timeout=aiohttp.ClientTimeout(total=0.2),
        )
    [rec] = await sim.wait_for(lambda rs: bool(rs) and rs[0]["cancelled"])
    assert rec["status"] is None and not rec["completed"]


async def test_hang_after_and_mid_stream_disconnect(sim: SimServer, http: aiohttp.ClientSession) -> None:
    body = {"model": "m@hang_after=2", "messages": MSGS, "stream": True}
    async with http.post(sim.base_url + "/chat/completions", json=body) as resp:
        data = b""
        while data.count(b"\n\n") < 3:
            data += await resp.content.readany()
        assert b"[DONE]" not in data
    [rec] = await sim.wait_for(lambda rs: rs[0]["cancelled"])
    assert rec["chunks_sent"] == 3 and not rec["completed"]

    sim.clear()
    body = {"model": "m@chunk_delay_ms=20,completion_tokens=50", "messages": MSGS, "stream": True}
    async with http.post(sim.base_url + "/chat/completions", json=body) as resp:
        await resp.content.readuntil(b"\n\n")
    [rec] = await sim.wait_for(lambda rs: rs[0]["cancelled"])
    assert 1 <= rec["chunks_sent"] < 10 and not rec["completed"]


async def test_latency_and_chunk_delay(sim: SimServer, http: aiohttp.ClientSession) -> None:
    start = time.monotonic()
    status, _ = await post(http, sim, {"model": "m@latency_ms=100", "messages": MSGS})
    assert status == 200 and time.monotonic() - start >= 0.1
    start = time.monotonic()
    events = await sse(http, sim, {"model": "m@chunk_delay_ms=10,completion_tokens=3", "messages": MSGS})
    assert len(events) == 6 and time.monotonic() - start >= 0.04
    assert all(r["completed"] and not r["cancelled"] for r in sim.requests())


async def test_embeddings(sim: SimServer, http: aiohttp.ClientSession, client: openai.AsyncOpenAI) -> None:
    resp = await client.embeddings.create(model="sim-embed@prompt_tokens=4", input=["a b", "c"])
    assert resp.model == "sim-embed" and [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 8 and resp.usage.prompt_tokens == 4
    status, floats = await post(http, sim, {"model": "e", "input": "a b", "dimensions": 4}, "/embeddings")
    assert (
        status == 200
        and floats["object"] == "list"
        and floats["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    )
    body = {"model": "e", "input": "a b", "dimensions": 4, "encoding_format": "base64"}
    _, b64 = await post(http, sim, body, "/embeddings")
    decoded = list(struct.unpack("<4f", base64.b64decode(b64["data"][0]["embedding"])))
    assert decoded == floats["data"][0]["embedding"]
    assert (await post(http, sim, {"model": "e", "input": []}, "/embeddings"))[0] == 400
    assert (await post(http, sim, {"model": "e@error=503", "input": "x"}, "/embeddings"))[0] == 503


async def test_models_and_recording(sim: SimServer, http: aiohttp.ClientSession) -> None:
    models = await (await http.get(sim.base_url + "/models")).json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    assert models["data"][0]["owned_by"] == "simulator"
    headers = {"Authorization": "Bearer sk-1", "X-Request-ID": "abc"}
    body = {"model": "m@completion_tokens=1", "messages": MSGS, "sim": {"reply": "x"}}
    async with http.post(sim.base_url + "/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
    async with http.get(sim.url + "/_sim/requests") as resp:
        [rec] = orjson.loads(await resp.read())
    assert rec == sim.requests()[0]
    assert rec["path"] == "/v1/chat/completions" and rec["body"] == body
    assert rec["headers"]["authorization"] == "Bearer sk-1" and rec["headers"]["x-request-id"] == "abc"
    assert rec["headers"]["content-type"] == "application/json"
    assert rec["completed"] and not rec["cancelled"] and rec["chunks_sent"] == 0 and rec["status"] == 200
    assert abs(rec["started"] - time.time()) < 5


def test_record_limit_and_bad_defaults() -> None:
    state = SimState()
    for i in range(MAX_RECORDS + 5):
        state.records.append({"i": i})
    assert len(state.snapshot()) == MAX_RECORDS and state.snapshot()[0] == {"i": 5}
    with pytest.raises(OptionError):
        create_app({"bogus": 1})


async def test_server_defaults(http: aiohttp.ClientSession) -> None:
    with SimServer({"completion_tokens": 2, "require_key": "k"}) as sim:
        assert sim.base_url == sim.url + "/v1" and sim.url.startswith("http://127.0.0.1:")
        async with http.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS},
                             headers={"Authorization": "Bearer k"}) as resp:  # fmt: skip
            data = orjson.loads(await resp.read())
        assert data["usage"]["completion_tokens"] == 2
        async with http.get(sim.base_url + "/models") as resp:
            assert resp.status == 401


async def test_stop_releases_hanging_requests(http: aiohttp.ClientSession) -> None:
    sim = SimServer({"hang": True}).start()
    pending = asyncio.ensure_future(
        http.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS})
    )
    await sim.wait_for(lambda rs: len(rs) == 1)
    start = time.monotonic()
    await asyncio.to_thread(sim.stop)
    assert time.monotonic() - start < 2
    try:
        resp = await pending
        assert resp.status == 500
        resp.release()
    except aiohttp.ClientError:
        pass
    [rec] = sim.requests()
    assert not rec["completed"] and not rec["cancelled"]
