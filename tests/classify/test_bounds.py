"""tollgate/classify/bounds.py: DOCX and PDF bombs refused before the work, each naming the limit it hit."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from tests.support.documents import docx_bomb, docx_bytes, pdf_many_pages, pdf_stream_bomb
from tollgate.classify.bounds import TextBudget, check_docx, docx_text_bound, render_scale
from tollgate.classify.documents import extract_pages
from tollgate.errors import TollgateError
from tollgate.settings import DocumentLimits

LIMITS = DocumentLimits()


def refused(data: bytes, limits: DocumentLimits = LIMITS) -> tuple[int, str, float]:
    started = time.perf_counter()
    with pytest.raises(TollgateError) as info:
        extract_pages(data, limits)
    assert info.value.param == "file"
    return info.value.status, info.value.message, time.perf_counter() - started


def test_a_docx_whose_xml_inflates_past_its_limit_is_refused_from_the_zip_directory() -> None:
    bomb = docx_bomb(50_000_000)  # ≈ 180 KB; took 100 s of CPU and 1 GB before these checks
    assert len(bomb) < 250_000
    status, message, seconds = refused(bomb)
    assert (status, message) == (413, "The DOCX part word/document.xml is 50 MB; the limit is 10 MB")
    assert seconds < 0.5


def test_a_highly_compressed_docx_part_is_refused_by_its_ratio() -> None:
    status, message, seconds = refused(docx_bomb(5_000_000))
    assert status == 422 and seconds < 0.5
    assert message.startswith("The DOCX part word/document.xml inflates ") and message.endswith(
        "the limit is 100"
    )


def test_a_docx_that_declares_smaller_sizes_than_it_inflates_to_is_refused_as_corrupt() -> None:
    forged = docx_bomb(50_000_000, declared=4000)
    status, message, seconds = refused(forged)
    assert (status, message) == (422, "The file is not a readable DOCX document (it may be corrupt)")
    assert seconds < 0.5
    assert docx_text_bound(forged, LIMITS) == 4000  # python-docx never reads past the declared size


def test_the_archive_limit_counts_every_part() -> None:
    limits = DocumentLimits(max_uncompressed_bytes=1_000_000, max_compression_ratio=10_000)
    with pytest.raises(TollgateError) as info:
        check_docx(docx_bomb(1_500_000), limits)
    message = info.value.message
    assert info.value.status == 413
    assert message.startswith("The DOCX inflates to ") and message.endswith(" MB; the limit is 1 MB")
    check_docx(docx_bytes("fine"), limits)


def test_docx_part_and_picture_counts_are_limited() -> None:
    document = docx_bytes("hello")
    parts = len(zipfile.ZipFile(io.BytesIO(document)).infolist())
    status, message, _ = refused(document, DocumentLimits(max_parts=3))
    assert (status, message) == (422, f"The DOCX has {parts} parts; the limit is 3")
    status, message, _ = refused(docx_bytes("hi", picture=_png()), DocumentLimits(max_images=0))
    assert (status, message) == (422, "The DOCX has 1 pictures; the limit is 0")


def test_text_past_the_character_limit_is_refused() -> None:
    status, message, _ = refused(docx_bytes("x" * 600), DocumentLimits(max_text_chars=500))
    assert (status, message) == (413, "The document has more than 500 characters of text, the limit")
    budget = TextBudget(DocumentLimits(max_text_chars=5))
    assert budget.take("abc") == "abc"
    with pytest.raises(TollgateError):
        budget.take("def")


def test_a_pdf_declaring_many_pages_is_refused_before_its_page_tree_is_walked() -> None:
    status, message, seconds = refused(pdf_many_pages(50_000))
    assert (status, message) == (422, "The PDF has 50000 pages; the limit is 20")
    assert seconds < 1


def test_a_pdf_stream_past_the_decompression_cap_is_refused() -> None:
    status, message, seconds = refused(pdf_stream_bomb(50_000_000))
    assert status == 422 and message.startswith("The PDF is past a decompression or parsing limit")
    assert seconds < 1


def test_rendered_pages_are_scaled_down_to_the_pixel_limit() -> None:
    assert render_scale(300, 200, 1.25, LIMITS) == 1.25
    scale = render_scale(14_400, 14_400, 1.25, LIMITS)
    assert (14_400 * scale) ** 2 == pytest.approx(LIMITS.max_render_pixels)


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, format="PNG")
    return out.getvalue()
