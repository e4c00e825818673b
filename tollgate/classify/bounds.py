"""Limits on a document, checked before each step of reading it (``DocumentLimits`` in settings).

A DOCX is a zip archive: before python-docx sees it, ``check_docx`` reads the archive's directory (its count of
parts, their declared sizes and compression ratios, the pictures) and then inflates every part as a stream,
counting the bytes that really come out, since declared sizes can lie; python-docx then reads the same
parts, which zipfile never inflates past their declared sizes. A PDF's object count and declared page count
are checked when pypdf has read its cross-reference table, before any page is walked, and pypdf's own
decompression limits are set to ``max_stream_bytes`` while it reads (``pdf_configuration``). Extracted
text is counted as it comes (``TextBudget``), and rendered pages are scaled down to ``max_render_pixels``.

Sizes past a limit are 413s, everything else 422s, always on the ``file`` field and naming the limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import zipfile
import zlib
from contextlib import AbstractContextManager
from typing import Any, cast

from tollgate.classify.request import UnprocessableError
from tollgate.errors import PayloadTooLargeError, TollgateError
from tollgate.settings import DocumentLimits

RATIO_FLOOR = 1_000_000  # parts smaller than this inflate to little whatever their ratio
_CHUNK = 65_536
_XML = (".xml", ".rels")


def refuse(message: str) -> UnprocessableError:
    return UnprocessableError(message, param="file")


def too_large(message: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(message, param="file")


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.3g} MB"


def open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise refuse("The file is not a readable DOCX document (it may be corrupt)") from None


def check_docx(data: bytes, limits: DocumentLimits) -> None:
    """Refuse a DOCX archive past a limit, from its directory first, then by inflating its parts."""
    archive = open_zip(data)
    parts = archive.infolist()
    if len(parts) > limits.max_parts:
        raise refuse(f"The DOCX has {len(parts)} parts; the limit is {limits.max_parts}")
    pictures = sum(1 for p in parts if p.filename.startswith("word/media/"))
    if pictures > limits.max_images:
        raise refuse(f"The DOCX has {pictures} pictures; the limit is {limits.max_images}")
    for part in parts:
        _check_part(part, limits)
    declared = sum(p.file_size for p in parts)
    if declared > limits.max_uncompressed_bytes:
        raise too_large(
            f"The DOCX inflates to {_mb(declared)}; the limit is {_mb(limits.max_uncompressed_bytes)}"
        )
    total = 0
    for part in parts:
        total += _inflate(archive, part, limits, limits.max_uncompressed_bytes - total)


def _part_limit(part: zipfile.ZipInfo, limits: DocumentLimits) -> int | None:
    return limits.max_xml_bytes if part.filename.lower().endswith(_XML) else None


def _check_part(part: zipfile.ZipInfo, limits: DocumentLimits) -> None:
    xml_limit = _part_limit(part, limits)
    if xml_limit is not None and part.file_size > xml_limit:
        raise too_large(
            f"The DOCX part {part.filename} is {_mb(part.file_size)}; the limit is {_mb(xml_limit)}"
        )
    ratio = part.file_size / max(part.compress_size, 1)
    if part.file_size > RATIO_FLOOR and ratio > limits.max_compression_ratio:
        raise refuse(
            f"The DOCX part {part.filename} inflates {ratio:.0f} times its size; "
            f"the limit is {limits.max_compression_ratio:g}"
        )


def _inflate(archive: zipfile.ZipFile, part: zipfile.ZipInfo, limits: DocumentLimits, budget: int) -> int:
    """Inflate one part as a stream (never more than a chunk held), refusing it once past its limits."""
    xml_limit = _part_limit(part, limits)
    cap = budget if xml_limit is None else min(budget, xml_limit)
    size = 0
    try:
        with archive.open(part) as stream:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > cap:
                    what = (
                        f"part {part.filename}" if xml_limit is not None and cap == xml_limit else "archive"
                    )
                    raise too_large(f"The DOCX {what} inflates past {_mb(cap)}, its limit")
    except TollgateError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError, OSError):
        raise refuse("The file is not a readable DOCX document (it may be corrupt)") from None
    return size


def docx_text_bound(data: bytes, limits: DocumentLimits) -> int:
    """At most how many characters of text the DOCX can yield, from its directory alone (no inflating):
    its text is in ``word/document.xml``, which python-docx never reads past its declared size."""
    try:
        size = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml").file_size
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return 0  # refused when it is read
    return min(size, limits.max_text_chars)


def check_pdf(reader: Any, limits: DocumentLimits) -> None:
    """Refuse a PDF that declares more objects or pages than allowed, before its pages are walked."""
    objects = reader.trailer.get("/Size", 0)
    if isinstance(objects, int) and objects > limits.max_pdf_objects:
        raise refuse(f"The PDF declares {objects} objects; the limit is {limits.max_pdf_objects}")
    pages = reader.trailer["/Root"]["/Pages"].get("/Count", 0)
    if isinstance(pages, int) and pages > limits.max_pages:
        raise refuse(f"The PDF has {pages} pages; the limit is {limits.max_pages}")


def pdf_configuration(limits: DocumentLimits) -> AbstractContextManager[Any]:
    """pypdf's decompression limits set to ``max_stream_bytes`` for the ``with`` block (a context variable,
    so other threads are unaffected); pypdf releases without ``apply_configuration`` keep their defaults."""
    import pypdf

    apply = getattr(pypdf, "apply_configuration", None)
    if apply is None:
        return contextlib.nullcontext()
    known = {f.name for f in dataclasses.fields(pypdf.Configuration)}
    caps = {name: limits.max_stream_bytes for name in _PDF_CAPS if name in known}
    return cast(AbstractContextManager[Any], apply(**caps))


_PDF_CAPS = (
    "maximum_declared_stream_length",
    "array_based_stream_maximum_output_length",
    "jbig2_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "zlib_maximum_output_length",
    "brotli_maximum_output_length",
    "image_maximum_buffer_size",
    "xmp_maximum_input_length",
)


class TextBudget:
    """Counts the characters of text extracted so far; refuses the document once past ``max_text_chars``."""

    def __init__(self, limits: DocumentLimits) -> None:
        self.limit = limits.max_text_chars
        self.used = 0

    def take(self, text: str) -> str:
        self.used += len(text)
        if self.used > self.limit:
            raise too_large(f"The document has more than {self.limit} characters of text, the limit")
        return text


def render_scale(width: float, height: float, scale: float, limits: DocumentLimits) -> float:
    """``scale``, or less so that a page of ``width`` × ``height`` points has at most ``max_render_pixels``."""
    pixels = max(width, 1.0) * max(height, 1.0) * scale * scale
    if pixels <= limits.max_render_pixels:
        return scale
    return scale * math.sqrt(limits.max_render_pixels / pixels)
