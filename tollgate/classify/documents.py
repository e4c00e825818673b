"""Text of PDF and DOCX documents, page by page (pypdf, python-docx), and PDF pages as images (pypdfium2).

A document is refused with a 422 when it is corrupt, encrypted, has no extractable text, or has more than
``MAX_PAGES`` pages. DOCX has no fixed pages: explicit page breaks split it, and a document without any is one
page; DOCX is not rendered (that needs a layout engine), so vision models get its text only. PDF pages are
rendered at ``RENDER_SCALE`` × 72 dpi to PNG for vision-capable LLM backends. All of this is CPU work: callers
run it in a worker thread.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import Any

from tollgate.classify.request import UnprocessableError

MAX_PAGES = 20
RENDER_SCALE = 1.25
PDF_MAGIC = b"%PDF-"
ZIP_MAGIC = b"PK\x03\x04"


def _refuse(message: str) -> UnprocessableError:
    return UnprocessableError(message, param="file")


def pdf_pages(data: bytes) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise _refuse("The PDF is encrypted; send an unencrypted copy")
        count = len(reader.pages)
        if count > MAX_PAGES:
            raise _refuse(f"The PDF has {count} pages; the limit is {MAX_PAGES}")
        return [(page.extract_text() or "").strip() for page in reader.pages]
    except UnprocessableError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError):
        raise _refuse("The file is not a readable PDF (it may be corrupt)") from None


def docx_pages(data: bytes) -> list[str]:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise _refuse("The file is not a readable DOCX document (it may be corrupt)") from None
    except Exception as exc:  # python-docx raises its own errors for non-document packages
        raise _refuse(f"The file is not a readable DOCX document ({type(exc).__name__})") from None
    pages: list[list[str]] = [[]]
    for paragraph in document.paragraphs:
        if paragraph.text.strip():
            pages[-1].append(paragraph.text.strip())
        # A paragraph's text is counted on the page where it starts; a break in it starts the next page.
        if any(br.type == "page" for run in paragraph.runs for br in run._r.br_lst):
            pages.append([])
        if len(pages) > MAX_PAGES and any(pages[MAX_PAGES:]):
            raise _refuse(f"The document has more than {MAX_PAGES} pages; the limit is {MAX_PAGES}")
    return ["\n".join(p) for p in pages]


def extract_pages(data: bytes) -> list[str]:
    """The text of each page; raises the 422 for anything that cannot be classified."""
    if data.startswith(PDF_MAGIC):
        pages = pdf_pages(data)
    elif data.startswith(ZIP_MAGIC):
        pages = docx_pages(data)
    else:
        raise _refuse("The file must be a PDF or a DOCX document")
    if not any(pages):
        raise _refuse("The document has no extractable text")
    return pages


def png(pixels: Any) -> bytes:
    """A PNG of an ``(height, width, 3)`` RGB uint8 array (no imaging library needed)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def render_pdf(data: bytes, scale: float = RENDER_SCALE) -> list[bytes]:
    """Each page of a PDF (already accepted by ``extract_pages``) as a PNG."""
    import pypdfium2  # type: ignore[import-untyped]

    document = pypdfium2.PdfDocument(data)
    try:
        images = []
        for index in range(len(document)):
            page = document[index]
            bitmap = page.render(scale=scale, rev_byteorder=True)
            pixels = bitmap.to_numpy()
            images.append(png(pixels[:, :, :3]))
            bitmap.close()
            page.close()
        return images
    finally:
        document.close()
