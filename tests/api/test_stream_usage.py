"""A chat stream's usage as the client asked for it (``stream_options.include_usage``), with the official SDK."""

from __future__ import annotations

import asyncio

import openai
import pytest
from openai.types.chat import ParsedChatCompletion

from tests.support.gateway import Gateway
from tollgate.simulator import SimServer

USER = [{"role": "user", "content": "Say something nice about gateways"}]


def test_default_stream_puts_usage_on_the_finish_chunk_and_no_chunk_has_empty_choices(
    gateway: Gateway, sim: SimServer
) -> None:
    key = gateway.create_key()
    chunks = list(gateway.client(key).chat.completions.create(model="sim-small", messages=USER, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)  # the loop every tutorial writes
    assert len(text.split()) == 20
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    assert sim.requests()[-1]["body"]["stream_options"] == {"include_usage": True}  # billing still exact
    (row,) = gateway.usage_rows(expect=1)
    assert row.completion_tokens == 20 and not row.estimated


def test_explicit_include_usage_true_gets_openais_usage_only_chunk(gateway: Gateway) -> None:
    key = gateway.create_key()
    chunks = list(
        gateway.client(key).chat.completions.create(
            model="sim-small", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-2].usage is None


def test_explicit_include_usage_false_gets_no_usage_and_is_still_billed(
    gateway: Gateway, sim: SimServer
) -> None:
    key = gateway.create_key()
    chunks = list(
        gateway.client(key).chat.completions.create(
            model="sim-small", messages=USER, stream=True, stream_options={"include_usage": False}
        )
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert sim.requests()[-1]["body"]["stream_options"] == {"include_usage": True}
    (row,) = gateway.usage_rows(expect=1)
    assert row.completion_tokens == 20 and not row.estimated


def test_default_stream_from_an_upstream_ignoring_include_usage_carries_the_estimate(
    gateway: Gateway,
) -> None:
    key = gateway.create_key()
    chunks = list(
        gateway.client(key).chat.completions.create(
            model="sim-small", messages=USER, stream=True, extra_body={"sim": {"ignore_include_usage": True}}
        )
    )
    assert all(c.choices for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    (row,) = gateway.usage_rows(expect=1)
    assert row.estimated and row.completion_tokens == chunks[-1].usage.completion_tokens


def test_stream_helper_final_completion_has_the_usage(gateway: Gateway) -> None:
    key = gateway.create_key()
    with gateway.client(key).chat.completions.stream(model="sim-small", messages=USER) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens == 20


def test_async_stream_helper_with_include_usage_true(gateway: Gateway) -> None:
    key = gateway.create_key()

    async def go() -> ParsedChatCompletion[None]:
        client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)
        async with client.chat.completions.stream(
            model="sim-small", messages=USER, stream_options={"include_usage": True}
        ) as stream:
            final = await stream.get_final_completion()
        await client.close()
        return final

    final = asyncio.run(go())
    assert final.usage is not None and final.usage.completion_tokens == 20
    assert final.choices[0].message.content


def test_cached_stream_replays_in_each_clients_usage_shape(gateway: Gateway) -> None:
    key = gateway.create_key()
    client = gateway.client(key)
    first = list(client.chat.completions.create(model="sim-small", messages=USER, stream=True, temperature=0))
    again = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=USER, stream=True, temperature=0, stream_options={"include_usage": True}
    )
    assert again.headers["x-cache"] == "HIT"
    replayed = list(again.parse())
    assert all(c.choices for c in first) and first[-1].usage is not None
    assert replayed[-1].choices == [] and replayed[-1].usage == first[-1].usage


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"stream_options": "yes"}, "stream_options"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"cache": "no"}, "cache"),
    ],
)
def test_malformed_stream_options_and_cache_are_refused(
    gateway: Gateway, options: object, param: str
) -> None:
    key = gateway.create_key()
    with pytest.raises(openai.BadRequestError) as exc:
        gateway.client(key).chat.completions.create(
            model="sim-small", messages=USER, stream=True, extra_body=options
        )
    assert exc.value.status_code == 400 and param in str(exc.value)
