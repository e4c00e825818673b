"""Client input that used to end in a 500 (a body nested past what orjson can write, integers past what a
column or counter holds, NUL characters) is a 4xx in each endpoint's own error shape, as the SDKs see it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tollgate.errors import ValidationError
from tollgate.services.completions import MAX_JSON_DEPTH, json_depth, parse_json
from tollgate.simulator import SimServer

HI = [{"role": "user", "content": "hi"}]
HUGE = 2**64 - 1
NESTED = f"The request body is nested deeper than {MAX_JSON_DEPTH} levels."


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> Iterator[tuple[Gateway, str]]:
    with Gateway(tmp_path_factory.mktemp("input-bounds"), sim.base_url) as gw:
        yield gw, gw.create_key()


def openai_error(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as info:
        call()
    return info.value


def test_json_depth_counts_arrays_and_objects() -> None:
    assert json_depth("x") == 0 and json_depth([]) == 1 and json_depth({"a": [{"b": 1}]}) == 3
    assert json_depth(nested(300)) > MAX_JSON_DEPTH  # stops walking once past the limit
    inner = MAX_JSON_DEPTH - 1  # arrays inside the top-level object: exactly the limit
    assert parse_json(b'{"a": ' + b"[" * inner + b"]" * inner + b"}") is not None
    with pytest.raises(ValidationError, match="nested deeper"):
        parse_json(b'{"a": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}")
    assert parse_json(b'{"brackets in a string": "' + b"[" * 500 + b'"}')  # counted, then walked: flat


def test_deeply_nested_bodies_are_400s_on_the_openai_endpoints(served: tuple[Gateway, str]) -> None:
    gw, key = served
    client = gw.client(key)
    deep = {"x": nested(300)}
    errors = [
        openai_error(lambda: client.chat.completions.create(model="sim-small", messages=HI, metadata=deep)),
        openai_error(
            lambda: client.chat.completions.create(
                model="sim-small",
                messages=HI,
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": deep}},
            )
        ),
        openai_error(lambda: client.responses.create(model="sim-small", input="hi", metadata=deep)),
        openai_error(lambda: client.embeddings.create(model="sim-small", input="hi", extra_body=deep)),
    ]
    for err in errors:
        assert err.status_code == 400
        assert err.body == {
            "message": NESTED,
            "type": "invalid_request_error",
            "param": None,
            "code": "VALIDATION_ERROR",
        }


def test_a_deeply_nested_message_is_a_400_in_anthropic_shape(served: tuple[Gateway, str]) -> None:
    gw, key = served
    client = anthropic.Anthropic(base_url=gw.server.url, api_key=key, max_retries=0)
    content = [{"type": "tool_result", "tool_use_id": "t1", "content": nested(300)}]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="sim-small", max_tokens=10, messages=[{"role": "user", "content": content}]
        )
    assert info.value.body == {"type": "error", "error": {"type": "invalid_request_error", "message": NESTED}}


def test_counts_past_32_bits_are_400s_naming_the_field(served: tuple[Gateway, str]) -> None:
    gw, key = served
    client = gw.client(key)
    cases = {
        "max_tokens": lambda: client.chat.completions.create(model="sim-small", messages=HI, max_tokens=HUGE),
        "max_completion_tokens": lambda: client.chat.completions.create(
            model="sim-small", messages=HI, max_completion_tokens=10**30
        ),
        "n": lambda: client.chat.completions.create(model="sim-small", messages=HI, n=HUGE),
        "max_output_tokens": lambda: client.responses.create(
            model="sim-small", input="hi", max_output_tokens=HUGE
        ),
        "dimensions": lambda: client.embeddings.create(model="sim-small", input="hi", dimensions=HUGE),
    }
    for field, call in cases.items():
        err = openai_error(call)
        assert err.status_code == 400 and err.body["param"] == field, err.body
        assert "must be a positive integer up to" in err.body["message"]


def test_max_tokens_past_32_bits_is_a_400_on_messages(served: tuple[Gateway, str]) -> None:
    gw, key = served
    client = anthropic.Anthropic(base_url=gw.server.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="sim-small", max_tokens=HUGE, messages=HI, timeout=30)
    assert info.value.body["error"]["message"].startswith(
        "'max_tokens' must be a positive integer up to 2147483647"
    )


def test_classifier_versions_and_nul_characters_are_422s(served: tuple[Gateway, str]) -> None:
    gw, key = served
    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {key}"}) as c:
        versions = [
            c.post("/classify", json={"text": "hi", "classifier": f"tickets@v{HUGE}"}),
            c.post("/classify", json={"text": "hi", "classifier": "tickets@v3000000000"}),
            c.get(f"/classifiers/tickets@v{10**30}"),
        ]
        nul_name = c.post("/classify", json={"text": "hi", "classifier": "tick\u0000ets"})
        nul_label = c.post("/classifiers", json={"name": "tickets", "labels": ["billing\u0000"]})
        deep = c.post("/classify", json={"text": "hi", "labels": ["a"], "examples": {"a": nested(300)}})
    for r in versions:
        assert r.status_code == 422, r.text
        assert r.json()["message"].startswith("A classifier version is at most 2147483647")
        assert r.json()["details"] == {"field": "classifier"}
    assert nul_name.status_code == 422 and nul_name.json()["details"] == {"field": "classifier"}
    assert nul_label.status_code == 422, nul_label.text
    assert nul_label.json()["message"] == "'labels' must not contain NUL (\\u0000) characters"
    assert (
        deep.status_code == 400
        and deep.json()["message"] == NESTED
        and deep.json()["code"] == "VALIDATION_ERROR"
    )
