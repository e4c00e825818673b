"""``/v1/classify``, ``/v1/tag``, their batch forms and saved classifiers, through HTTP on the local model.

The model (all-MiniLM-L6-v2 from its PyPI package) loads once per test process, on the first request that
needs it; validation cases never load it.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.documents import docx_bytes, pdf_bytes
from tests.support.gateway import PRICES, Gateway, gateway_config
from tollgate.api.errors import DOCS_URL
from tollgate.simulator import SimServer

TICKET_LABELS = ["billing", "technical", "shipping"]
CHARGED_TWICE = "I was charged twice for my subscription this month, please refund one payment."
STANDARD_PRICE = Decimal("0.0000001")
BATCH_PRICE = Decimal("0.00000005")


def client(gateway: Gateway, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway.base_url, headers=headers, timeout=120)


def validation_body(message: str, field: str) -> dict[str, Any]:
    return {
        "error": "validation-error",
        "code": "VALIDATION_ERROR",
        "message": message,
        "details": {"field": field},
        "docs_url": DOCS_URL,
    }


# validation ---------------------------------------------------------------------------------------------

VALID = {"text": "hello", "labels": ["a", "b"]}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> Iterator[tuple[Gateway, str]]:
    """One gateway and key for the validation matrix (nothing there reaches the model or the cache)."""
    with Gateway(tmp_path_factory.mktemp("classify-validation"), sim.base_url) as gw:
        yield gw, gw.create_key()


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/classify", {**VALID, "labels": ["a", "a"]}, "labels", "Labels must be unique"),
        (
            "/classify",
            {"text": "hi"},
            "labels",
            "'labels' is required unless 'classifier' names a saved classifier",
        ),
        (
            "/classify",
            {**VALID, "labels": []},
            "labels",
            "'labels' must have between 1 and 200 labels; got 0",
        ),
        (
            "/classify",
            {**VALID, "labels": [f"l{i}" for i in range(201)]},
            "labels",
            "'labels' must have between 1 and 200 labels; got 201",
        ),
        (
            "/classify",
            {**VALID, "labels": ["x" * 101]},
            "labels",
            "'labels' is 101 characters; the limit is 100",
        ),
        ("/classify", {**VALID, "labels": ["a", 3]}, "labels", "'labels' must be a string"),
        ("/classify", {"labels": ["a"]}, "text", "'text' is required unless 'image' or 'file' is given"),
        ("/classify", {**VALID, "text": "  "}, "text", "'text' must not be empty"),
        ("/classify", {**VALID, "priority": "urgent"}, "priority", "'priority' must be 'standard' or 'fast'"),
        ("/classify", {**VALID, "cache": "no"}, "cache", "'cache' must be true or false"),
        (
            "/classify",
            {**VALID, "descriptions": {"c": "not a label"}},
            "descriptions",
            "'descriptions' names 'c', which is not one of the labels",
        ),
        (
            "/classify",
            {**VALID, "examples": {"a": ["x"] * 21}},
            "examples",
            "'examples' of 'a' must be an array of at most 20 texts",
        ),
        ("/classify", {**VALID, "model": "gpt-4o"}, "model", None),
        ("/classify", {**VALID, "threshold": 0.3}, "threshold", None),
        (
            "/classify",
            {**VALID, "image": ["https://x/y.png"] * 21},
            "image",
            "'image' takes between 1 and 20 images",
        ),
        ("/classify", {**VALID, "file": "not base64!"}, "file", "'file' is not valid base64"),
        ("/classify", {**VALID, "classifier": "bad name@v0"}, "classifier", None),
        (
            "/classify",
            {**VALID, "classifier": "saved"},
            "labels",
            "Give either 'classifier' or 'labels', not both",
        ),
        ("/tag", {**VALID, "threshold": 1.5}, "threshold", "'threshold' must be a number between 0 and 1"),
        (
            "/classify/batch",
            {"texts": [], "labels": ["a"]},
            "texts",
            "'texts' must be an array of 1 to 1000 strings",
        ),
        (
            "/tag/batch",
            {"texts": ["x"] * 1001, "labels": ["a"]},
            "texts",
            "'texts' must be an array of 1 to 1000 strings",
        ),
        ("/classify/batch", {"text": "x", "labels": ["a"]}, "text", None),
    ],
)
def test_invalid_fields_are_422_with_the_field_named(
    shared: tuple[Gateway, str], path: str, body: dict[str, Any], field: str, message: str | None
) -> None:
    gateway, key = shared
    with client(gateway, key) as c:
        r = c.post(path, json=body)
    assert r.status_code == 422, r.text
    got = r.json()
    assert got["details"] == {"field": field}
    if message is not None:
        assert got == validation_body(message, field)
    assert r.headers["x-request-id"].startswith("req_")


def test_missing_key_is_401_in_the_classification_shape(gateway: Gateway) -> None:
    with client(gateway) as c:
        r = c.post("/classify", json=VALID)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid-api-key" and r.json()["code"] == "INVALID_API_KEY"


def test_body_over_one_megabyte_is_413(gateway: Gateway) -> None:
    key = gateway.create_key()
    with client(gateway, key) as c:
        r = c.post("/classify", json={"text": "x" * 1_100_000, "labels": ["a"]})
    assert r.status_code == 413
    assert r.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_empty_balance_is_402(gateway: Gateway) -> None:
    key = gateway.create_key(balance="0")
    with client(gateway, key) as c:
        r = c.post("/classify", json={"text": CHARGED_TWICE, "labels": TICKET_LABELS})
    assert r.status_code == 402
    assert r.json()["code"] == "INSUFFICIENT_BALANCE"


# the local model ----------------------------------------------------------------------------------------


def test_classify_picks_the_right_label_then_serves_the_repeat_from_cache(gateway: Gateway) -> None:
    key = gateway.create_key()
    body = {"text": CHARGED_TWICE, "labels": TICKET_LABELS, "text_type": "support ticket"}
    with client(gateway, key) as c:
        first = c.post("/classify", json=body)
        second = c.post("/classify", json=body)
        uncached = c.post("/classify", json={**body, "cache": False})
    assert first.status_code == 200, first.text
    got = first.json()
    assert set(got) == {"label", "confidence", "tokens", "latency_ms", "cached"}
    assert got["label"] == "billing" and got["cached"] is False
    assert 0.5 < got["confidence"] <= 1 and round(got["confidence"], 4) == got["confidence"]
    assert got["tokens"] > 5
    assert first.headers["x-cache"] == "MISS" and first.headers["x-tokens-used"] == str(got["tokens"])
    assert len(first.headers["x-cache-key"]) == 16 and "x-cache-age" not in first.headers

    hit = second.json()
    assert hit["cached"] is True and hit["tokens"] == 0
    assert (hit["label"], hit["confidence"]) == (got["label"], got["confidence"])
    assert second.headers["x-cache"] == "HIT" and second.headers["x-tokens-used"] == "0"
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert int(second.headers["x-cache-age"]) >= 0

    assert uncached.json()["cached"] is False and uncached.headers["x-cache"] == "MISS"

    rows = gateway.usage_rows(expect=3)
    assert [(r.endpoint, r.status, r.cached, r.provider) for r in rows] == [
        ("classify", 200, False, "local"),
        ("classify", 200, True, "local"),
        ("classify", 200, False, "local"),
    ]
    assert rows[0].prompt_tokens == got["tokens"] and rows[0].cost == got["tokens"] * STANDARD_PRICE
    assert rows[1].cost == 0 and rows[1].prompt_tokens == 0
    assert rows[0].request_id == first.headers["x-request-id"]


def test_examples_steer_the_label(gateway: Gateway) -> None:
    key = gateway.create_key()
    text = "Order #4471: the blue kettle"
    body: dict[str, Any] = {"text": text, "labels": ["kitchen", "garden"], "cache": False}
    examples = {"garden": ["Order #1022: the blue watering can", "Order #2210: hedge trimmer"]}
    with client(gateway, key) as c:
        steered = c.post("/classify", json={**body, "examples": examples, "labels": ["kitchen", "garden"]})
    assert steered.status_code == 200
    assert steered.json()["label"] in ("kitchen", "garden")


def test_tag_returns_the_labels_above_the_threshold(gateway: Gateway) -> None:
    key = gateway.create_key()
    body = {
        "text": "The app crashes every time I open it, and I was charged twice for my subscription.",
        "labels": ["billing", "technical", "shipping"],
        "text_type": "support ticket",
    }
    with client(gateway, key) as c:
        r = c.post("/tag", json=body)
        everything = c.post("/tag", json={**body, "threshold": 0})
    assert r.status_code == 200, r.text
    labels = r.json()["labels"]
    assert "billing" in [x["label"] for x in labels] and "shipping" not in [x["label"] for x in labels]
    every = everything.json()["labels"]
    confs = [x["confidence"] for x in every]
    assert confs == sorted(confs, reverse=True) and len(confs) == 3
    assert labels == [x for x in every if x["confidence"] >= 0.5], "the same scores, cut at the threshold"


def test_batch_keeps_input_order_reports_item_errors_and_caches_per_item(gateway: Gateway) -> None:
    key = gateway.create_key()
    texts = [
        CHARGED_TWICE,
        "",
        "The parcel never arrived and tracking shows nothing.",
        "The app crashes on start.",
    ]
    descriptions = {"technical": "the software has a bug, an error or crashes"}
    body = {
        "texts": texts,
        "labels": TICKET_LABELS,
        "descriptions": descriptions,
        "text_type": "support ticket",
    }
    with client(gateway, key) as c:
        r = c.post("/classify/batch", json=body)
        again = c.post("/classify/batch", json={**body, "texts": [texts[0], "A new text about a refund."]})
    assert r.status_code == 200, r.text
    got = r.json()
    results = got["results"]
    assert [x.get("label") for x in results] == ["billing", None, "shipping", "technical"]
    assert results[1]["error"] == {"code": "VALIDATION_ERROR", "message": "'texts[1]' must not be empty"}
    assert all(x["error"] is None for i, x in enumerate(results) if i != 1)
    assert got["total_tokens"] == sum(x["tokens"] for x in results) and got["total_tokens"] > 0
    assert r.headers["x-tokens-used"] == str(got["total_tokens"])
    assert [x["cache"]["hit"] for x in again.json()["results"]] == [True, False]
    assert again.json()["results"][0]["tokens"] == 0
    rows = gateway.usage_rows(expect=2)
    assert [r.endpoint for r in rows] == ["classify.batch", "classify.batch"]
    assert rows[0].prompt_tokens == got["total_tokens"] and rows[0].cost == got["total_tokens"] * BATCH_PRICE


# saved classifiers --------------------------------------------------------------------------------------


def test_saved_classifiers_are_versioned_pinnable_and_private(gateway: Gateway) -> None:
    key = gateway.create_key()
    other = gateway.create_key(account="someone-else")
    v1 = {"name": "tickets", "labels": ["billing", "shipping"], "text_type": "support ticket"}
    v2 = {**v1, "labels": ["refund", "delivery"]}
    with client(gateway, key) as c:
        first = c.post("/classifiers", json=v1)
        second = c.post("/classifiers", json=v2)
        listed = c.get("/classifiers").json()["classifiers"]
        latest = c.get("/classifiers/tickets").json()
        pinned = c.get("/classifiers/tickets@v1").json()
        missing = c.get("/classifiers/tickets@v9")
        by_latest = c.post("/classify", json={"text": CHARGED_TWICE, "classifier": "tickets"}).json()
        by_pin = c.post("/classify", json={"text": CHARGED_TWICE, "classifier": "tickets@v1"}).json()
    with client(gateway, other) as c:
        hidden = c.get("/classifiers/tickets")
        assert c.get("/classifiers").json() == {"classifiers": []}
    assert first.status_code == 201 and first.json()["version"] == 1 and first.json()["ref"] == "tickets@v1"
    assert second.json()["version"] == 2
    assert [(x["name"], x["version"]) for x in listed] == [("tickets", 2)]
    assert latest["labels"] == ["refund", "delivery"] and pinned["labels"] == ["billing", "shipping"]
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    assert by_latest["label"] == "refund" and by_pin["label"] == "billing"
    assert hidden.status_code == 404


def test_saving_a_classifier_validates_it(gateway: Gateway) -> None:
    key = gateway.create_key()
    with client(gateway, key) as c:
        r = c.post("/classifiers", json={"name": "has space", "labels": ["a"]})
        dup = c.post("/classifiers", json={"name": "ok", "labels": ["a", "a"]})
        mode = c.post("/classifiers", json={"name": "ok", "labels": ["a"], "mode": "both"})
    assert r.status_code == 422 and r.json()["details"] == {"field": "name"}
    assert dup.json() == validation_body("Labels must be unique", "labels")
    assert mode.json()["details"] == {"field": "mode"}


# files --------------------------------------------------------------------------------------------------


def test_a_docx_file_is_classified_from_its_text(gateway: Gateway) -> None:
    key = gateway.create_key()
    data = base64.b64encode(docx_bytes("Invoice dispute", CHARGED_TWICE)).decode()
    with client(gateway, key) as c:
        r = c.post("/classify", json={"file": data, "labels": TICKET_LABELS, "text_type": "support ticket"})
        bad = c.post(
            "/classify", json={"file": base64.b64encode(b"PK\x03\x04broken").decode(), "labels": ["a"]}
        )
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "billing" and r.json()["visual_tokens"] == 0
    assert bad.status_code == 422 and bad.json()["details"] == {"field": "file"}


def test_a_pdf_file_is_classified_from_its_text_and_refused_when_unreadable(gateway: Gateway) -> None:
    key = gateway.create_key()
    pdf = base64.b64encode(pdf_bytes("Where is my parcel? It never arrived.")).decode()
    encrypted = base64.b64encode(pdf_bytes("secret", password="pw")).decode()
    blank = base64.b64encode(pdf_bytes("")).decode()
    body = {"labels": TICKET_LABELS, "text_type": "support ticket"}
    with client(gateway, key) as c:
        r = c.post("/classify", json={**body, "file": pdf})
        refused = [
            c.post("/classify", json={**body, "file": f}).json()["message"] for f in (encrypted, blank)
        ]
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "shipping"
    assert refused == [
        "The PDF is encrypted; send an unencrypted copy",
        "The document has no extractable text",
    ]


# the LLM backend ----------------------------------------------------------------------------------------


def llm_sections(sim: SimServer, faults: str = "") -> dict[str, Any]:
    """Config whose classification backend is a chat model that answers ``{"label":"billing"}``; ``faults``
    are more simulator options for its deployment (``,error=400``)."""
    upstream = 'upstream-small@reply={"label":"billing"}' + faults
    models = gateway_config(sim.base_url, "sqlite+aiosqlite://")["models"] + [
        {
            "id": "sim-classifier",
            "pricing": PRICES,
            "max_output_length": 2048,
            "input_modalities": ["text", "image"],
            "deployments": [{"provider": "sim", "model": upstream}],
        }
    ]
    return {"models": models, "classification": {"backend": "llm", "llm_model": "sim-classifier"}}


@pytest.fixture
def llm_gateway(tmp_path: Path, sim: SimServer) -> Iterator[Gateway]:
    """A gateway whose classification backend is a chat model; the simulator answers ``{"label":"billing"}``."""
    with Gateway(tmp_path, sim.base_url, sections=llm_sections(sim)) as gw:
        yield gw


def cost_of_tokens(prompt: int, completion: int) -> Decimal:
    return prompt * Decimal(PRICES["prompt"]) + completion * Decimal(PRICES["completion"])


def chat_calls(sim: SimServer) -> list[dict[str, Any]]:
    return [x for x in sim.requests() if x["path"].endswith("/chat/completions")]


def test_the_llm_backend_asks_the_chat_model_with_the_labels_as_an_enum(
    llm_gateway: Gateway, sim: SimServer
) -> None:
    key = llm_gateway.create_key()
    sim.clear()
    with client(llm_gateway, key) as c:
        r = c.post("/classify", json={"text": CHARGED_TWICE, "labels": ["billing", "shipping"]})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["label"] == "billing" and got["confidence"] == 0.9 and got["cached"] is False
    [sent] = [x for x in sim.requests() if x["path"].endswith("/chat/completions")]
    schema = sent["body"]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == ["billing", "shipping"]
    assert sent["body"]["messages"][1]["content"] == CHARGED_TWICE
    assert "cache" not in sent["body"], "the chat cache is told to stay out, and drops the field"
    [row] = llm_gateway.usage_rows(expect=1)
    assert (row.endpoint, row.provider, row.model, row.status) == ("classify", "sim", "sim-classifier", 200)
    assert got["tokens"] == row.prompt_tokens + row.completion_tokens and row.cost > 0


def test_an_llm_batch_makes_one_call_per_text_and_leaves_one_row_with_their_sums(
    llm_gateway: Gateway, sim: SimServer
) -> None:
    key = llm_gateway.create_key(tier="developer")  # 60 requests a minute
    texts = ["one", "two words here", "a third and somewhat longer text to classify, with more tokens", ""]
    sim.clear()
    with client(llm_gateway, key) as c:
        r = c.post("/classify/batch", json={"texts": texts, "labels": ["billing", "shipping"]})
    assert r.status_code == 200, r.text
    got = r.json()
    results = got["results"]
    assert [x.get("label") for x in results] == ["billing", "billing", "billing", None]
    assert results[3]["error"]["code"] == "VALIDATION_ERROR"
    assert len(chat_calls(sim)) == 3, "one model call per non-empty text"
    tokens = [x["tokens"] for x in results[:3]]
    assert len(set(tokens)) == 3 and got["total_tokens"] == sum(tokens)
    # Each call was admitted on its own: three requests counted against the key's minute.
    assert r.headers["x-ratelimit-limit-requests"] == "60"
    assert r.headers["x-ratelimit-remaining-requests"] == "57"

    [row] = llm_gateway.usage_rows(expect=1)
    assert row.request_id == r.headers["x-request-id"]
    assert (row.endpoint, row.status, row.error_code, row.cached) == ("classify.batch", 200, None, False)
    assert (row.provider, row.model, row.attempts) == ("sim", "sim-classifier", 3)
    assert row.prompt_tokens + row.completion_tokens == sum(tokens)
    assert row.cost == cost_of_tokens(row.prompt_tokens, row.completion_tokens) > 0
    assert llm_gateway.balance() == Decimal(10) - row.cost, "debited the calls' costs, once"


def test_an_llm_batch_keeps_within_the_keys_concurrency_limit(tmp_path: Path, sim: SimServer) -> None:
    """Calls that each take 50 ms, from a key allowed one request at a time: the batch runs them one by one
    rather than refusing its own texts with 429."""
    with Gateway(tmp_path, sim.base_url, sections=llm_sections(sim, ",latency_ms=50")) as gw:
        key = gw.create_key(concurrency=1)
        with client(gw, key) as c:
            r = c.post(
                "/classify/batch", json={"texts": ["a", "b", "c", "d"], "labels": ["billing", "shipping"]}
            )
    assert r.status_code == 200, r.text
    assert [x["error"] for x in r.json()["results"]] == [None] * 4
    assert [x["label"] for x in r.json()["results"]] == ["billing"] * 4


def test_an_llm_batch_with_a_failed_call_still_leaves_one_row_and_the_item_error(
    tmp_path: Path, sim: SimServer
) -> None:
    # The first call to reach the simulator is rejected (400: not retried); the others answer.
    faults = f",fail_first=1,error=400,scenario=batch-{secrets.token_hex(4)}"
    with Gateway(tmp_path, sim.base_url, sections=llm_sections(sim, faults)) as gw:
        key = gw.create_key()
        with client(gw, key) as c:
            r = c.post(
                "/classify/batch", json={"texts": ["one", "two", "three"], "labels": ["billing", "shipping"]}
            )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        failed = [x for x in results if x["error"] is not None]
        assert len(failed) == 1 and failed[0]["error"]["code"] == "UPSTREAM_REJECTED", failed
        assert failed[0]["tokens"] == 0 and "label" not in failed[0]
        served = [x for x in results if x["error"] is None]
        assert len(served) == 2 and all(x["label"] == "billing" for x in served)

        [row] = gw.usage_rows(expect=1)
        assert (row.request_id, row.endpoint, row.status) == (
            r.headers["x-request-id"],
            "classify.batch",
            200,
        )
        assert row.prompt_tokens + row.completion_tokens == sum(x["tokens"] for x in served) > 0
        assert row.cost == cost_of_tokens(row.prompt_tokens, row.completion_tokens) > 0
        assert gw.balance() == Decimal(10) - row.cost


def test_an_llm_batch_whose_every_call_fails_records_the_failure_and_costs_nothing(
    tmp_path: Path, sim: SimServer
) -> None:
    with Gateway(tmp_path, sim.base_url, sections=llm_sections(sim, ",error=400")) as gw:
        key = gw.create_key()
        with client(gw, key) as c:
            r = c.post("/classify/batch", json={"texts": ["one", "two"], "labels": ["billing", "shipping"]})
        assert r.status_code == 200, r.text
        codes = [x["error"]["code"] for x in r.json()["results"]]
        assert codes == ["UPSTREAM_REJECTED"] * 2
        [row] = gw.usage_rows(expect=1)
        assert row.request_id == r.headers["x-request-id"]
        assert (row.status, row.error_code, row.cost) == (400, "UPSTREAM_REJECTED", 0)
        assert gw.balance() == Decimal(10)


def test_a_classification_cache_hit_carries_the_rate_limit_headers_without_counting(
    llm_gateway: Gateway,
) -> None:
    key = llm_gateway.create_key(tier="developer")
    body = {"text": CHARGED_TWICE, "labels": ["billing", "shipping"]}
    with client(llm_gateway, key) as c:
        miss = c.post("/classify", json=body)
        batch = {"texts": [CHARGED_TWICE], "labels": body["labels"]}
        hits = [c.post("/classify", json=body), c.post("/classify/batch", json=batch)]
        other = c.post("/classify", json={**body, "text": "Where is my parcel?"})
    assert miss.status_code == 200 and miss.headers["x-cache"] == "MISS", miss.text
    assert miss.headers["x-ratelimit-remaining-requests"] == "59"
    for hit in hits:
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT", hit.text
        assert hit.headers["x-ratelimit-limit-requests"] == "60"
        assert hit.headers["x-ratelimit-remaining-requests"] == "59", "a hit counts nothing"
        assert hit.headers["x-ratelimit-limit-tokens"] == "500000"
        assert int(hit.headers["x-ratelimit-reset"]) > time.time()
    assert other.headers["x-ratelimit-remaining-requests"] == "58"


def test_a_pdf_goes_to_a_vision_model_as_text_and_page_images(llm_gateway: Gateway, sim: SimServer) -> None:
    key = llm_gateway.create_key()
    sim.clear()
    pdf = base64.b64encode(pdf_bytes("Invoice 1", "Invoice 2")).decode()
    with client(llm_gateway, key) as c:
        r = c.post("/classify", json={"file": pdf, "labels": ["billing", "shipping"]})
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "billing" and "visual_tokens" in r.json()
    [sent] = [x for x in sim.requests() if x["path"].endswith("/chat/completions")]
    parts = sent["body"]["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "Invoice 1\n\nInvoice 2"}
    urls = [p["image_url"]["url"] for p in parts[1:]]
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,iVBORw0KGgo") for u in urls)


def test_a_docx_goes_to_a_vision_model_as_text_and_page_images(llm_gateway: Gateway, sim: SimServer) -> None:
    key = llm_gateway.create_key()
    sim.clear()
    document = base64.b64encode(docx_bytes("Invoice 1", "Invoice 2")).decode()
    with client(llm_gateway, key) as c:
        r = c.post("/classify", json={"file": document, "labels": ["billing", "shipping"]})
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "billing"
    [sent] = [x for x in sim.requests() if x["path"].endswith("/chat/completions")]
    parts = sent["body"]["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "Invoice 1\n\nInvoice 2"}
    urls = [p["image_url"]["url"] for p in parts[1:]]
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,iVBORw0KGgo") for u in urls)


def test_rate_limits_apply_to_classification_but_not_to_cache_hits(gateway: Gateway) -> None:
    key = gateway.create_key(rpm=2)
    body = {"text": CHARGED_TWICE, "labels": TICKET_LABELS}
    with client(gateway, key) as c:
        first = c.post("/classify", json=body)
        hits = [c.post("/classify", json=body) for _ in range(3)]
        second = c.post("/classify", json={**body, "text": "Where is my parcel?"})
        refused = c.post("/classify", json={**body, "text": "The app crashes."})
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert [h.headers["x-cache"] for h in hits] == ["HIT"] * 3
    assert [h.headers["x-ratelimit-remaining-requests"] for h in hits] == ["1"] * 3
    assert second.status_code == 200 and second.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "rate-limit-exceeded" and "retry-after" in refused.headers


def test_preload_loads_the_local_model_at_start_up(tmp_path: Path, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url, sections={"classification": {"preload": True}}) as gw:
        service = gw.server.server.config.app.state.classification
        deadline = time.monotonic() + 120
        while service._preload is None or not service._preload.done():
            assert time.monotonic() < deadline, "the model did not load in time"
            time.sleep(0.05)
        assert service.embedder.loaded and service._preload.exception() is None
