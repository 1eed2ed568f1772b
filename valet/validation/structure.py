"""Structure, not just a prefix: an image must parse as its format, a PDF must parse and carry no active
content. Both read through a budgeted :class:`~valet.validation.blobio.RangeReader` that serves the head
already read from memory, so a typical image costs no request beyond the head.

**Images** (`Pillow <https://pypi.org/project/pillow/>`_): ``Image.open`` restricted to the declared
format parses the header only (PNG: signature and chunks up to the first IDAT; JPEG: markers up to the
frame header; GIF: header and blocks up to the first image descriptor); no pixel is decoded. Width,
height and pixel count must be within :class:`ImageLimits` (a decompression bomb is a small file that
declares a huge canvas). WebP is checked from its RIFF header and first chunk here, because Pillow's WebP
plugin reads the whole file into memory to open it. HEIC/HEIF/AVIF photos and MP4/QuickTime videos are
checked from their boxes by :mod:`valet.validation.media`, office documents from their package by
:mod:`valet.validation.office`.

**PDFs** (`pypdf <https://pypi.org/project/pypdf/>`_): parsed through the cross-reference data; names are
compared after pypdf decodes ``#xx`` escapes, and objects held in object streams are decompressed by
pypdf and inspected like the others. A PDF that fits the read budget is read once (in 1 MiB ranges) and
has *every* object inspected; a larger one is read in 1 KiB ranges (pypdf visits about one range per
object when it opens the file) and has everything reachable from the trailer inspected except page
contents and resources (which cannot hold actions), so its image and content streams are never read;
that walk may fetch up to 4x the budget, in 1 KiB requests. Either way, reading more than allowed
fails closed (``pdf_unverifiable``).
"""

from __future__ import annotations

import logging
import struct
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

from valet.validation import media, office
from valet.validation.blobio import MAX_FETCH, RangeReader, RangeSource, ReadBudgetExceeded, read_range
from valet.validation.bmff import HeadAndTail, Ranges
from valet.validation.reasons import Reason, Rejection

IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
PDF = "application/pdf"
DEFAULT_READ_BUDGET = 8 * 1024 * 1024
PDF_READ_AHEAD = 1024  # pypdf (non-strict) checks every object header when it opens a file
WALK_BUDGET_FACTOR = 4

# Keys that make a PDF act on its own (scripts, launches, automatic actions, embedded files), and action
# types (/S) that do the same from an /OpenAction, link or outline item.
PDF_ACTIVE_KEYS = frozenset({"/JS", "/JavaScript", "/AA", "/Launch", "/EmbeddedFile", "/EmbeddedFiles",
                             "/RichMedia", "/XFA"})
PDF_ACTIVE_ACTIONS = frozenset({"/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/GoToE",
                                "/RichMediaExecute", "/Rendition", "/Sound", "/Movie"})
_PDF_SKIP = frozenset({"/Contents", "/Resources", "/Thumb", "/Metadata", "/Parent", "/P"})
_MAX_DEPTH = 64

for _name in ("pypdf", "PIL"):  # their parse warnings are about the attacker's file, not about valet
    logging.getLogger(_name).setLevel(logging.ERROR)


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 64_000_000
    max_dimension: int = 16_384


@dataclass(frozen=True)
class StructureReport:
    """What the check learnt and what it cost beyond the head."""

    detail: str
    bytes_read: int
    requests: int


def needs_check(mime: str) -> bool:
    return mime in IMAGE_FORMATS or mime == PDF or mime in media.BMFF_TYPES or mime in office.OFFICE_TYPES


def check_structure(source: RangeSource, size: int, head: bytes, mime: str, limits: ImageLimits,
                    budget: int = DEFAULT_READ_BUDGET, *, ranges: Ranges | None = None,
                    allow_macros: bool = False) -> StructureReport:
    """Parse the upload as ``mime``; ``head`` is the start of the blob, already read. ``ranges`` serves
    the ISO base media checks (photos, videos); by default the head, then ranged reads of ``source``.
    ``allow_macros``: an office document may carry macros (a profile's choice)."""
    if mime in office.OFFICE_TYPES:
        reader = RangeReader(source, size, budget=budget, head=head)
        detail = office.check_office(reader.as_file(), mime, allow_macros=allow_macros)
        return StructureReport(detail, reader.bytes_fetched, reader.requests)
    if mime in media.BMFF_TYPES:
        reads = ranges or HeadAndTail(source, size, head)
        if mime in media.HEIF_TYPES:
            detail = media.check_heif(reads, size, mime, limits, budget)
        else:
            detail = media.check_video(reads, size, mime)
        return StructureReport(detail, getattr(reads, "bytes_read", 0), getattr(reads, "requests", 0))
    if mime in IMAGE_FORMATS:
        reader = RangeReader(source, size, budget=budget, head=head)
        detail = check_image(reader, mime, limits)
    elif mime == PDF and size <= budget:  # small enough to hold: read it once, in 1 MiB ranges
        rest = [read_range(source, at, min(MAX_FETCH, size - at)) for at in range(len(head), size, MAX_FETCH)]
        reader = RangeReader(source, size, budget=0, head=head + b"".join(rest))
        detail = check_pdf(reader, size, whole=True)
        return StructureReport(detail, size - len(head), len(rest))
    elif mime == PDF:  # objects are small and scattered: small ranges, only what the walk needs; memory holds
        # two 1 KiB blocks and pypdf's parsed objects, so this budget bounds requests, not memory
        reader = RangeReader(source, size, budget=budget * WALK_BUDGET_FACTOR, read_ahead=PDF_READ_AHEAD, head=head)
        detail = check_pdf(reader, size, whole=False)
    else:
        return StructureReport("", 0, 0)
    return StructureReport(detail, reader.bytes_fetched, reader.requests)


# -- images ------------------------------------------------------------------------------------------------

def check_image(file: RangeReader, mime: str, limits: ImageLimits) -> str:
    expected = IMAGE_FORMATS[mime]
    try:
        if expected == "WEBP":
            width, height = _webp_size(file)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limits apply below
                with Image.open(file.as_file(), formats=[expected]) as image:
                    width, height = image.size
                    if image.format != expected:
                        raise Rejection(Reason.IMAGE_INVALID, f"parses as {image.format}, not {expected}")
    except Image.DecompressionBombError as exc:
        raise Rejection(Reason.IMAGE_LIMITS, "pixel count beyond Pillow's hard limit") from exc
    except ReadBudgetExceeded as exc:
        raise Rejection(Reason.IMAGE_INVALID, "image header larger than the read budget") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error,
            IndexError, KeyError, TypeError) as exc:
        raise Rejection(Reason.IMAGE_INVALID, f"not a valid {expected} image ({type(exc).__name__})") from exc
    if file.exceeded:
        raise Rejection(Reason.IMAGE_INVALID, "image header larger than the read budget")
    if width < 1 or height < 1 or max(width, height) > limits.max_dimension:
        raise Rejection(Reason.IMAGE_LIMITS, f"{width}x{height}; limit {limits.max_dimension} per side")
    if width * height > limits.max_pixels:
        raise Rejection(Reason.IMAGE_LIMITS, f"{width}x{height} pixels; limit {limits.max_pixels}")
    return f"{expected} {width}x{height}"


def _webp_size(file: RangeReader) -> tuple[int, int]:
    """Canvas size from a WebP's RIFF header and first chunk (VP8, VP8L or VP8X), per the WebP container
    specification; anything else is not a WebP image."""
    file.seek(0)
    head = file.read(30)
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise ValueError("no RIFF/WEBP header")
    kind = head[12:16]
    if kind == b"VP8X":
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
    elif kind == b"VP8L":
        if head[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        bits = int.from_bytes(head[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif kind == b"VP8 ":
        if head[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        width = int.from_bytes(head[26:28], "little") & 0x3FFF
        height = int.from_bytes(head[28:30], "little") & 0x3FFF
    else:
        raise ValueError("unknown WebP chunk")
    return width, height


# -- PDFs --------------------------------------------------------------------------------------------------

def check_pdf(file: RangeReader, size: int, *, whole: bool) -> str:
    """``whole``: inspect every object (the file is in memory); otherwise what the trailer reaches."""
    try:
        reader = PdfReader(file.as_file(), strict=False)
        count = _scan_all(reader) if whole else _scan_reachable(reader)
    except Rejection:
        raise
    except ReadBudgetExceeded as exc:
        raise Rejection(Reason.PDF_UNVERIFIABLE, "PDF structure larger than the read budget") from exc
    except RecursionError as exc:
        raise Rejection(Reason.PDF_UNVERIFIABLE, "PDF objects nested too deeply") from exc
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, EOFError,
            struct.error, AssertionError, UnicodeError, ZeroDivisionError) as exc:
        raise Rejection(Reason.PDF_INVALID, f"not a readable PDF ({type(exc).__name__})") from exc
    if file.exceeded:  # pypdf recovers from some read errors by itself: whatever it saw, we did not see all
        raise Rejection(Reason.PDF_UNVERIFIABLE, "PDF structure larger than the read budget")
    return f"PDF, {count} objects inspected"


def _scan_all(reader: PdfReader) -> int:
    """Every object the cross-reference data lists, including those inside object streams."""
    ids = {(idnum, gen) for gen, table in reader.xref.items() for idnum in table}
    ids |= {(idnum, 0) for idnum in reader.xref_objStm}
    _inspect(reader.trailer, 0)
    for idnum, gen in sorted(ids):
        obj = reader.get_object(IndirectObject(idnum, gen, reader))
        if obj is not None:
            _inspect(obj, 0)
    return len(ids)


def _scan_reachable(reader: PdfReader) -> int:
    seen: set[tuple[int, int]] = set()
    pending: list[Any] = [reader.trailer]
    while pending:
        obj = pending.pop()
        if isinstance(obj, IndirectObject):
            key = (obj.idnum, obj.generation)
            if key in seen:
                continue
            seen.add(key)
            obj = obj.get_object()
        pending.extend(_inspect(obj, 0, follow=True))
    return len(seen)


def _inspect(obj: Any, depth: int, *, follow: bool = False) -> list[IndirectObject]:
    """Raise on active content in ``obj`` (direct values included); return the references it holds."""
    if depth > _MAX_DEPTH:
        raise Rejection(Reason.PDF_UNVERIFIABLE, "PDF objects nested too deeply")
    refs: list[IndirectObject] = []
    if isinstance(obj, DictionaryObject):
        for key, value in dict.items(obj):
            name = str(key)
            if name in PDF_ACTIVE_KEYS:
                raise Rejection(Reason.ACTIVE_CONTENT, f"PDF with {name}")
            if name in ("/S", "/Type") and isinstance(value, NameObject):
                if (name == "/S" and str(value) in PDF_ACTIVE_ACTIONS) or str(value) == "/EmbeddedFile":
                    raise Rejection(Reason.ACTIVE_CONTENT, f"PDF with a {value} action")
            if follow and name in _PDF_SKIP:
                continue
            refs.extend(_children(value, depth, follow))
    elif isinstance(obj, ArrayObject):
        for value in list.__iter__(obj):
            refs.extend(_children(value, depth, follow))
    return refs


def _children(value: Any, depth: int, follow: bool) -> list[IndirectObject]:
    if isinstance(value, IndirectObject):
        return [value] if follow else []
    if isinstance(value, (DictionaryObject, ArrayObject)):
        return _inspect(value, depth + 1, follow=follow)
    return []
