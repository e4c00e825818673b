"""Legacy ``POST /v1/completions`` with the official openai SDK: native on OpenAI-kind upstreams, translated
onto chat for Anthropic-kind ones; billed through the same pipeline (one row, endpoint ``completions``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.api.test_anthropic_upstream import AnthropicGateway
from tests.api.test_chat_completions import expected_cost
from tollgate.simulator import SimServer

PROMPT = "Once upon a time"


@pytest.fixture
def gw(tmp_path: Path, sim: SimServer) -> Iterator[AnthropicGateway]:
    with AnthropicGateway(tmp_path, sim) as gateway:
        yield gateway


def test_native_completion_is_relayed_and_billed(gw: AnthropicGateway, sim: SimServer) -> None:
    client = gw.client(gw.create_key())
    raw = client.completions.with_raw_response.create(model="sim-small", prompt=PROMPT, max_tokens=5)
    resp = raw.parse()
    assert resp.object == "text_completion" and resp.choices[0].text == "lorem ipsum dolor sit amet "
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 5)
    assert raw.headers["x-tollgate-upstream-api"] == "completions"
    upstream = sim.requests()[-1]
    assert upstream["path"] == "/v1/completions" and upstream["body"]["prompt"] == PROMPT
    assert upstream["body"]["model"] == "upstream-small"
    (row,) = gw.usage_rows(expect=1)
    assert (row.endpoint, row.status, row.model, row.prompt_tokens, row.completion_tokens) == (
        "completions", 200, "sim-small", 4, 5,
    )  # fmt: skip
    assert row.cost == expected_cost(4, 5) and not row.estimated


def test_native_completion_takes_lists_n_echo_logprobs_and_stop(gw: AnthropicGateway) -> None:
    client = gw.client(gw.create_key())
    resp = client.completions.create(
        model="sim-small", prompt=["one", "two"], n=2, echo=True, logprobs=1, stop=["dolor"], max_tokens=10
    )
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    assert [c.text for c in resp.choices] == ["onelorem ipsum "] * 2 + ["twolorem ipsum "] * 2
    assert resp.choices[0].logprobs is not None and resp.choices[0].logprobs.tokens == ["lorem ", "ipsum "]
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["sim-small", "claude-count"])
@pytest.mark.parametrize("include_usage", [None, True, False])
def test_streamed_completion_on_native_and_translated_upstreams(
    gw: AnthropicGateway, model: str, include_usage: bool | None
) -> None:
    client = gw.client(gw.create_key())
    extra: Any = {} if include_usage is None else {"stream_options": {"include_usage": include_usage}}
    chunks = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=5, stream=True, **extra))
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        chunks = chunks[:-1]
    text = "".join(c.choices[0].text for c in chunks)  # no chunk without choices otherwise
    assert text == "lorem ipsum dolor sit amet "
    assert all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    if include_usage is None:
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    if include_usage is False:
        assert all(c.usage is None for c in chunks)
    (row,) = gw.usage_rows(expect=1)
    assert (row.endpoint, row.status, row.completion_tokens, row.stream) == ("completions", 200, 5, True)
    assert not row.estimated


def test_translated_completion_on_an_anthropic_upstream(gw: AnthropicGateway, sim: SimServer) -> None:
    client = gw.client(gw.create_key())
    resp = client.completions.create(model="claude-count", prompt=PROMPT, stop=["dolor"])
    assert resp.object == "text_completion" and resp.id.startswith("cmpl-")
    assert resp.choices[0].text == "lorem ipsum " and resp.choices[0].finish_reason == "stop"
    upstream = sim.requests()[-1]
    assert upstream["path"] == "/v1/messages"
    assert upstream["body"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
    assert upstream["body"]["max_tokens"] == 16  # OpenAI's default for completions
    (row,) = gw.usage_rows(expect=1)
    assert (row.endpoint, row.provider, row.status) == ("completions", "claude", 200)


@pytest.mark.parametrize(
    ("args", "param"),
    [
        ({"echo": True}, "echo"),
        ({"logprobs": 2}, "logprobs"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
    ],
)
def test_what_chat_cannot_express_is_refused_on_translated_upstreams(
    gw: AnthropicGateway, args: dict[str, Any], param: str
) -> None:
    client = gw.client(gw.create_key())
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(**{"model": "claude-count", "prompt": PROMPT, **args})
    body = exc.value.body
    assert isinstance(body, dict) and body["param"] == param and "native /completions" in body["message"]
    (row,) = gw.usage_rows(expect=1)
    assert (row.status, row.cost) == (400, 0)


def test_missing_prompt_and_unknown_model_are_400s_in_openais_shape(gw: AnthropicGateway) -> None:
    key = gw.create_key()
    r = httpx.post(
        gw.base_url + "/completions", headers={"Authorization": f"Bearer {key}"}, json={"model": "sim-small"}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = httpx.post(
        gw.server.url + "/api/v1/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "nope", "prompt": "x"},
    )
    assert r.status_code == 400 and "not available" in r.json()["error"]["message"]
