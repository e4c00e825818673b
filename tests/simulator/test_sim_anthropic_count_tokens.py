"""The simulator's ``POST /v1/messages/count_tokens`` (official anthropic SDK and raw HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tollgate.simulator import SimServer

USER: list[Any] = [{"role": "user", "content": "count these five words"}]
VERSION = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


def sdk(sim: SimServer, key: str = "sk-ant-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key=key, max_retries=0)


def test_count_is_the_prompt_a_message_with_the_same_body_reports(sim: SimServer) -> None:
    sim.clear()
    client = sdk(sim)
    counted = client.messages.count_tokens(model="claude-sim", system="Be brief.", messages=USER)
    message = client.messages.create(model="claude-sim", max_tokens=5, system="Be brief.", messages=USER)
    usage = message.usage
    prompt = (
        usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    )
    assert counted.input_tokens == prompt
    # 3 + (4 + 4 words) for the message + (4 + 2 words) for the system prompt
    assert counted.input_tokens == 17
    longer = [{"role": "user", "content": "count these five words and three more"}]
    assert client.messages.count_tokens(model="claude-sim", messages=longer).input_tokens == 14
    assert (
        client.messages.count_tokens(model="claude-sim@prompt_tokens=321", messages=USER).input_tokens == 321
    )
    assert sim.requests()[0]["path"] == "/v1/messages/count_tokens"


def test_count_validation_is_anthropics(sim: SimServer) -> None:
    url = sim.url + "/v1/messages/count_tokens"
    for body, problem in [
        ({"model": "m", "messages": USER, "max_tokens": 5}, "max_tokens: Extra inputs are not permitted"),
        ({"model": "m", "messages": USER, "stream": True}, "stream: Extra inputs are not permitted"),
        ({"model": "m"}, "messages: at least one message is required"),
        ({"messages": USER}, "model: Field required"),
    ]:
        r = httpx.post(url, headers=VERSION, json=body)
        assert r.status_code == 400, body
        assert r.json()["type"] == "error" and r.json()["error"] == {
            "type": "invalid_request_error",
            "message": problem,
        }
    r = httpx.post(url, json={"model": "m", "messages": USER})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]


def test_count_honours_key_and_error_options(sim: SimServer) -> None:
    url = sim.url + "/v1/messages/count_tokens"
    body = {"model": "claude-sim@require_key=sk-right", "messages": USER}
    wrong = httpx.post(url, headers={**VERSION, "x-api-key": "sk-wrong"}, json=body)
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    right = httpx.post(url, headers={**VERSION, "x-api-key": "sk-right"}, json=body)
    assert right.status_code == 200 and right.json()["input_tokens"] > 0
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk(sim).messages.count_tokens(model="claude-sim@error=529", messages=USER)
    assert info.value.status_code == 529
    error: Any = info.value.body
    assert error["error"]["type"] == "overloaded_error"
    r = httpx.post(url, headers=VERSION, json={"model": "claude-sim@invalid_json=true", "messages": USER})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
