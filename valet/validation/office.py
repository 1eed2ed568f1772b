"""Office documents: a DOCX/XLSX/PPTX or ODT/ODS/ODP is a zip package that says what it is, and it must
say the declared type, with no macros.

* **Office Open XML** (ECMA-376 part 2, Open Packaging Conventions): ``[Content_Types].xml`` maps every
  part to a content type. The package's main part must have the declared type's main content type (a
  Word document's ``…wordprocessingml.document.main+xml``; a template, a macro-enabled ``.docm`` or a
  spreadsheet is something else), and that part must exist.
* **OpenDocument** (OASIS ODF 1.2+, part 3): the ``mimetype`` entry holds the package's media type, in
  ASCII, and it must be the declared one; ``META-INF/manifest.xml`` must be there.

Active content is refused unless the caller allows it (``allow_macros``): VBA projects (a
``vbaProject.bin`` part, the macro-enabled and macro-sheet content types), ActiveX controls, and
OpenDocument Basic or script libraries (``Basic/``, ``Scripts/``). A package that is also a Java archive
(a ``META-INF/MANIFEST.MF`` or a ``.class`` entry: a DOCX that runs as a JAR) is a polyglot.

Only the central directory and one small entry (the content types or the mimetype) are read, through a
budgeted range reader; the archive checks of :mod:`valet.validation.archive` (bombs, overlaps, local
headers) run on the same upload as for any zip. ``[Content_Types].xml`` is read with the standard
library's expat parser, which refuses (raises on) any document type declaration, so no entity is ever
declared, let alone expanded.
"""

from __future__ import annotations

import re
import zipfile
from typing import IO
from xml.parsers import expat

from valet.validation.blobio import ReadBudgetExceeded
from valet.validation.reasons import Reason, Rejection

_OOXML = "application/vnd.openxmlformats-officedocument."
_ODF = "application/vnd.oasis.opendocument."
DOCX, XLSX, PPTX = _OOXML + "wordprocessingml.document", _OOXML + "spreadsheetml.sheet", \
    _OOXML + "presentationml.presentation"
ODT, ODS, ODP = _ODF + "text", _ODF + "spreadsheet", _ODF + "presentation"
# The main part's content type for each declared package type.
OOXML_MAIN = {DOCX: DOCX + ".main+xml", XLSX: XLSX + ".main+xml", PPTX: PPTX + ".main+xml"}
ODF_TYPES = frozenset({ODT, ODS, ODP})
OFFICE_TYPES = frozenset(OOXML_MAIN) | ODF_TYPES
MAX_SMALL_ENTRY = 1024 * 1024  # [Content_Types].xml or mimetype, uncompressed
_CONTENT_TYPES = "[Content_Types].xml"
_NS = "http://schemas.openxmlformats.org/package/2006/content-types "
_ACTIVE_TYPE = re.compile(r"macroenabled|vbaproject|macrosheet|activex|vnd\.ms-office\.vba", re.IGNORECASE)
_ACTIVE_ENTRY = re.compile(r"(^|/)(vbaProject\.bin|vbaProjectSignature\.bin|activeX\d*\.(bin|xml))$|^(Basic|Scripts)/",
                           re.IGNORECASE)
_JAVA_ENTRY = re.compile(r"(^|/)META-INF/MANIFEST\.MF$|\.class$")


def check_office(file: IO[bytes], mime: str, *, allow_macros: bool = False) -> str:
    """Raise :class:`Rejection` unless the zip in ``file`` is the office document ``mime`` says."""
    try:
        with zipfile.ZipFile(file) as package:
            names = [info.filename for info in package.infolist()]
            _check_entries(names, allow_macros)
            if mime in ODF_TYPES:
                return _check_odf(package, names, mime)
            return _check_ooxml(package, names, mime, allow_macros)
    except ReadBudgetExceeded as exc:
        raise Rejection(Reason.DOCUMENT_INVALID, "package directory larger than the read budget") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, OSError,
            RuntimeError) as exc:
        raise Rejection(Reason.DOCUMENT_INVALID, f"not a readable {_short(mime)} package ({type(exc).__name__})") \
            from exc


def _short(mime: str) -> str:
    return {DOCX: "DOCX", XLSX: "XLSX", PPTX: "PPTX", ODT: "ODT", ODS: "ODS", ODP: "ODP"}.get(mime, mime)


def _check_entries(names: list[str], allow_macros: bool) -> None:
    for name in names:
        if _JAVA_ENTRY.search(name):
            raise Rejection(Reason.POLYGLOT, f"office package that is also a Java archive ({name[:60]!r})")
        if not allow_macros and _ACTIVE_ENTRY.search(name):
            raise Rejection(Reason.ACTIVE_CONTENT, f"office package with macros or controls ({name[:60]!r})")


def _small(package: zipfile.ZipFile, name: str) -> bytes:
    with package.open(name) as entry:
        data = entry.read(MAX_SMALL_ENTRY + 1)
    if len(data) > MAX_SMALL_ENTRY:
        raise Rejection(Reason.DOCUMENT_INVALID, f"{name} larger than {MAX_SMALL_ENTRY} bytes")
    return data


def _check_odf(package: zipfile.ZipFile, names: list[str], mime: str) -> str:
    if "mimetype" not in names or "META-INF/manifest.xml" not in names:
        raise Rejection(Reason.DOCUMENT_INVALID, "no mimetype or manifest entry: not an OpenDocument package")
    found = _small(package, "mimetype").decode("ascii", errors="replace").strip()
    if found != mime:
        raise Rejection(Reason.DOCUMENT_INVALID, f"the package says {found[:80]!r}, not {_short(mime)}")
    return f"{_short(mime)}, {len(names)} entries"


def _check_ooxml(package: zipfile.ZipFile, names: list[str], mime: str, allow_macros: bool) -> str:
    if _CONTENT_TYPES not in names:
        raise Rejection(Reason.DOCUMENT_INVALID, "no [Content_Types].xml: not an Office Open XML package")
    overrides, defaults = _content_types(_small(package, _CONTENT_TYPES))
    if not allow_macros:
        active = [kind for kind in [*overrides.values(), *defaults] if _ACTIVE_TYPE.search(kind)]
        if active:
            raise Rejection(Reason.ACTIVE_CONTENT, f"office package with {active[0][:80]}")
    main = [part for part, kind in overrides.items() if kind == OOXML_MAIN[mime]]
    if len(main) != 1:
        others = sorted({kind for kind in overrides.values() if kind.endswith(".main+xml")})
        said = others[0] if others else "no main part"
        raise Rejection(Reason.DOCUMENT_INVALID, f"the package says {said[:100]}, not {_short(mime)}")
    if main[0] not in names:
        raise Rejection(Reason.DOCUMENT_INVALID, f"the main part {main[0][:80]!r} is missing")
    return f"{_short(mime)}, {len(names)} entries"


def _content_types(text: bytes) -> tuple[dict[str, str], list[str]]:
    """(part name -> content type of each Override, the content types of the Defaults)."""
    overrides: dict[str, str] = {}
    defaults: list[str] = []

    def start(name: str, attributes: dict[str, str]) -> None:
        if name == _NS + "Override":
            overrides[attributes.get("PartName", "").lstrip("/")] = attributes.get("ContentType", "")
        elif name == _NS + "Default":
            defaults.append(attributes.get("ContentType", ""))

    def refuse(*_args: object) -> None:
        raise Rejection(Reason.DOCUMENT_INVALID, "[Content_Types].xml with a document type declaration")

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise Rejection(Reason.DOCUMENT_INVALID, "[Content_Types].xml does not parse") from exc
    return overrides, defaults
