"""Text of PDF and DOCX documents, page by page (pypdf, python-docx), and their pages as PNG images.

A document is refused with a 422 when it is corrupt, encrypted, has no extractable text, or is past one of
its ``DocumentLimits`` (pages, parts, sizes, text; checked before the work by ``bounds.py``, 413 for
sizes). DOCX has no fixed pages: explicit page breaks split it, and a document without any is one page.
For vision-capable LLM backends, PDF pages are rendered by pdfium at ``RENDER_SCALE`` × 72 dpi, and DOCX
pages are laid out here with Pillow (``render_docx``): A4 images with the paragraphs word-wrapped, headings
larger and bold, table rows in ruled cells and inline pictures where they stand in the text. That layout is
a plain approximation of Word's (no columns, floating shapes, headers or fonts of the document), enough for a
model to see the page's structure and pictures. All of this is CPU work: the gateway runs it in a worker
process with a deadline and a memory cap (``worker.py``).
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from tollgate.classify.bounds import (
    TextBudget,
    check_docx,
    check_pdf,
    pdf_configuration,
    refuse,
    render_scale,
)
from tollgate.errors import TollgateError
from tollgate.settings import DocumentLimits

DEFAULT_LIMITS = DocumentLimits()
MAX_PAGES = DEFAULT_LIMITS.max_pages
RENDER_SCALE = 1.25
PDF_MAGIC = b"%PDF-"
ZIP_MAGIC = b"PK\x03\x04"

if TYPE_CHECKING:
    from docx.document import Document
    from docx.table import Table
    from docx.text.paragraph import Paragraph


def pdf_pages(data: bytes, limits: DocumentLimits = DEFAULT_LIMITS) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    budget = TextBudget(limits)
    try:
        with pdf_configuration(limits):
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                raise refuse("The PDF is encrypted; send an unencrypted copy")
            check_pdf(reader, limits)
            count = len(reader.pages)
            if count > limits.max_pages:
                raise refuse(f"The PDF has {count} pages; the limit is {limits.max_pages}")
            return [budget.take((page.extract_text() or "").strip()) for page in reader.pages]
    except TollgateError:
        raise
    except LimitReachedError as exc:
        raise refuse(f"The PDF is past a decompression or parsing limit ({exc})") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError):
        raise refuse("The file is not a readable PDF (it may be corrupt)") from None


def _open_docx(data: bytes, limits: DocumentLimits) -> Document:
    import docx

    check_docx(data, limits)
    try:
        return docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise refuse("The file is not a readable DOCX document (it may be corrupt)") from None
    except MemoryError:
        raise
    except Exception as exc:  # python-docx raises its own errors for non-document packages
        if "NO_MEMORY" in str(getattr(exc, "error_log", "")):  # lxml's report of a failed allocation
            raise MemoryError from None
        raise refuse(f"The file is not a readable DOCX document ({type(exc).__name__})") from None


def docx_pages(data: bytes, limits: DocumentLimits = DEFAULT_LIMITS) -> list[str]:
    document = _open_docx(data, limits)
    budget = TextBudget(limits)
    most = limits.max_pages
    pages: list[list[str]] = [[]]
    for paragraph in document.paragraphs:
        if text := budget.take(paragraph.text.strip()):
            pages[-1].append(text)
        # A paragraph's text is counted on the page where it starts; a break in it starts the next page.
        if any(br.type == "page" for run in paragraph.runs for br in run._r.br_lst):
            pages.append([])
        if len(pages) > most and any(pages[most:]):
            raise refuse(f"The document has more than {most} pages; the limit is {most}")
    return ["\n".join(p) for p in pages]


def extract_pages(data: bytes, limits: DocumentLimits = DEFAULT_LIMITS) -> list[str]:
    """The text of each page; raises the 422 (or 413) for anything that cannot be classified."""
    if data.startswith(PDF_MAGIC):
        pages = pdf_pages(data, limits)
    elif data.startswith(ZIP_MAGIC):
        pages = docx_pages(data, limits)
    else:
        raise refuse("The file must be a PDF or a DOCX document")
    if not any(pages):
        raise refuse("The document has no extractable text")
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


def render_pdf(
    data: bytes, limits: DocumentLimits = DEFAULT_LIMITS, scale: float = RENDER_SCALE
) -> list[bytes]:
    """Each page of a PDF (already accepted by ``extract_pages``) as a PNG of at most ``max_render_pixels``."""
    import pypdfium2  # type: ignore[import-untyped]

    document = pypdfium2.PdfDocument(data)
    try:
        images = []
        for index in range(min(len(document), limits.max_pages)):
            page = document[index]
            width, height = page.get_size()
            bitmap = page.render(scale=render_scale(width, height, scale, limits), rev_byteorder=True)
            pixels = bitmap.to_numpy()
            images.append(png(pixels[:, :, :3]))
            bitmap.close()
            page.close()
        return images
    finally:
        document.close()


# DOCX pages are laid out here with Pillow: A4 at DOCX_DPI, so a page image is 827 × 1169 px (under half the
# pixels of 150 dpi, still legible for a vision model), with 0.75-inch margins and Pillow's bundled TrueType
# font (Aileron; glyphs outside Latin show as boxes). Font sizes are in points, as Word writes them. Pages
# without a picture are saved as greyscale PNGs (a full page of text is about 30 KB).
DOCX_DPI = 100
DOCX_PAGE = (827, 1169)
DOCX_MARGIN = 75
BODY_PT = 11
HEADING_PT = {"Title": 26, "Heading 1": 16, "Heading 2": 13}
OTHER_HEADING_PT = 12
LINE_SPACING = 1.3
MAX_PICTURE_PIXELS = 25_000_000  # larger pictures are drawn as placeholders rather than decoded
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_BLIP = "{http://schemas.openxmlformats.org/drawingml/2006/main}blip"
_EXTENT = "{http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing}extent"
_VML_IMAGE = "{urn:schemas-microsoft-com:vml}imagedata"
_EMU_PER_INCH = 914400


class _Full(Exception):
    """Raised by the layout when a further image would pass ``max_pages``."""


def _px(points: float) -> int:
    return round(points * DOCX_DPI / 72)


@functools.lru_cache(maxsize=16)
def _font(points: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=_px(points))


def _style_points(paragraph: Paragraph) -> tuple[int, bool]:
    """The font size for a paragraph's style, and whether it is a heading (drawn bold)."""
    name = (paragraph.style.name if paragraph.style is not None else None) or ""
    if name in HEADING_PT:
        return HEADING_PT[name], True
    if name.startswith(("Heading", "Title")):
        return OTHER_HEADING_PT, True
    return BODY_PT, False


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> Iterator[str]:
    """``text`` cut into lines no wider than ``width`` at spaces (inside a word only when it alone is wider).

    Lazy, so the layout stops measuring once ``MAX_PAGES`` images are full; a line's width is the sum of its
    words' and spaces' widths (each word measured once), which ignores kerning across spaces.
    """
    space = font.getlength(" ")
    for hard in text.replace("\t", "    ").split("\n"):
        line, used = "", 0.0
        for word in hard.split(" "):
            size = font.getlength(word)
            if line and used + space + size <= width:
                line, used = f"{line} {word}", used + space + size
                continue
            if line:
                yield line
            line, used = word, size
            if size > width:  # a word wider than the text is cut where it passes the width
                piece = ""
                for char in word:
                    if piece and font.getlength(piece + char) > width:
                        yield piece
                        piece = ""
                    piece += char
                line, used = piece, font.getlength(piece)
        yield line


class _Layout:
    """Draws blocks top to bottom on A4 page images, starting a new image when one is full."""

    def __init__(self, max_pages: int) -> None:
        self.max_pages = max_pages
        self.pages: list[Image.Image] = []
        self.coloured: set[int] = set()  # pages with a picture; the others are saved in greyscale
        self.left, self.top = DOCX_MARGIN, DOCX_MARGIN
        self.width = DOCX_PAGE[0] - 2 * DOCX_MARGIN
        self.bottom = DOCX_PAGE[1] - DOCX_MARGIN
        self.new_page()

    def new_page(self) -> None:
        if len(self.pages) >= self.max_pages:
            raise _Full
        self.pages.append(Image.new("RGB", DOCX_PAGE, "white"))
        self.draw = ImageDraw.Draw(self.pages[-1])
        self.y = self.top

    def room(self, height: int) -> None:
        """Make room for ``height`` pixels, on a new image unless this one is still empty."""
        if self.y + height > self.bottom and self.y > self.top:
            self.new_page()

    def text(self, text: str, points: int, bold: bool = False) -> None:
        font = _font(points)
        line_height = _px(points * LINE_SPACING)
        for line in _wrap(text, font, self.width):
            self.room(line_height)
            self.draw.text((self.left, self.y), line, fill="black", font=font)
            if bold:
                self.draw.text((self.left + 1, self.y), line, fill="black", font=font)
            self.y += line_height

    def picture(self, blob: bytes | None, size: tuple[int, int] | None) -> None:
        """A picture at its size in the document (or its pixel size), shrunk to the text width and page."""
        image: Image.Image | None = None
        try:
            image = Image.open(io.BytesIO(blob or b""))
            if image.width * image.height > MAX_PICTURE_PIXELS:
                image = None
        except Exception:  # formats Pillow cannot read (EMF, SVG, ...) become a grey placeholder
            image = None
        width, height = size or (image.size if image is not None else (self.width, self.width // 2))
        shrink = min(1.0, self.width / max(width, 1), (self.bottom - self.top) / max(height, 1))
        width, height = max(1, round(width * shrink)), max(1, round(height * shrink))
        self.room(height)
        try:
            if image is None:
                raise OSError("no picture")
            image.draft("RGB", (width, height))  # JPEG decodes at a reduced scale when it can
            rgba = image.convert("RGBA").resize((width, height), Image.Resampling.LANCZOS)
        except Exception:  # a picture whose data is truncated or corrupt
            box = (self.left, self.y, self.left + width - 1, self.y + height - 1)
            self.draw.rectangle(box, fill=(235, 235, 235), outline=(160, 160, 160))
        else:
            self.pages[-1].paste(rgba, (self.left, self.y), rgba)
            self.coloured.add(len(self.pages) - 1)
        self.y += height

    def row(self, cells: list[tuple[str, int]], points: int) -> None:
        """One table row: each cell's text wrapped in its share of the width (``span`` grid columns)."""
        font = _font(points)
        line_height = _px(points * LINE_SPACING)
        pad = 4
        columns = sum(span for _, span in cells)
        edges = [self.left]
        for _, span in cells:
            edges.append(edges[-1] + round(self.width * span / columns))
        edges[-1] = self.left + self.width
        wrapped = [
            list(_wrap(text, font, right - left - 2 * pad))
            for (text, _), left, right in zip(cells, edges, edges[1:], strict=False)
        ]
        grey = (150, 150, 150)
        self.room(line_height + 2 * pad)
        self.draw.line((edges[0], self.y, edges[-1], self.y), fill=grey)
        self.y += pad
        for index in range(max(len(lines) for lines in wrapped)):
            if self.y + line_height > self.bottom:
                self.new_page()
                self.draw.line((edges[0], self.y, edges[-1], self.y), fill=grey)
            for lines, left in zip(wrapped, edges, strict=False):
                if index < len(lines):
                    self.draw.text((left + pad, self.y), lines[index], fill="black", font=font)
            for x in edges:
                self.draw.line((x, self.y - pad, x, self.y + line_height + pad), fill=grey)
            self.y += line_height
        self.y += pad
        self.draw.line((edges[0], self.y, edges[-1], self.y), fill=grey)


def _pictures(element: Any, part: Any) -> list[tuple[bytes | None, tuple[int, int] | None]]:
    """The pictures in a run's drawing (DrawingML) or VML shape: image bytes and size in pixels."""
    size = None
    for extent in element.iter(_EXTENT):
        cx, cy = int(extent.get("cx", "0")), int(extent.get("cy", "0"))
        if cx > 0 and cy > 0:
            size = (round(cx * DOCX_DPI / _EMU_PER_INCH), round(cy * DOCX_DPI / _EMU_PER_INCH))
    found: list[tuple[bytes | None, tuple[int, int] | None]] = []
    for blip in [*element.iter(_BLIP), *element.iter(_VML_IMAGE)]:
        rid = blip.get(f"{_R}embed") or blip.get(f"{_R}id")
        related = part.related_parts.get(rid) if rid else None
        found.append((getattr(related, "blob", None), size))
    return found


def _paragraph(layout: _Layout, paragraph: Paragraph) -> None:
    """A paragraph's text and inline pictures, in the order they come."""
    from docx.text.hyperlink import Hyperlink

    points, bold = _style_points(paragraph)
    text: list[str] = []
    runs = [
        run
        for item in paragraph.iter_inner_content()
        for run in (item.runs if isinstance(item, Hyperlink) else [item])
    ]
    drew = False
    for run in runs:
        for child in run._r:
            if child.tag == f"{_W}t":
                text.append(child.text or "")
            elif child.tag == f"{_W}tab":
                text.append("\t")
            elif child.tag in (f"{_W}br", f"{_W}cr") and child.get(f"{_W}type") in (None, "textWrapping"):
                text.append("\n")
            elif child.tag in (f"{_W}drawing", f"{_W}pict"):
                for blob, size in _pictures(child, paragraph.part):
                    if "".join(text).strip():
                        layout.text("".join(text).strip("\n"), points, bold)
                    text, drew = [], True
                    layout.picture(blob, size)
    if "".join(text).strip() or not drew:
        layout.text("".join(text).strip("\n"), points, bold)
    layout.y += _px(points / 2)


def _table(layout: _Layout, table: Table) -> None:
    for row in table.rows:
        cells: list[tuple[str, int]] = []
        previous = None
        for cell in row.cells:  # a cell merged across grid columns comes once per column
            if cell._tc is previous:
                cells[-1] = (cells[-1][0], cells[-1][1] + 1)
            else:
                cells.append((cell.text.strip(), 1))
            previous = cell._tc
        if cells:
            layout.row(cells, BODY_PT)
    layout.y += _px(BODY_PT / 2)


def render_docx(data: bytes, limits: DocumentLimits = DEFAULT_LIMITS) -> list[bytes]:
    """Each page of a DOCX as a PNG: text, headings, tables and inline pictures in document order.

    Pages are the ones ``docx_pages`` counts (explicit page breaks, a paragraph staying on the page where it
    starts); a page whose content is longer than one image continues on the next, and there are never more
    than ``max_pages`` images.
    """
    from docx.table import Table

    document = _open_docx(data, limits)
    layout = _Layout(limits.max_pages)
    try:
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                _table(layout, block)
                continue
            _paragraph(layout, block)
            if any(br.type == "page" for run in block.runs for br in run._r.br_lst):
                layout.new_page()
    except _Full:
        pass
    images = []
    for index, page in enumerate(layout.pages):
        out = io.BytesIO()
        (page if index in layout.coloured else page.convert("L")).save(out, format="PNG")
        images.append(out.getvalue())
    return images
