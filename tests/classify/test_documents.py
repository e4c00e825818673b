"""tollgate/classify/documents.py: page text of PDF and DOCX, and the 422s for what cannot be read."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.support.documents import docx_bytes, pdf_bytes
from tollgate.classify.documents import (
    DOCX_MARGIN,
    DOCX_PAGE,
    MAX_PAGES,
    extract_pages,
    render_docx,
    render_pdf,
)
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


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", DOCX_PAGE)
    assert image.mode in ("L", "RGB"), "greyscale unless the page has a picture"
    return np.asarray(image.convert("RGB")).astype(int)


def ink_rows(page: np.ndarray) -> list[tuple[int, int]]:
    """The bands of rows holding dark pixels, as (first, last) row pairs."""
    rows = np.flatnonzero((page.max(axis=2) < 128).any(axis=1))
    bands: list[tuple[int, int]] = []
    for row in rows:
        if bands and row == bands[-1][1] + 1:
            bands[-1] = (bands[-1][0], int(row))
        else:
            bands.append((int(row), int(row)))
    return bands


def test_docx_pages_render_to_a4_images_with_text_inside_the_margins() -> None:
    images = render_docx(docx_bytes("Invoice 1 for the refund", "Second page"))
    assert len(images) == 2
    width, height = DOCX_PAGE
    assert abs(height / width - 297 / 210) < 0.01, "A4 proportions"
    for page in map(pixels, images):
        dark = page.max(axis=2) < 128
        inside = dark[DOCX_MARGIN : height - DOCX_MARGIN, DOCX_MARGIN : width - DOCX_MARGIN]
        assert inside.sum() > 100, "the text is drawn"
        assert dark.sum() == inside.sum(), "nothing dark in the margins"
        assert (page == 255).all(axis=2).mean() > 0.98, "the page is otherwise white"


def test_a_docx_heading_is_drawn_larger_than_body_text() -> None:
    [image] = render_docx(docx_bytes("Hg", heading="Hg"))
    heading, body = ink_rows(pixels(image))
    assert heading[0] < body[0]
    assert heading[1] - heading[0] > 1.3 * (body[1] - body[0])


def test_a_docx_inline_picture_is_drawn_at_its_size_below_the_text() -> None:
    red = io.BytesIO()
    Image.new("RGB", (100, 50), (255, 0, 0)).save(red, format="PNG")
    [image] = render_docx(docx_bytes("A photo of the parcel", picture=red.getvalue()))
    assert Image.open(io.BytesIO(image)).mode == "RGB"
    page = pixels(image)
    ys, xs = np.nonzero((page[:, :, 0] > 200) & (page[:, :, 1] < 60) & (page[:, :, 2] < 60))
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (200, 100), "two inches wide at 100 dpi"
    assert xs.min() == DOCX_MARGIN
    text = ink_rows(page)[0]
    assert text[1] < ys.min(), "the picture follows the text of its paragraph"


def test_a_docx_table_puts_its_cells_side_by_side() -> None:
    [image] = render_docx(docx_bytes("", table=[["left", "right"]]))
    page = pixels(image)
    [band] = ink_rows(page)
    dark = page[band[0] : band[1] + 1].max(axis=2) < 128
    middle = DOCX_PAGE[0] // 2
    assert dark[:, DOCX_MARGIN:middle].any() and dark[:, middle : DOCX_PAGE[0] - DOCX_MARGIN].any()
    assert ((page == 150).all(axis=2)).any(), "the cells are ruled"


def test_a_docx_page_too_long_for_one_image_continues_on_the_next() -> None:
    words = " ".join(f"word{i}" for i in range(1000))
    images = render_docx(docx_bytes(words))
    assert len(images) == 2
    assert all(ink_rows(pixels(image)) for image in images)
    endless = " ".join(f"word{i}" for i in range(20000))
    assert len(render_docx(docx_bytes(endless))) == MAX_PAGES


def test_a_corrupt_docx_is_refused_before_rendering() -> None:
    with pytest.raises(UnprocessableError) as info:
        render_docx(b"PK\x03\x04 not a zip")
    assert info.value.status == 422 and info.value.param == "file"
