"""Text decided as text: what encoding the head of an upload is in, and whether a CSV is a table.

A declared text type (``text/plain``, ``text/csv``, any ``text/*`` but HTML) is decided here, before any
magic number is looked at: many signatures are themselves text (an mbox's ``From``, a BMP's ``BM``), and a
text file that happens to start with them is still text. Detection:

* a byte-order mark names the encoding (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE): the head must decode with it;
* otherwise `charset-normalizer <https://pypi.org/project/charset-normalizer/>`_ (maintained, pure Python
  with optional compiled speedups, already installed with ``requests``) finds the encoding: UTF-8, UTF-16
  and UTF-32 without a BOM, legacy single-byte code pages, the CJK multi-byte ones and ISO-2022 (whose
  escape bytes are the encoding, not control characters). It refuses bytes that decode only as noise.

The decoded text must still hold (almost) no control characters other than tab, line feeds, form feed and
escape (terminal colours in logs): a NUL-riddled "text" is binary whatever decodes it. The head is usually
a prefix of the upload, cut anywhere: up to three bytes are trimmed from its end until it decodes, so a
multi-byte character cut in half does not turn text into binary.

CSV (:func:`csv_columns`): the :mod:`csv` module reads the decoded head, with the delimiter
:class:`csv.Sniffer` finds (or each usual delimiter in turn), and no record may have more fields than the
first one, the header (blank lines aside; the last record is ignored when the head may end inside it).
Fewer is fine: many writers leave out trailing empty fields (Debian's own ``distro-info`` tables do).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import charset_normalizer

BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "utf_32_le"),
    (b"\x00\x00\xfe\xff", "utf_32_be"),
    (b"\xef\xbb\xbf", "utf_8"),
    (b"\xff\xfe", "utf_16_le"),
    (b"\xfe\xff", "utf_16_be"),
)
_ALLOWED_CONTROLS = frozenset("\t\n\r\x0b\x0c\x1b")
_MAX_TRIM = 3  # the longest incomplete character at a cut: 3 bytes of UTF-8 or UTF-32
CSV_DELIMITERS = ",;\t|"
_CSV_SAMPLE = 16 * 1024  # what csv.Sniffer looks at (it is quadratic-ish on long samples)


@dataclass(frozen=True)
class Text:
    """The head decoded: ``encoding`` as charset-normalizer or the BOM names it; ``bom`` whether one was
    there; ``text`` the complete characters of the head."""

    encoding: str
    text: str
    bom: bool = False


def decode_text(head: bytes) -> Text | None:
    """The head as text, or ``None`` when it is not text in any encoding the detector knows."""
    if not head:
        return Text("ascii", "")
    for mark, encoding in BOMS:
        if head.startswith(mark):
            decoded = _decode_prefix(head[len(mark):], encoding)
            return Text(encoding, decoded, bom=True) if decoded is not None and _few_controls(decoded) else None
    for cut in range(_MAX_TRIM + 1):
        data = head[: len(head) - cut] if cut else head
        if not data:
            break
        match = charset_normalizer.from_bytes(data).best()
        if match is not None:
            decoded = str(match)
            return Text(match.encoding, decoded) if _few_controls(decoded) else None
    return None


def _decode_prefix(data: bytes, encoding: str) -> str | None:
    for cut in range(_MAX_TRIM + 1):
        try:
            return (data[: len(data) - cut] if cut else data).decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _few_controls(text: str) -> bool:
    controls = sum(1 for ch in text if (ch < " " and ch not in _ALLOWED_CONTROLS) or ch == "\x7f")
    return controls <= len(text) // 100


@dataclass(frozen=True)
class CsvShape:
    """What the CSV check found: ``columns`` of the header (``None``: a record has more), ``records`` read."""

    delimiter: str
    columns: int | None
    records: int


def csv_columns(text: str, *, complete: bool = False) -> CsvShape:
    """The shape of the table in ``text``: the first delimiter (Excel's ``sep=`` hint, then the sniffed
    one, then the usual ones) under which the header has more than one field and no record more than the
    header; else one column when no delimiter splits anything; else ``columns`` ``None``.
    ``complete``: ``text`` is the whole file (otherwise its last record may be cut)."""
    candidates = [*_sniffed(text), *CSV_DELIMITERS]
    if text.startswith("sep=") and "\n" in text:  # Excel's hint line, e.g. "sep=;"
        hint, text = text[4:5], text.split("\n", 1)[1]
        candidates = [hint]
    shapes = [_shape(text, delimiter, complete) for delimiter in dict.fromkeys(candidates)]
    for shape in shapes:
        if shape.columns is not None and shape.columns > 1:
            return shape
    if all(shape.columns == 1 for shape in shapes):
        return shapes[0]
    return next(shape for shape in shapes if shape.columns is None)


def _sniffed(text: str) -> list[str]:
    try:
        return [csv.Sniffer().sniff(text[:_CSV_SAMPLE], delimiters=CSV_DELIMITERS).delimiter]
    except csv.Error:
        return []


def _shape(text: str, delimiter: str, complete: bool) -> CsvShape:
    counts: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    cut = False
    try:
        for row in reader:
            if row:  # not a blank line
                counts.append(len(row))
    except csv.Error as exc:  # a quoted field left open by the cut ends the head; anything else is not CSV
        if complete or "unexpected end of data" not in str(exc):
            return CsvShape(delimiter, None, len(counts))
        cut = True
    if not complete and not cut and counts and not text.endswith(("\n", "\r")):
        counts.pop()  # the head ends inside this record
    if not counts:
        return CsvShape(delimiter, 1, 0)
    columns = counts[0] if max(counts) == counts[0] else None
    return CsvShape(delimiter, columns, len(counts))
