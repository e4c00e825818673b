"""Hostile documents on ``/v1/classify``: bombs refused fast in the classification error shape, and documents
read only once their request is authenticated and admitted."""

from __future__ import annotations

import base64
import time
from decimal import Decimal
from pathlib import Path

import httpx

from tests.api.test_classify import llm_sections
from tests.support.documents import docx_bomb, docx_bytes, pdf_stream_bomb
from tests.support.gateway import Gateway
from tollgate.api.errors import DOCS_URL
from tollgate.simulator import SimServer

LABELS = ["billing", "shipping"]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(next(x for x in status if x.startswith("VmRSS:")).split()[1]) / 1024


def post(gateway: Gateway, key: str | None, data: bytes) -> tuple[httpx.Response, float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.monotonic()
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as c:
        r = c.post("/classify", json={"file": base64.b64encode(data).decode(), "labels": LABELS})
    return r, time.monotonic() - started


def test_a_docx_bomb_is_refused_at_once_with_413_naming_the_limit(gateway: Gateway) -> None:
    key = gateway.create_key()
    warm, _ = post(gateway, gateway.create_key(account="warm-up"), docx_bytes("load the model first"))
    assert warm.status_code == 200, warm.text
    bomb = docx_bomb(50_000_000)  # ≈ 180 KB inflating to 50 MB: 100 s of CPU and 1 GB of RSS before
    before = rss_mb()
    r, seconds = post(gateway, key, bomb)
    assert r.status_code == 413, r.text
    assert r.json() == {
        "error": "payload-too-large",
        "code": "PAYLOAD_TOO_LARGE",
        "message": "The DOCX part word/document.xml is 50 MB; the limit is 10 MB",
        "details": {"field": "file"},
        "docs_url": DOCS_URL,
    }
    assert seconds < 3 and rss_mb() - before < 100
    [row] = [r for r in gateway.usage_rows(expect=2) if r.status != 200]
    assert (row.status, row.error_code, row.cost) == (413, "PAYLOAD_TOO_LARGE", 0)
    assert gateway.balance() == Decimal(10), "the reservation was released"


def test_a_pdf_whose_stream_inflates_past_the_cap_is_refused_with_422(gateway: Gateway) -> None:
    r, seconds = post(gateway, gateway.create_key(), pdf_stream_bomb(50_000_000))
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith("The PDF is past a decompression or parsing limit")
    assert r.json()["details"] == {"field": "file"} and seconds < 5


def test_a_slow_document_is_cut_at_the_configured_deadline(tmp_path: Path, sim: SimServer) -> None:
    documents = {"timeout": 1.0, "max_stream_bytes": 50_000_000}
    with Gateway(tmp_path, sim.base_url, sections={"classification": {"documents": documents}}) as gw:
        r, seconds = post(gw, gw.create_key(), pdf_stream_bomb(15_000_000))
    assert r.status_code == 422, r.text
    assert r.json()["message"] == "Reading the document took longer than the limit of 1 s"
    assert seconds < 6


def slow_document() -> bytes:
    """Within every default limit, but ≈ 0.5 s of pypdf's CPU to read (1 MB of text operators)."""
    return pdf_stream_bomb(1_000_000)


def documents_read(gateway: Gateway) -> int:
    return int(gateway.server.server.config.app.state.classification.documents.jobs)


def test_a_document_is_not_read_for_a_caller_without_a_key_or_without_credit(gateway: Gateway) -> None:
    document = slow_document()
    anonymous, anonymous_s = post(gateway, None, document)
    wrong, wrong_s = post(gateway, "tg-not-a-key", document)
    broke, broke_s = post(gateway, gateway.create_key(balance="0", account="broke"), document)
    assert anonymous.status_code == 401 and wrong.status_code == 401, wrong.text
    assert broke.status_code == 402, broke.text
    assert broke.json()["code"] == "INSUFFICIENT_BALANCE"
    assert documents_read(gateway) == 0, "refused without reading the document"
    assert max(anonymous_s, wrong_s, broke_s) < 1.0
    paid, _ = post(gateway, gateway.create_key(), document)
    assert paid.status_code == 200, paid.text
    assert documents_read(gateway) == 1


def test_the_llm_backend_reads_a_document_only_for_an_account_that_can_pay_for_its_text(
    tmp_path: Path, sim: SimServer
) -> None:
    with Gateway(tmp_path, sim.base_url, sections=llm_sections(sim)) as gw:
        # 200,000 characters at 0.000001 a token could cost 0.2: more than this account has.
        broke, broke_s = post(gw, gw.create_key(balance="0.01", account="broke"), slow_document())
        read_when_broke = documents_read(gw)
        paid, _ = post(gw, gw.create_key(balance="1"), slow_document())
        rows = gw.usage_rows(expect=2)
        read_when_paid = documents_read(gw)
    assert broke.status_code == 402, broke.text
    assert paid.status_code == 200, paid.text
    assert broke_s < 1.0 and (read_when_broke, read_when_paid) == (0, 2)  # text, then page images
    assert sorted((r.status, r.error_code) for r in rows) == [(200, None), (402, "INSUFFICIENT_BALANCE")]
