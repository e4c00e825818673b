"""tollgate/classify/documents.py: page text of PDF and DOCX, and the 422s for what cannot be read."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfWriter

from tests.api.test_classify import docx_bytes
from tollgate.classify.documents import MAX_PAGES, extract_pages
from tollgate.classify.request import UnprocessableError


def blank_pdf(pages: int, password: str | None = None) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    if password:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def refusal(data: bytes) -> str:
    with pytest.raises(UnprocessableError) as info:
        extract_pages(data)
    assert info.value.param == "file" and info.value.status == 422
    return info.value.message


def test_docx_pages_split_at_page_breaks() -> None:
    assert extract_pages(docx_bytes("first page", "second page")) == ["first page", "second page"]


def test_a_docx_over_the_page_limit_is_refused() -> None:
    pages = [f"page {i}" for i in range(MAX_PAGES + 1)]
    assert refusal(docx_bytes(*pages)) == f"The document has more than {MAX_PAGES} pages; the limit is {MAX_PAGES}"


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
