"""tollgate/providers/local: the real SmolLM2-135M GGUF, in process (no simulator). Requests stay short."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tollgate.errors import UpstreamRejectedError, UpstreamUnavailableError
from tollgate.providers.local import LocalProvider
from tollgate.providers.local import client as local_client
from tollgate.providers.local.request import chat_kwargs
from tollgate.settings import ProviderConfig

pytest.importorskip("llama_cpp")

QUESTION = [{"role": "user", "content": "What is 2+2?"}]


def provider(**config: Any) -> LocalProvider:
    return LocalProvider(ProviderConfig(name="local", kind="local", **config), None)


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "local/smollm2", "messages": QUESTION, "temperature": 0, "max_tokens": 6, **fields}


async def read_stream(p: LocalProvider, req: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    stream = await p.chat_stream(req, "smollm2", 60)
    chunks: list[dict[str, Any]] = []
    async for item in stream:
        for frame in item.split(b"\n\n"):
            if frame:
                assert frame.startswith(b"data: ")
                chunks.append(orjson.loads(frame[6:]))
    assert stream.finished
    return chunks, stream


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_json_completion_is_an_openai_chat_completion_with_exact_usage() -> None:
    result = await provider().chat(body(), "smollm2", 60)
    data = orjson.loads(result.body)
    assert data["object"] == "chat.completion"
    assert data["model"] == "smollm2"
    (choice,) = data["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "length"
    assert result.usage is not None and not result.usage.estimated
    assert result.usage.completion_tokens == 6, "ASCII output: exactly max_tokens tokens"
    assert data["usage"]["total_tokens"] == result.usage.prompt_tokens + 6

    engine = provider().engine()
    llm = engine.llm()
    # The prompt as the model's chat template renders it, tokenized by the model's own tokenizer.
    own = llm.tokenize(_render(llm, QUESTION).encode(), add_bos=False, special=True)
    assert result.usage.prompt_tokens == len(own)


def _render(llm: Any, messages: list[dict[str, Any]]) -> str:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata["tokenizer.chat_template"]
    eos = llm._model.token_get_text(llm.token_eos())
    bos = llm._model.token_get_text(llm.token_bos())
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)(messages=messages).prompt


async def test_stream_is_openai_chunks_then_a_usage_chunk() -> None:
    chunks, stream = await read_stream(provider(), body())
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "smollm2" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 6
    assert stream.usage.completion_tokens == 6 and not stream.usage.estimated
    assert "".join(stream.text_parts) == text_of(chunks)


async def test_stream_usage_matches_what_the_model_counts_for_the_same_request() -> None:
    p = provider()
    await p.chat(body(max_tokens=5), "smollm2", 60)  # leaves the prompt in the model's cache
    chunks, stream = await read_stream(p, body(max_tokens=5))
    again = await p.chat(body(max_tokens=5), "smollm2", 60)  # same cache state as the stream had
    assert again.usage == stream.usage
    assert again.data["choices"][0]["message"]["content"] == text_of(chunks)


async def test_stop_sequence_ends_the_completion_before_it() -> None:
    p = provider()
    plain = await p.chat(body(max_tokens=8), "smollm2", 60)
    words = plain.data["choices"][0]["message"]["content"].split()
    assert len(words) >= 3
    stop = words[2]
    stopped = await p.chat(body(max_tokens=8, stop=[stop]), "smollm2", 60)
    choice = stopped.data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert stop not in choice["message"]["content"]
    chunks, stream = await read_stream(p, body(max_tokens=8, stop=stop))
    assert stop not in text_of(chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert stream.usage.completion_tokens < 8


async def test_max_tokens_bounds_the_completion() -> None:
    result = await provider().chat(body(max_tokens=2, max_completion_tokens=3), "smollm2", 60)
    assert result.usage is not None and result.usage.completion_tokens == 3, "max_completion_tokens wins"


async def test_closing_a_stream_stops_the_generation_and_keeps_exact_usage() -> None:
    p = provider()
    stream = await p.chat_stream(body(max_tokens=400, temperature=0.8), "smollm2", 60)
    frames = aiter(stream)
    await anext(frames)
    stream.close()
    engine = p.engine()
    for _ in range(200):
        if engine.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.pending == 0, "the worker stopped between two tokens"
    assert stream.usage is not None and not stream.usage.estimated
    assert stream.usage.prompt_tokens > 0
    assert stream.usage.completion_tokens < 400


async def test_requests_are_served_one_at_a_time_in_arrival_order() -> None:
    p = provider()
    order: list[int] = []

    async def one(i: int) -> None:
        await p.chat(body(max_tokens=2 + i), "smollm2", 60)
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(4)))
    assert order == [0, 1, 2, 3]


async def test_a_full_queue_answers_503_at_once() -> None:
    p = provider(max_queue=0)
    first = asyncio.ensure_future(p.chat(body(max_tokens=12), "smollm2", 60))
    await asyncio.sleep(0)
    with pytest.raises(UpstreamUnavailableError, match="busy"):
        await p.chat(body(max_tokens=2), "smollm2", 60)
    await first


async def test_missing_llama_cpp_is_a_503_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_client, "installed", lambda module: False)
    with pytest.raises(UpstreamUnavailableError, match=r"pip install 'tollgate\[local\]'"):
        await provider().chat(body(), "smollm2", 60)


async def test_the_embedding_model_is_not_a_chat_model() -> None:
    with pytest.raises(UpstreamRejectedError, match="embedding model"):
        await provider().chat(body(), local_client.EMBEDDING_MODEL, 60)


def test_chat_parameters_translate_to_llama_cpp() -> None:
    kwargs = chat_kwargs(
        "local",
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
            "temperature": 0.3,
            "top_p": 0.5,
            "max_tokens": 7,
            "stop": "END",
            "seed": 4,
            "response_format": {"type": "text"},
        },
        "m",
        stream=True,
    )
    assert kwargs == {
        "messages": [{"role": "user", "content": "ab"}],
        "model": "m",
        "stream": True,
        "temperature": 0.3,
        "top_p": 0.5,
        "max_tokens": 7,
        "stop": ["END"],
        "seed": 4,
    }
    with pytest.raises(UpstreamRejectedError, match="text only"):
        chat_kwargs(
            "local", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "m", stream=False
        )
    with pytest.raises(UpstreamRejectedError, match="tools"):
        chat_kwargs("local", {"messages": QUESTION, "tools": [{"type": "function"}]}, "m", stream=False)


async def test_a_prompt_over_the_context_window_is_rejected_not_truncated() -> None:
    long = [{"role": "user", "content": "count: " + " ".join(str(i) for i in range(400))}]
    p = provider(n_ctx=256)
    with pytest.raises(UpstreamRejectedError, match="context window"):
        await p.chat(body(messages=long), "smollm2", 60)
    stream = await p.chat_stream(body(messages=long), "smollm2", 60)
    with pytest.raises(UpstreamRejectedError, match="context window"):
        async for _ in stream:
            pass
    assert p.engine().pending == 0
