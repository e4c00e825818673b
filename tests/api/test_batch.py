"""``/v1/batch``: async batch jobs through HTTP, as a user drives them (httpx), on a gateway with its own
database and files. The full runs classify on the bundled model (all-MiniLM-L6-v2); the refusals never
reach it (their gateways run no workers, so a started job stays processing)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.gateway import Gateway
from tollgate.api.errors import DOCS_URL
from tollgate.simulator import SimServer

LABELS = ["billing", "technical", "shipping"]
BATCH_PRICE = Decimal("0.00000005")
TEXTS = [
    "I was charged twice for my subscription this month",
    "The app crashes when I open the settings page",
    "My parcel has not arrived after two weeks",
]


def batch_gateway(tmp: Path, sim: SimServer, **batch: Any) -> Gateway:
    config = {"path": str(tmp / "files"), "poll_interval": 0.1, **batch}
    return Gateway(tmp, sim.base_url, sections={"batch": config})


def client(gw: Gateway, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def ndjson(n: int, start: int = 0) -> bytes:
    return b"".join(
        orjson.dumps({"text": TEXTS[i % 3], "custom_id": f"req-{i}"}) + b"\n" for i in range(start, start + n)
    )


def create(c: httpx.Client, body: dict[str, Any] | None = None, data: bytes | None = None) -> dict[str, Any]:
    r = c.post("/batch", json=body or {"labels": LABELS})
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    if data is not None:
        up = c.put(job["upload_url"], content=data)
        assert up.status_code == 200, up.text
        assert up.json()["input_bytes"] == len(data)
    return job


def wait(c: httpx.Client, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = c.get(f"/batch/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def error(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {
        "error": code.lower().replace("_", "-"),
        "code": code,
        "message": message,
        "details": details,
        "docs_url": DOCS_URL,
    }


# refusals (no worker) -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, sim: SimServer) -> Iterator[Gateway]:
    """A gateway whose jobs are never worked on; at most 1000 bytes of input."""
    with batch_gateway(tmp_path_factory.mktemp("batch-idle"), sim, workers=0, max_input_bytes=1000) as gw:
        yield gw


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "labels", "'labels' is required unless 'classifier' names a saved classifier"),
        ({"labels": ["a", "a"]}, "labels", "Labels must be unique"),
        (
            {"labels": ["a"], "texts": ["x"]},
            "texts",
            "Unknown field 'texts'; accepted: backend, classifier, "
            "descriptions, examples, labels, mode, text_type, threshold",
        ),
        ({"labels": ["a"], "mode": "both"}, "mode", "'mode' must be 'single' or 'multi'"),
        ({"labels": ["a"], "threshold": 0.3}, "threshold", "'threshold' applies to mode 'multi' only"),
        (
            {"labels": ["a"], "mode": "multi", "threshold": 2},
            "threshold",
            "'threshold' must be a number between 0 and 1",
        ),
        (
            {"labels": ["a"], "backend": "llm"},
            "backend",
            "Batch jobs classify on the local backend; 'backend' must be 'local'",
        ),
        ({"classifier": "missing"}, "classifier", "No saved classifier 'missing'"),
    ],
)
def test_create_validates_the_classification_configuration(
    idle: Gateway, body: dict[str, Any], field: str, message: str
) -> None:
    with client(idle, idle.create_key()) as c:
        r = c.post("/batch", json=body)
    code = "NOT_FOUND" if field == "classifier" else "VALIDATION_ERROR"
    assert r.status_code == (404 if code == "NOT_FOUND" else 422), r.text
    assert r.json() == error(code, message, field=field)


def test_every_endpoint_needs_a_key_and_keeps_jobs_private_to_the_account(idle: Gateway) -> None:
    assert httpx.post(f"{idle.base_url}/batch", json={"labels": LABELS}).status_code == 401
    with (
        client(idle, idle.create_key(account="owner")) as owner,
        client(idle, idle.create_key(account="other")) as other,
    ):
        job = create(owner)
        jid = job["job_id"]
        for method, path in [
            ("GET", f"/batch/{jid}"),
            ("PUT", f"/batch/{jid}/input"),
            ("POST", f"/batch/{jid}/start"),
            ("GET", f"/batch/{jid}/results"),
            ("POST", f"/batch/{jid}/cancel"),
            ("DELETE", f"/batch/{jid}"),
        ]:
            r = other.request(method, path, content=b'{"text": "x"}\n' if method == "PUT" else None)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json() == error("NOT_FOUND", f"No batch job '{jid}'", field="job_id")
        assert other.get("/batch").json()["data"] == []
        assert owner.get(f"/batch/{jid}").json()["status"] == "pending"


def test_start_needs_an_uploaded_input_and_uploads_are_bounded(idle: Gateway) -> None:
    with client(idle, idle.create_key()) as c:
        job = create(c)
        assert job["status"] == "pending" and job["upload_method"] == "PUT" and job["upload_fields"] == {}
        assert job["upload_url"] == f"{idle.base_url}/batch/{job['job_id']}/input"
        assert job["input_key"] == f"jobs/{job['job_id']}/input.ndjson" and job["max_input_bytes"] == 1000
        r = c.post(f"/batch/{job['job_id']}/start")
        assert r.status_code == 400
        assert r.json()["message"].startswith("No input uploaded: upload the NDJSON to the job's upload_url")
        big = c.put(job["upload_url"], content=b'{"text": "x"}\n' * 100)  # 1400 bytes, declared
        assert big.status_code == 413
        assert big.json() == error("PAYLOAD_TOO_LARGE", "The input is 1400 bytes; the limit is 1000 bytes.")

        def chunked() -> Iterator[bytes]:
            yield from [b'{"text": "x"}\n' * 50] * 2  # no Content-Length: counted as it streams

        streamed = c.put(job["upload_url"], content=chunked())
        assert streamed.status_code == 413
        assert streamed.json()["message"] == "The input is over the limit of 1000 bytes."
        assert c.post(f"/batch/{job['job_id']}/start").status_code == 400  # nothing was kept
        assert c.put(job["upload_url"], content=b"").status_code == 400


def test_a_second_active_job_is_refused_with_409(tmp_path: Path, sim: SimServer) -> None:
    with batch_gateway(tmp_path, sim, workers=0) as gw:
        with client(gw, gw.create_key()) as c:
            first, second = create(c, data=ndjson(3)), create(c, data=ndjson(3))
            r = c.post(f"/batch/{first['job_id']}/start")
            assert r.status_code == 202 and r.json()["status"] == "processing"
            assert r.json()["estimated_tokens"] == -(-len(ndjson(3)) // 4)
            again = c.post(f"/batch/{first['job_id']}/start")
            assert again.status_code == 409
            assert (
                again.json()["message"] == "The job is processing; only pending or failed jobs can be started"
            )
            busy = c.post(f"/batch/{second['job_id']}/start")
            assert busy.status_code == 409
            assert busy.json() == error(
                "BATCH_CONCURRENCY_LIMIT",
                "This account already has 1 batch job processing, its limit; wait for one to finish or cancel "
                "it, then start this one",
                limit=1,
            )
            assert c.post(f"/batch/{first['job_id']}/cancel").json()["status"] == "cancelled"
            assert c.post(f"/batch/{second['job_id']}/start").status_code == 202
            assert c.post(f"/batch/{first['job_id']}/start").status_code == 409  # cancelled is final


def test_tier_batch_jobs_setting_raises_the_limit(tmp_path: Path, sim: SimServer) -> None:
    gw = Gateway(
        tmp_path,
        sim.base_url,
        sections={"batch": {"path": str(tmp_path / "files"), "workers": 0}},
        tiers={"production": {"batch_jobs": 2}},
    )
    with gw, client(gw, gw.create_key(tier="production")) as c:
        jobs = [create(c, data=ndjson(2)) for _ in range(3)]
        assert [c.post(f"/batch/{j['job_id']}/start").status_code for j in jobs] == [202, 202, 409]


def test_start_refuses_with_402_when_the_estimate_exceeds_the_balance(idle: Gateway) -> None:
    data = ndjson(8)  # ≈ 700 bytes: ≈ 175 tokens, 0.00000875 at the batch price
    with client(idle, idle.create_key(balance="0.000001", account="poor")) as c:
        job = create(c, data=data)
        r = c.post(f"/batch/{job['job_id']}/start")
    tokens = -(-len(data) // 4)
    assert r.status_code == 402
    assert r.json() == error(
        "INSUFFICIENT_BALANCE",
        f"Insufficient balance: the job is estimated at {tokens} tokens, costing up to "
        f"{(BATCH_PRICE * tokens).normalize():f}; the account has 0.000001 available. Add credit, then start "
        "the job again.",
        estimated_tokens=tokens,
        estimated_cost=f"{(BATCH_PRICE * tokens).normalize():f}",
    )


def test_list_is_newest_first_and_paginated(idle: Gateway) -> None:
    with client(idle, idle.create_key(account="lister")) as c:
        ids = [create(c)["job_id"] for _ in range(5)]
        page = c.get("/batch", params={"limit": 2}).json()
        assert [j["job_id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"]
        rest = c.get("/batch", params={"limit": 10, "after": page["last_id"]}).json()
        assert [j["job_id"] for j in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
        r = c.get("/batch", params={"limit": 0})
        assert r.status_code == 400 and r.json()["message"] == "'limit' must be an integer from 1 to 100"


def test_cancel_and_delete(idle: Gateway) -> None:
    with client(idle, idle.create_key(account="deleter")) as c:
        job = create(c, data=ndjson(2))
        jid = job["job_id"]
        assert c.post(f"/batch/{jid}/start").status_code == 202
        r = c.delete(f"/batch/{jid}")
        assert r.status_code == 409
        assert r.json()["message"].startswith("The job is processing; cancel it first")
        assert c.get(f"/batch/{jid}/results").status_code == 409
        cancelled = c.post(f"/batch/{jid}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert c.post(f"/batch/{jid}/cancel").status_code == 409
        assert c.delete(f"/batch/{jid}").json() == {"job_id": jid, "object": "batch", "deleted": True}
        assert c.get(f"/batch/{jid}").status_code == 404
        files = Path(idle.settings.config.batch.path) / "jobs" / jid
        assert not files.exists()


# full runs on the local model -------------------------------------------------------------------------------


def test_a_job_classifies_every_line_in_order_and_bills_it_once(tmp_path: Path, sim: SimServer) -> None:
    with batch_gateway(tmp_path, sim, chunk_lines=40) as gw, client(gw, gw.create_key("1")) as c:
        data = ndjson(60) + b'{"text": ""}\n' + b"{oops\n" + ndjson(38, start=60)
        job = create(c, {"labels": LABELS}, data)
        assert c.post(f"/batch/{job['job_id']}/start").status_code == 202
        done = wait(c, job["job_id"])
        assert done["status"] == "completed", done
        assert (done["requests_total"], done["requests_completed"], done["requests_failed"]) == (100, 98, 2)
        res = c.get(f"/batch/{job['job_id']}/results").json()
        assert res["download_url"] == f"{gw.base_url}/batch/{job['job_id']}/results/content"
        lines = [orjson.loads(x) for x in c.get(res["download_url"]).content.splitlines()]
        assert [x["line"] for x in lines] == list(range(1, 101))
        # The same answers as the synchronous endpoint (asked on another account, so this one's bill is the job's).
        with client(gw, gw.create_key(account="sync")) as sync:
            answers = sync.post("/classify/batch", json={"labels": LABELS, "texts": TEXTS, "cache": False})
        expected = [r["label"] for r in answers.json()["results"]]
        good = [x for x in lines if "error" not in x]
        assert [x["custom_id"] for x in good] == [f"req-{i}" for i in range(98)]
        assert [x["label"] for x in good] == [expected[i % 3] for i in range(98)]
        assert all(0 < x["confidence"] <= 1 and x["tokens"] > 0 for x in good)
        assert lines[60]["error"] == {
            "code": "VALIDATION_ERROR",
            "message": "line 61: 'text' must be a non-empty string",
        }
        assert lines[61]["error"] == {"code": "VALIDATION_ERROR", "message": "line 62 is not valid JSON"}
        rows = [r for r in gw.usage_rows() if r.endpoint == "batch"]
        assert sorted(r.request_id for r in rows) == [f"{job['job_id']}-{i:06d}" for i in range(3)]
        tokens = sum(x["tokens"] for x in good)
        assert sum(r.prompt_tokens for r in rows) == tokens == done["actual_tokens"]
        assert Decimal(done["cost"]) == BATCH_PRICE * tokens == sum(r.cost for r in rows)
        assert gw.balance() == Decimal(1) - BATCH_PRICE * tokens


def test_a_multi_label_job_with_a_saved_classifier(tmp_path: Path, sim: SimServer) -> None:
    with batch_gateway(tmp_path, sim) as gw, client(gw, gw.create_key()) as c:
        saved = c.post("/classifiers", json={"name": "tickets", "labels": LABELS, "mode": "multi"})
        assert saved.status_code == 201
        job = create(c, {"classifier": "tickets", "mode": "multi", "threshold": 0.2}, ndjson(6))
        assert job["mode"] == "multi" and job["labels"] == LABELS
        assert c.post(f"/batch/{job['job_id']}/start").status_code == 202
        assert wait(c, job["job_id"])["status"] == "completed"
        url = c.get(f"/batch/{job['job_id']}/results").json()["download_url"]
        lines = [orjson.loads(x) for x in c.get(url).content.splitlines()]
        assert [x["custom_id"] for x in lines] == [f"req-{i}" for i in range(6)]
        assert all(isinstance(x["labels"], list) and "label" not in x for x in lines)
        assert lines[0]["labels"][0]["label"] == "billing"
