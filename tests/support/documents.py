"""Small PDF and DOCX documents built in memory, for the classification tests."""

from __future__ import annotations

import io

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def docx_bytes(
    *pages: str,
    heading: str | None = None,
    table: list[list[str]] | None = None,
    picture: bytes | None = None,
) -> bytes:
    """A DOCX with one paragraph per page, pages separated by page breaks.

    On the first page, optionally: a "Heading 1" paragraph before the text, a table after the heading, and a
    picture (image file bytes, two inches wide) inline at the end of the page's paragraph.
    """
    import docx
    from docx.enum.text import WD_BREAK
    from docx.shared import Inches

    document = docx.Document()
    if heading is not None:
        document.add_heading(heading, level=1)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, cells in zip(grid.rows, table, strict=True):
            for cell, text in zip(row.cells, cells, strict=True):
                cell.text = text
    for i, text in enumerate(pages):
        paragraph = document.add_paragraph(text)
        if i == 0 and picture is not None:
            paragraph.add_run().add_picture(io.BytesIO(picture), width=Inches(2))
        if i < len(pages) - 1:
            paragraph.add_run().add_break(WD_BREAK.PAGE)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pdf_bytes(*pages: str, password: str | None = None) -> bytes:
    """A PDF with one line of Helvetica text per page (an empty string makes a blank page)."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    font_ref = writer._add_object(font)
    for text in pages:
        page = writer.add_blank_page(width=300, height=200)
        if text:
            escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            stream = DecodedStreamObject()
            stream.set_data(f"BT /F1 10 Tf 10 150 Td ({escaped}) Tj ET".encode("latin-1"))
            page[NameObject("/Contents")] = writer._add_object(stream)
            page[NameObject("/Resources")] = DictionaryObject(
                {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})}
            )
    if password:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


_PARAGRAPH = b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>"


def docx_bomb(inflated: int, *, declared: int | None = None) -> bytes:
    """A DOCX whose ``word/document.xml`` inflates to about ``inflated`` bytes of paragraphs (deflate packs
    that repetition about a thousand to one). ``declared`` writes a different uncompressed size into the
    zip's headers, as a forged archive would."""
    import zipfile

    base = zipfile.ZipFile(io.BytesIO(docx_bytes("x")))
    head, _, tail = base.read("word/document.xml").partition(b"<w:body>")
    count = max(1, inflated // len(_PARAGRAPH))
    xml = (
        head
        + b"<w:body>"
        + _PARAGRAPH * count
        + tail.partition(b"</w:body>")[1]
        + tail.partition(b"</w:body>")[2]
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in base.infolist():
            if info.filename != "word/document.xml":
                z.writestr(info.filename, base.read(info.filename))
        z.writestr("word/document.xml", xml)
    data = out.getvalue()
    if declared is None:
        return data
    # Rewrite the size fields of document.xml's local header and central directory entry.
    real = len(xml).to_bytes(4, "little")
    forged = declared.to_bytes(4, "little")
    name = b"word/document.xml"
    patched = bytearray(data)
    for magic, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (at := patched.find(magic, start)) >= 0:
            start = at + 4
            name_at = at + (30 if magic == b"PK\x03\x04" else 46)
            if (
                patched[name_at : name_at + len(name)] == name
                and patched[at + offset : at + offset + 4] == real
            ):
                patched[at + offset : at + offset + 4] = forged
    return bytes(patched)


def pdf_many_pages(count: int) -> bytes:
    """A PDF of ``count`` pages that are all one blank page object (6 bytes a page, however many)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join([b"3 0 R"] * count) + b"] /Count %d >>" % count,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] >>",
    ]
    return _pdf(objects)


def pdf_stream_bomb(inflated: int) -> bytes:
    """A one-page PDF whose content stream inflates (FlateDecode) to ``inflated`` bytes of text operators."""
    import zlib

    chunk = b"BT /F1 10 Tf 10 150 Td (bomb) Tj ET\n"
    raw = zlib.compressobj(9)
    packed = b"".join(raw.compress(chunk * 10_000) for _ in range(max(1, inflated // (len(chunk) * 10_000))))
    packed += raw.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return _pdf(objects)


def _pdf(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
