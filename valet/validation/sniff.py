"""What an upload really is, from its first bytes: a pure decision over the head of the blob.

Detection uses `puremagic <https://pypi.org/project/puremagic/>`_ for magic numbers, chosen over the
alternatives because:

* **python-magic** wraps libmagic (C). Its database is the most complete, but the Functions Python
  worker image does not promise ``libmagic.so``, a missing or different system library fails at import
  or answers differently per host, and Windows needs a separate wheel. A validator that changes verdicts
  with the OS image is a bad validator.
* **filetype** is pure Python but knows ~80 types, has had long gaps between releases, and matches only
  at offset 0 with one answer, so it cannot say "this is also that" (zip-based formats, polyglots).
* **puremagic** is pure Python (no system dependency, same answer everywhere), maintained with regular
  releases, ships a large signature database (headers at fixed and negative offsets, multi-part
  signatures), and returns *all* candidates with a confidence, which the checks below use: the declared
  type must be among the *best-ranked* candidates (a weak, short signature that some other format beats
  does not count), except that a declared zip only needs the bytes to be a zip container (puremagic
  ranks every zip as OOXML, ODF, EPUB and JAR alike), whose structure :mod:`valet.validation.archive`
  then checks.

Magic numbers alone do not catch the dangerous cases, so this module adds what they miss: markup that a
browser would run (HTML, scripted SVG, XML) presented as an image or a document, HTML or a second format
(``%PDF-``) embedded in the head of an image (polyglots), and JavaScript or launch actions in a PDF's head.
A declared text type (``text/plain``, ``text/csv``...) takes another route, before any magic number:
:mod:`valet.validation.text` decides whether the head is text in some encoding, and a text verdict
outranks the weak signatures that are themselves text (see :func:`_decide_text`).

All checks here read only the sniff window (64 KiB by default). Magic numbers are a first filter, not a
proof: :mod:`valet.validation.structure` then parses images and PDFs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import puremagic

from valet.validation import media
from valet.validation.archive import is_zip_container
from valet.validation.office import OFFICE_TYPES
from valet.validation.reasons import Reason
from valet.validation.text import csv_columns, decode_text

OCTET_STREAM = "application/octet-stream"
ZIP = "application/zip"
PDF = "application/pdf"
CSV = "text/csv"
XML_TYPES = frozenset({"application/xml", "text/xml"})

_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/x-pdf": "application/pdf",
    "text/xml": "application/xml",
}
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
# The WHATWG MIME sniffing standard's "HTML" patterns (tag name followed by space or '>').
_HTML_START = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|script|iframe|h1|div|font|table|a|style|title|b|br|p|meta|"
    rb"img|object|embed|form|svg:svg|!--)[\s>/]",
    re.IGNORECASE,
)
_SVG_START = re.compile(rb"<(?:!doctype\s+svg|svg)[\s>/]", re.IGNORECASE)
_XML_START = re.compile(rb"<\?xml[\s?]", re.IGNORECASE)
_SVG_ANYWHERE = re.compile(rb"<svg[\s>/]", re.IGNORECASE)
_HTML_ANYWHERE = re.compile(rb"<(?:!doctype\s+html|html|body|script|iframe)[\s>/]", re.IGNORECASE)
# What makes SVG (or any markup) run code: script elements, event handler attributes, javascript: URLs,
# embedded HTML, and entity/XInclude tricks that pull in other content.
_SCRIPTED_MARKUP = re.compile(
    rb"<script[\s>/]|<foreignObject[\s>/]|<iframe[\s>/]|<embed[\s>/]|<object[\s>/]|\son[a-z]+\s*=|"
    rb"javascript\s*:|data\s*:\s*text/html|<!ENTITY|xi:include|<handler[\s>/]",
    re.IGNORECASE,
)
_PDF_ACTIVE = re.compile(rb"/(?:JavaScript|JS|Launch)(?=[\s/<(\[]|$)")
_PDF_MAGIC = b"%PDF-"
_PDF_SEARCH = 1024  # PDF readers accept the header anywhere in the first 1 KiB


@dataclass(frozen=True)
class TypeVerdict:
    """``reason`` is ``None`` when the type check passes. ``detected`` is what the bytes are (best
    answer; ``None`` when unrecognised), recorded whatever the outcome."""

    detected: str | None
    reason: Reason | None = None
    detail: str = ""


def canonical(mime: str) -> str:
    base = mime.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def ranked(head: bytes) -> list[tuple[str, float]]:
    """Every type puremagic sees in ``head`` with its best confidence, best first, without duplicates."""
    if not head:
        return []
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return []
    best: dict[str, float] = {}
    for match in sorted(matches, key=lambda m: -m.confidence):
        mime = canonical(match.mime_type) if match.mime_type else ""
        if mime and mime not in best:
            best[mime] = match.confidence
    return list(best.items())


def markup_kind(head: bytes) -> str | None:
    """``text/html``, ``image/svg+xml`` or ``application/xml`` when the head *starts* as markup."""
    text = head
    for bom in _BOMS:
        if text.startswith(bom):
            text = text[len(bom):]
            break
    text = text.lstrip(b" \t\r\n\f")[:4096]
    if text.startswith(b"\x00<") or text.startswith(b"<\x00"):  # UTF-16 markup: treat the same, decoded
        text = text.replace(b"\x00", b"")
    if _HTML_START.match(text):
        return "text/html"
    if _SVG_START.match(text):
        return "image/svg+xml"
    if _XML_START.match(text):
        if _SVG_ANYWHERE.search(head):
            return "image/svg+xml"
        if _HTML_ANYWHERE.search(head) or b"http://www.w3.org/1999/xhtml" in head:
            return "text/html"
        return "application/xml"
    return None


def decide_type(head: bytes, declared: str, allowed: Mapping[str, tuple[str, ...]]) -> TypeVerdict:
    """Does the head of an upload agree with its declared type, and may the profile accept it?

    ``declared`` is the granted content type (already one the profile lists); ``allowed`` the profile's
    types. Order matters: active content first (whatever was declared), then the magic-number type, then
    polyglot and embedded-script checks on what passed.
    """
    declared = canonical(declared)
    if is_text_type(declared):
        return _decide_text(head, declared, allowed)
    markup = markup_kind(head)
    if markup is not None:
        return _decide_markup(head, markup, declared, allowed)

    if declared in media.BMFF_TYPES:
        return _decide_bmff(head, declared, allowed)
    if declared in OFFICE_TYPES and is_zip_container(head):  # which package it is: valet.validation.office
        return _embedded_checks(head, declared)
    ranking = ranked(head)  # one puremagic pass (it tries every signature it knows: the costly step)
    found = [mime for mime, _ in ranking]
    if not found:
        if declared.startswith("text/"):
            if decode_text(head) is not None:
                return _embedded_checks(head, declared)
            return TypeVerdict(OCTET_STREAM, Reason.TYPE_MISMATCH, f"declared {declared}; content is binary")
        if declared == OCTET_STREAM:
            return TypeVerdict(OCTET_STREAM)
        return TypeVerdict(None, Reason.TYPE_MISMATCH, f"declared {declared}; content type not recognised")

    best, top = found[0], [mime for mime, confidence in ranking if confidence == ranking[0][1]]
    if declared in top or (declared == ZIP and is_zip_container(head)):
        return _embedded_checks(head, declared)
    if declared == OCTET_STREAM:  # "some binary": any recognised type will do, but not hidden markup
        return _embedded_checks(head, best, recorded=best)
    if not any(mime in allowed for mime in top):
        return TypeVerdict(best, Reason.TYPE_NOT_ALLOWED, f"declared {declared}; content is {best}")
    return TypeVerdict(best, Reason.TYPE_MISMATCH, f"declared {declared}; content is {best}")


def is_text_type(mime: str) -> bool:
    """Decided by :func:`_decide_text`: every ``text/*`` type except HTML (markup has its own route)."""
    return mime.startswith("text/") and mime != "text/html"


def _decide_text(head: bytes, declared: str, allowed: Mapping[str, tuple[str, ...]]) -> TypeVerdict:
    """A declared text type: text in any encoding is text, whatever weak signature its first bytes
    resemble (mbox ``From``, BMP ``BM``); magic numbers only name what a non-text upload is. Markup is
    text too, with two exceptions: markup that starts the file and carries script (an HTML page with
    ``<script>``, an SVG with handlers) is active content, and a head that is also a PDF is a polyglot.
    Harmless markup is accepted *as the declared text type*: the record, the accepted copy and every
    download say ``text/plain`` (or ``text/csv``) with ``attachment``, so no browser renders it."""
    text = decode_text(head)
    if text is None:
        ranking = ranked(head)
        if not ranking:
            return TypeVerdict(OCTET_STREAM, Reason.TYPE_MISMATCH, f"declared {declared}; content is binary")
        best = ranking[0][0]
        reason = Reason.TYPE_MISMATCH if any(mime in allowed for mime, _ in ranking) else Reason.TYPE_NOT_ALLOWED
        return TypeVerdict(best, reason, f"declared {declared}; content is {best}")
    utf8 = text.text.encode("utf-8", errors="replace")
    markup = markup_kind(utf8)
    if markup is not None and markup != "application/xml" and _SCRIPTED_MARKUP.search(utf8):
        return TypeVerdict(markup, Reason.ACTIVE_CONTENT, f"{markup} with script, declared {declared}")
    if markup == "application/xml" and _SCRIPTED_MARKUP.search(utf8):
        return TypeVerdict(markup, Reason.ACTIVE_CONTENT, "XML with script or entity declarations")
    pdf_at = utf8.find(_PDF_MAGIC, 0, _PDF_SEARCH + len(_PDF_MAGIC))
    if pdf_at == 0 or (pdf_at > 0 and b" obj" in utf8[pdf_at:]):
        return TypeVerdict(PDF, Reason.POLYGLOT if pdf_at else Reason.TYPE_MISMATCH,
                           f"declared {declared}; content is also a PDF (header at {pdf_at})")
    if declared == CSV:
        shape = csv_columns(text.text)
        if shape.columns is None:
            return TypeVerdict(declared, Reason.CSV_INVALID,
                               f"records of {text.encoding} CSV disagree on their number of fields")
    return TypeVerdict(declared)


def _decide_bmff(head: bytes, declared: str, allowed: Mapping[str, tuple[str, ...]]) -> TypeVerdict:
    """A declared photo or video of the ISO base media format: its ``ftyp`` brands decide (puremagic
    ranks a HEIC as MP4 as high as HEIF); :mod:`valet.validation.media` then walks the boxes."""
    if media.brand_matches(head, declared):
        return _embedded_checks(head, declared)
    ranking = ranked(head)
    found = media.brand_type(head) or (ranking[0][0] if ranking else None)
    if found is None:
        return TypeVerdict(None, Reason.TYPE_MISMATCH, f"declared {declared}; content type not recognised")
    reason = Reason.TYPE_MISMATCH if found in allowed else Reason.TYPE_NOT_ALLOWED
    return TypeVerdict(found, reason, f"declared {declared}; content is {found}")


def _decide_markup(head: bytes, markup: str, declared: str, allowed: Mapping[str, tuple[str, ...]]) -> TypeVerdict:
    if _SCRIPTED_MARKUP.search(head) and markup != "application/xml":
        return TypeVerdict(markup, Reason.ACTIVE_CONTENT, f"{markup} with script, declared {declared}")
    declared_is_markup = declared == markup or (markup == "application/xml" and
                                                (declared in XML_TYPES or declared.endswith("+xml")))
    if declared_is_markup and declared in allowed:
        if markup == "application/xml" and _SCRIPTED_MARKUP.search(head):
            return TypeVerdict(markup, Reason.ACTIVE_CONTENT, "XML with script or entity declarations")
        return TypeVerdict(declared)
    return TypeVerdict(markup, Reason.ACTIVE_CONTENT, f"{markup} declared as {declared}")


def _embedded_checks(head: bytes, mime: str, *, recorded: str | None = None) -> TypeVerdict:
    detected = recorded or mime
    if mime == "application/pdf":
        if _PDF_ACTIVE.search(head):
            return TypeVerdict(detected, Reason.ACTIVE_CONTENT, "PDF with JavaScript or launch action")
        return TypeVerdict(detected)
    if mime.startswith("text/"):
        return TypeVerdict(detected)
    pdf_at = head.find(_PDF_MAGIC, 1, _PDF_SEARCH + len(_PDF_MAGIC))
    if pdf_at > 0:
        return TypeVerdict(detected, Reason.POLYGLOT, f"{mime} that is also a PDF (header at {pdf_at})")
    if mime.startswith(("image/", "video/")):
        if _HTML_ANYWHERE.search(head) or _SVG_ANYWHERE.search(head):
            return TypeVerdict(detected, Reason.POLYGLOT, f"{mime} carrying HTML markup")
    return TypeVerdict(detected)
