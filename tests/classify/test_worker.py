"""tollgate/classify/worker.py: document work in a child process, cut at its deadline and memory cap."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest

from tests.support.documents import docx_bomb, docx_bytes, pdf_bytes, pdf_stream_bomb
from tollgate.classify.worker import DocumentWorker
from tollgate.errors import TollgateError
from tollgate.settings import DocumentLimits


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def refusal(worker: DocumentWorker, data: bytes) -> tuple[int, str, float]:
    started = time.monotonic()
    with pytest.raises(TollgateError) as info:
        await worker.pages(data)
    return info.value.status, info.value.message, time.monotonic() - started


def test_pages_and_renders_come_back_from_the_worker() -> None:
    async def go() -> tuple[list[str], list[str], list[bytes]]:
        worker = DocumentWorker(DocumentLimits())
        return (
            await worker.pages(docx_bytes("one", "two")),
            await worker.pages(pdf_bytes("hello")),
            await worker.render(pdf_bytes("a", "b")),
        )

    docx_pages, pdf_pages, images = asyncio.run(go())
    assert docx_pages == ["one", "two"] and pdf_pages == ["hello"]
    assert len(images) == 2 and all(i.startswith(b"\x89PNG") for i in images)


def test_a_document_that_takes_too_long_is_cut_at_the_deadline() -> None:
    # 15 MB of text operators: within these stream limits, pypdf needs ≈ 8 s of CPU for it.
    slow = pdf_stream_bomb(15_000_000)
    worker = DocumentWorker(DocumentLimits(timeout=1.0, max_stream_bytes=50_000_000))
    before = rss_mb()
    status, message, seconds = asyncio.run(refusal(worker, slow))
    assert (status, message) == (422, "Reading the document took longer than the limit of 1 s")
    assert seconds < 4  # the deadline plus the worker process's start
    assert rss_mb() - before < 50  # the work happened elsewhere


def test_a_document_that_needs_too_much_memory_is_refused() -> None:
    # 45 MB of XML past every size check (limits raised): lxml needs far more than 256 MB to build its tree.
    limits = DocumentLimits(
        max_memory_mb=256,
        max_xml_bytes=60_000_000,
        max_uncompressed_bytes=60_000_000,
        max_compression_ratio=1e6,
    )
    before = rss_mb()
    status, message, seconds = asyncio.run(refusal(DocumentWorker(limits), docx_bomb(45_000_000)))
    assert (status, message) == (422, "Reading the document needs more than the limit of 256 MB of memory")
    assert seconds < 10
    assert rss_mb() - before < 50


def test_a_cancelled_request_stops_its_document_work() -> None:
    worker = DocumentWorker(DocumentLimits(timeout=30.0, max_stream_bytes=50_000_000))
    cpu = resource.getrusage(resource.RUSAGE_SELF)

    async def go() -> float:
        task = asyncio.ensure_future(worker.pages(pdf_stream_bomb(15_000_000)))
        await asyncio.sleep(1.0)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The worker slot is free at once: the next document is read without waiting for the first.
        assert await worker.pages(pdf_bytes("next")) == ["next"]
        return time.monotonic() - started

    assert asyncio.run(go()) < 3
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert after.ru_utime - cpu.ru_utime < 3
