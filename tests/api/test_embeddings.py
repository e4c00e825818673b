"""``POST /v1/embeddings`` end to end: official openai SDK → Tollgate → simulator, billed per input token."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.gateway import PRICES, Gateway
from tests.support.servers import ServerThread
from tollgate.simulator import SimServer


def post(gw: Gateway, key: str, body: Any) -> httpx.Response:
    return httpx.post(gw.base_url + "/embeddings", headers={"Authorization": f"Bearer {key}"}, json=body)


def test_float_embeddings_are_relayed_billed_and_logged(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key(balance="1")
    raw = gateway.client(key).embeddings.with_raw_response.create(
        model="sim-embed", input=["the quick brown fox", "jumps"], encoding_format="float", dimensions=8
    )
    resp = raw.parse()
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 8 and isinstance(d.embedding[0], float) for d in resp.data)
    assert resp.usage.prompt_tokens > 0 and resp.usage.total_tokens == resp.usage.prompt_tokens
    assert raw.headers["x-tollgate-provider"] == "sim"
    (row,) = gateway.usage_rows(expect=1)
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.endpoint, row.status, row.model, row.upstream_model) == (
        "embeddings",
        200,
        "sim-embed",
        "upstream-embed",
    )
    assert (row.prompt_tokens, row.completion_tokens, row.estimated) == (resp.usage.prompt_tokens, 0, False)
    assert row.cost == resp.usage.prompt_tokens * Decimal(PRICES["prompt"])
    assert gateway.balance() == 1 - row.cost
    upstream = sim.requests()[-1]
    assert upstream["path"] == "/v1/embeddings"
    assert upstream["body"] == {
        "model": "upstream-embed",
        "input": ["the quick brown fox", "jumps"],
        "encoding_format": "float",
        "dimensions": 8,
    }


def test_base64_embeddings_decode_to_the_float_ones(gateway: Gateway) -> None:
    key = gateway.create_key()
    c = gateway.client(key)
    floats = (
        c.embeddings.create(model="sim-embed", input="hello world", encoding_format="float").data[0].embedding
    )
    packed = (
        c.embeddings.create(model="sim-embed", input="hello world", encoding_format="base64")
        .data[0]
        .embedding
    )
    assert isinstance(packed, str)
    raw = base64.b64decode(packed)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(floats)
    # the SDK asks for base64 by default and decodes it itself
    assert c.embeddings.create(model="sim-embed", input="hello world").data[0].embedding == pytest.approx(
        floats
    )
    assert [r.endpoint for r in gateway.usage_rows(expect=3)] == ["embeddings"] * 3


def test_token_id_inputs_are_accepted(gateway: Gateway) -> None:
    key = gateway.create_key()
    resp = gateway.client(key).embeddings.create(
        model="sim-embed", input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )
    assert len(resp.data) == 2
    one = gateway.client(key).embeddings.create(model="sim-embed", input=[7, 8, 9], encoding_format="float")
    assert len(one.data) == 1


def test_fallback_deployment_serves_when_the_first_is_down(gateway: Gateway) -> None:
    key = gateway.create_key()
    raw = gateway.client(key).embeddings.with_raw_response.create(model="sim-embed-fallback", input="hi")
    assert (
        raw.headers["x-tollgate-attempts"] == "2"
        and raw.headers["x-tollgate-upstream-model"] == "upstream-embed"
    )
    (row,) = gateway.usage_rows(expect=1)
    assert (row.status, row.attempts, row.provider) == (200, 2, "sim")


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"input": "hi"}, "model", "'model' is required"),
        ({"model": "sim-small"}, "input", "'input' is required"),
        ({"model": "sim-small", "input": ""}, "input", "empty string"),
        ({"model": "sim-small", "input": []}, "input", "not empty"),
        ({"model": "sim-small", "input": ["ok", 5]}, "input", "'input[1]'"),
        (
            {"model": "sim-small", "input": "hi", "encoding_format": "hex"},
            "encoding_format",
            "float or base64",
        ),
        ({"model": "sim-small", "input": "hi", "dimensions": 0}, "dimensions", "positive integer"),
        ({"model": "nope", "input": "hi"}, "model", "is not available"),
        ({"model": "sim-small", "input": "hi"}, "model", "not an embeddings model"),
    ],
)
def test_invalid_requests_get_openai_errors_and_a_row(
    gateway: Gateway, body: dict[str, Any], param: str, says: str
) -> None:
    key = gateway.create_key()
    r = post(gateway, key, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and says in err["message"]
    (row,) = gateway.usage_rows(expect=1)
    assert (row.endpoint, row.status, row.cost) == ("embeddings", 400, 0)


def test_wrong_key_is_refused_and_leaves_no_row(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        gateway.client("tg-wrong").embeddings.create(model="sim-embed", input="hi")
    key = gateway.create_key()
    gateway.client(key).embeddings.create(model="sim-embed", input="hi")
    (row,) = gateway.usage_rows(expect=1)
    assert (row.endpoint, row.status) == ("embeddings", 200), "a refused key is counted, not written"
    assert gateway.app.state.completions.auth.invalid_attempts == 1


@pytest.fixture
def usageless_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose upstream answers embeddings without ``usage``."""

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.5, 0.25]} for i in range(len(items))]
        return JSONResponse({"object": "list", "data": data, "model": body["model"]})

    with ServerThread(Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])) as upstream:
        with Gateway(tmp_path, upstream.url + "/v1") as gw:
            yield gw


def test_missing_upstream_usage_is_counted_locally_and_marked_estimated(usageless_gateway: Gateway) -> None:
    key = usageless_gateway.create_key()
    resp = usageless_gateway.client(key).embeddings.create(
        model="sim-embed", input=["hello world", "bye"], encoding_format="float"
    )
    assert resp.usage.prompt_tokens == 3  # "hello world" + "bye" in cl100k
    (row,) = usageless_gateway.usage_rows(expect=1)
    assert (row.prompt_tokens, row.estimated) == (3, True)
    assert row.cost == 3 * Decimal(PRICES["prompt"])


def test_a_defect_inside_an_embeddings_call_is_a_500_that_settles_like_any_other_end(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception: 500 in OpenAI's shape, exactly one row, the reservation and the key's
    concurrency slot released (before: no row, 0.024 still reserved, the key's next request 429)."""
    from tollgate.providers.openai_compat import OpenAICompatProvider

    real = OpenAICompatProvider.embeddings

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated defect")

    monkeypatch.setattr(OpenAICompatProvider, "embeddings", broken)
    key = gateway.create_key(balance="1", concurrency=1)
    r = post(gateway, key, {"model": "sim-embed", "input": "hi"})
    assert r.status_code == 500, r.text
    assert "Internal error" in r.json()["error"]["message"] and "simulated defect" not in r.text
    (row,) = gateway.usage_rows(expect=1)
    assert (row.endpoint, row.status, row.cost) == ("embeddings", 500, 0)
    assert gateway.app.state.ledger.available(row.account_id) == 1
    monkeypatch.setattr(OpenAICompatProvider, "embeddings", real)
    assert post(gateway, key, {"model": "sim-embed", "input": "hi"}).status_code == 200  # slot free
