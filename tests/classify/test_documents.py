"""tollgate/classify/documents.py: page text of PDF and DOCX, and the 422s for what cannot be read."""

from __future__ import annotations

import struct
import zlib

import pytest

from tests.support.documents import docx_bytes, pdf_bytes
from tollgate.classify.documents import MAX_PAGES, extract_pages, render_pdf
from tollgate.classify.request import UnprocessableError


def blank_pdf(pages: int, password: str | None = None) -> bytes:
    return pdf_bytes(*[""] * pages, password=password)


def refusal(data: bytes) -> str:
    with pytest.raises(UnprocessableError) as info:
        extract_pages(data)
    assert info.value.param == "file" and info.value.status == 422
    return info.value.message


def test_docx_pages_split_at_page_breaks() -> None:
    assert extract_pages(docx_bytes("first page", "second page")) == ["first page", "second page"]


def test_a_docx_over_the_page_limit_is_refused() -> None:
    pages = [f"page {i}" for i in range(MAX_PAGES + 1)]
    assert (
        refusal(docx_bytes(*pages))
        == f"The document has more than {MAX_PAGES} pages; the limit is {MAX_PAGES}"
    )


def test_a_pdf_without_text_is_refused() -> None:
    assert refusal(blank_pdf(2)) == "The document has no extractable text"


def test_a_pdf_over_the_page_limit_is_refused() -> None:
    assert refusal(blank_pdf(MAX_PAGES + 1)) == f"The PDF has {MAX_PAGES + 1} pages; the limit is {MAX_PAGES}"


def test_an_encrypted_pdf_is_refused() -> None:
    assert refusal(blank_pdf(1, password="secret")) == "The PDF is encrypted; send an unencrypted copy"


def test_corrupt_and_unknown_files_are_refused() -> None:
    assert refusal(b"%PDF-1.7 garbage") == "The file is not a readable PDF (it may be corrupt)"
    assert refusal(b"PK\x03\x04 not a zip").startswith("The file is not a readable DOCX document")
    assert refusal(b"hello") == "The file must be a PDF or a DOCX document"


def test_pdf_pages_give_their_text() -> None:
    assert extract_pages(pdf_bytes("Refund (twice) please", "", "page three")) == [
        "Refund (twice) please",
        "",
        "page three",
    ]


def test_pdf_pages_render_to_png_images() -> None:
    images = render_pdf(pdf_bytes("one", "two"), scale=1.0)
    assert len(images) == 2
    for image in images:
        assert image.startswith(b"\x89PNG\r\n\x1a\n")
        length, tag = struct.unpack(">I4s", image[8:16])
        width, height = struct.unpack(">II", image[16:24])
        assert (tag, length, width, height) == (b"IHDR", 13, 300, 200)
        idat = image.index(b"IDAT")
        (size,) = struct.unpack(">I", image[idat - 4 : idat])
        raw = zlib.decompress(image[idat + 4 : idat + 4 + size])
        assert len(raw) == height * (1 + width * 3), "one filter byte and RGB pixels per row"
