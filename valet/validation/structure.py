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
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

from valet.grants.policy import PDF_OUTBOUND_ACTIONS
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
PDF_ACTIVE_ACTIONS = frozenset({"/JavaScript", "/Launch", "/RichMediaExecute", "/Rendition", "/Sound", "/Movie"})
# Actions that reach outside the document (a remote or embedded file, a URL, a form submission; /GoToR to a
# UNC path leaks Windows credentials) are active content unless the profile lists them in
# ``allowPdfActions`` (:data:`valet.grants.policy.PDF_OUTBOUND_ACTIONS`).
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
                    budget: int = DEFAULT_READ_BUDGET, pdf: PdfLimits | None = None, *, ranges: Ranges | None = None,
                    allow_macros: bool = False) -> StructureReport:
    """Parse the upload as ``mime``; ``head`` is the start of the blob, already read. ``pdf``: the work
    bounds and allowed outbound actions of a PDF check (defaults: :class:`PdfLimits`). ``ranges`` serves
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
        detail = check_pdf(reader, size, whole=True, limits=pdf)
        return StructureReport(detail, size - len(head), len(rest))
    elif mime == PDF:  # objects are small and scattered: small ranges, only what the walk needs; memory holds
        # two 1 KiB blocks and pypdf's parsed objects, so this budget bounds requests, not memory
        reader = RangeReader(source, size, budget=budget * WALK_BUDGET_FACTOR, read_ahead=PDF_READ_AHEAD, head=head)
        detail = check_pdf(reader, size, whole=False, limits=pdf)
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

@dataclass(frozen=True)
class PdfLimits:
    """Work bounds for one PDF's structure check, beside the read budget: a few KiB can list 50,000
    objects that all point at one large array (pypdf then parses that array 50,000 times), so bytes alone
    bound nothing. Over any bound the answer is ``pdf_unverifiable``. ``allowed_actions``: outbound action
    types (:data:`PDF_OUTBOUND_ACTIONS`) a profile accepts (``allowPdfActions``)."""

    max_objects: int = 100_000  # objects parsed (each resolution of a reference counts)
    max_elements: int = 1_000_000  # dictionary entries and array items inspected (bounds pypdf's memory too)
    seconds: float = 5.0  # wall-clock time of the walk, checked at every object and container
    allowed_actions: frozenset[str] = frozenset()


class _Walk:
    """One PDF's inspection, counting its work against :class:`PdfLimits`."""

    def __init__(self, limits: PdfLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits, self._clock = limits, clock
        self._deadline = clock() + limits.seconds
        self._blocked = PDF_ACTIVE_ACTIONS | (PDF_OUTBOUND_ACTIONS - limits.allowed_actions)
        self.objects = self.elements = self.headers = 0
        self.max_objects = limits.max_objects

    def header(self) -> None:
        """One object header read by pypdf (opening the file, resolving a reference): at most three per
        object allowed, and the clock."""
        self.headers += 1
        if self.headers > 3 * self._limits.max_objects:
            raise Rejection(Reason.PDF_UNVERIFIABLE, f"PDF structure beyond the work bound ({self.headers} "
                                                     "object headers)")
        self.visit()

    def visit(self, objects: int = 0, elements: int = 0) -> None:
        self.objects += objects
        self.elements += elements
        if self.objects > self._limits.max_objects or self.elements > self._limits.max_elements:
            raise Rejection(Reason.PDF_UNVERIFIABLE, f"PDF structure beyond the work bound ({self.objects} "
                                                     f"objects, {self.elements} entries)")
        if self._clock() > self._deadline:
            raise Rejection(Reason.PDF_UNVERIFIABLE, f"PDF structure not checked within {self._limits.seconds:g} s")

    def inspect(self, obj: Any, depth: int, *, follow: bool = False) -> list[IndirectObject]:
        """Raise on active content in ``obj`` (direct values included); return the references it holds."""
        if depth > _MAX_DEPTH:
            raise Rejection(Reason.PDF_UNVERIFIABLE, "PDF objects nested too deeply")
        refs: list[IndirectObject] = []
        if isinstance(obj, DictionaryObject):
            self.visit(elements=len(obj))
            self._check_action(obj)
            for key, value in dict.items(obj):
                name = str(key)
                if name in PDF_ACTIVE_KEYS:
                    raise Rejection(Reason.ACTIVE_CONTENT, f"PDF with {name}")
                if name == "/OpenAction":
                    self._check_open_action(value)
                if name == "/Type" and isinstance(value, NameObject) and str(value) == "/EmbeddedFile":
                    raise Rejection(Reason.ACTIVE_CONTENT, f"PDF with a {value}")
                if follow and name in _PDF_SKIP:
                    continue
                refs.extend(self._children(value, depth, follow))
        elif isinstance(obj, ArrayObject):
            self.visit(elements=len(obj))
            for value in list.__iter__(obj):
                refs.extend(self._children(value, depth, follow))
        return refs

    def _action_type(self, obj: DictionaryObject) -> str | None:
        """The action type ``/S`` in any spelling: a name (``#xx`` escapes decoded by pypdf), a string, or
        a reference to either; a ``/Thread`` that names no file (``/F``) is one in this document (``None``)."""
        value = dict.get(obj, "/S")
        if isinstance(value, IndirectObject):
            self.visit(objects=1)
            value = value.get_object()
        if not isinstance(value, str):  # NameObject and the string objects are str subclasses
            return None
        action = "/" + str(value).lstrip("/")
        return None if action == "/Thread" and "/F" not in obj else action

    def _check_action(self, obj: DictionaryObject) -> None:
        action = self._action_type(obj)
        if action in self._blocked:
            raise Rejection(Reason.ACTIVE_CONTENT, f"PDF with a {action} action")

    def _check_open_action(self, value: Any, depth: int = 0) -> None:
        """What the document does when it is opened, with no one clicking (``/OpenAction`` and the ``/Next``
        actions it chains): no action that reaches outside the document, whatever the profile accepts in
        links (``allowPdfActions`` is for links a person follows)."""
        if depth > _MAX_DEPTH:
            raise Rejection(Reason.PDF_UNVERIFIABLE, "PDF actions chained too deeply")
        if isinstance(value, IndirectObject):
            self.visit(objects=1)
            value = value.get_object()
        if isinstance(value, ArrayObject):  # a destination (a page and a view), or a /Next list of actions
            for item in list.__iter__(value):
                if isinstance(item, (DictionaryObject, IndirectObject)):
                    self._check_open_action(item, depth + 1)
            return
        if not isinstance(value, DictionaryObject) or dict.get(value, "/Type") == "/Page":
            return
        action = self._action_type(value)
        if action in PDF_OUTBOUND_ACTIONS:
            raise Rejection(Reason.ACTIVE_CONTENT, f"PDF that runs a {action} action when it is opened")
        if "/Next" in value:
            self._check_open_action(dict.get(value, "/Next"), depth + 1)

    def _children(self, value: Any, depth: int, follow: bool) -> list[IndirectObject]:
        if isinstance(value, IndirectObject):
            return [value] if follow else []
        if isinstance(value, (DictionaryObject, ArrayObject)):
            return self.inspect(value, depth + 1, follow=follow)
        return []


class _BoundedReader(PdfReader):
    """pypdf's reader with every object header it reads counted against the walk's bounds: opening a
    file already reads one header per cross-reference entry (pypdf checks them when not strict), so a
    few KiB listing 500,000 entries is refused while it opens, not after."""

    def __init__(self, stream: Any, walk: _Walk) -> None:
        self._walk = walk
        super().__init__(stream, strict=False)

    def read_object_header(self, stream: Any) -> tuple[int, int]:
        self._walk.header()
        return super().read_object_header(stream)


def check_pdf(file: RangeReader, size: int, *, whole: bool, limits: PdfLimits | None = None) -> str:
    """``whole``: inspect every object (the file is in memory); otherwise what the trailer reaches."""
    walk = _Walk(limits or PdfLimits())
    try:
        reader = _BoundedReader(file.as_file(), walk)
        count = _scan_all(reader, walk) if whole else _scan_reachable(reader, walk)
    except Rejection:
        raise
    except ReadBudgetExceeded as exc:
        raise Rejection(Reason.PDF_UNVERIFIABLE, "PDF structure larger than the read budget") from exc
    except (RecursionError, MemoryError) as exc:
        raise Rejection(Reason.PDF_UNVERIFIABLE, f"PDF structure beyond the work bound ({type(exc).__name__})") from exc
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, EOFError,
            struct.error, AssertionError, UnicodeError, ZeroDivisionError) as exc:
        raise Rejection(Reason.PDF_INVALID, f"not a readable PDF ({type(exc).__name__})") from exc
    if file.exceeded:  # pypdf recovers from some read errors by itself: whatever it saw, we did not see all
        raise Rejection(Reason.PDF_UNVERIFIABLE, "PDF structure larger than the read budget")
    return f"PDF, {count} objects inspected"


def _scan_all(reader: PdfReader, walk: _Walk) -> int:
    """Every object the cross-reference data lists, including those inside object streams."""
    ids = {(idnum, gen) for gen, table in reader.xref.items() for idnum in table}
    ids |= {(idnum, 0) for idnum in reader.xref_objStm}
    walk.visit()
    if len(ids) > walk.max_objects:
        raise Rejection(Reason.PDF_UNVERIFIABLE, f"PDF lists {len(ids)} objects")
    places = [offset for table in reader.xref.values() for offset in table.values()]
    places += [tuple(at) for at in reader.xref_objStm.values()]
    if len(set(places)) < len(places):  # two objects at one place: each parse of it is work for nothing
        raise Rejection(Reason.PDF_UNVERIFIABLE, f"PDF lists {len(places) - len(set(places))} objects at a "
                                                 "place another object already holds")
    walk.inspect(reader.trailer, 0)
    for idnum, gen in sorted(ids):
        walk.visit(objects=1)
        obj = reader.get_object(IndirectObject(idnum, gen, reader))
        if obj is not None:
            walk.inspect(obj, 0)
    return len(ids)


def _scan_reachable(reader: PdfReader, walk: _Walk) -> int:
    seen: set[tuple[int, int]] = set()
    pending: list[Any] = [reader.trailer]
    while pending:
        obj = pending.pop()
        if isinstance(obj, IndirectObject):
            key = (obj.idnum, obj.generation)
            if key in seen:
                continue
            seen.add(key)
            walk.visit(objects=1)
            obj = obj.get_object()
        pending.extend(walk.inspect(obj, 0, follow=True))
    return len(seen)
