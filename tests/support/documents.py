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
