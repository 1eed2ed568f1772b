"""Office documents verified as what they claim (issue 27): packages written by python-docx, openpyxl,
python-pptx and odfpy pass; a JAR, a macro-enabled document, a template or another kind of package
declared as a document is refused. Pure: the package is read through the same range reader as a blob."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import samples
from tests.support.samples import content_types, docx, jar, macro_docx, odf, pptx, rewrite, xlsx
from valet.grants.policy import ArchiveLimits
from valet.validation.archive import check_zip
from valet.validation.blobio import RangeReader
from valet.validation.office import DOCX, ODP, ODS, ODT, PPTX, XLSX, check_office
from valet.validation.reasons import Reason, Rejection
from valet.validation.sniff import decide_type
from valet.validation.structure import ImageLimits, check_structure

DOCS = {mime: ("x",) for mime in (DOCX, XLSX, PPTX, ODT, ODS, ODP, "application/pdf", "text/plain")}


class Memory:
    def __init__(self, data: bytes) -> None:
        self.data, self.requests = data, 0

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: Any) -> Any:
        self.requests += 1
        chunk = self.data[offset or 0:(offset or 0) + (length or 0)]
        return type("Download", (), {"readall": lambda _self: chunk})()


def decide(data: bytes, mime: str) -> str:
    verdict = decide_type(data[:65536], mime, DOCS)
    if verdict.reason is not None:
        raise Rejection(verdict.reason, verdict.detail)
    source = Memory(data)
    report = check_structure(source, len(data), data[:65536], mime, ImageLimits())
    check_zip(RangeReader(source, len(data), budget=1 << 20).as_file(), len(data), ArchiveLimits(),
              RangeReader(source, len(data), budget=1 << 20, read_ahead=4096).as_file())
    return report.detail


@pytest.mark.parametrize(("make", "mime", "label"), [
    (docx, DOCX, "DOCX"), (xlsx, XLSX, "XLSX"), (pptx, PPTX, "PPTX"),
    (lambda: odf("odt"), ODT, "ODT"), (lambda: odf("ods"), ODS, "ODS"), (lambda: odf("odp"), ODP, "ODP"),
])
def test_documents_from_real_writers_pass(make: Any, mime: str, label: str) -> None:
    assert decide(make(), mime).startswith(label)


@pytest.mark.parametrize(("make", "mime", "reason"), [
    (jar, DOCX, Reason.POLYGLOT),  # a DOCX that is really a JAR
    (lambda: rewrite(docx(), {"META-INF/MANIFEST.MF": b"Main-Class: Evil\n", "Evil.class": b"\xca\xfe\xba\xbe"}),
     DOCX, Reason.POLYGLOT),  # a real DOCX that also runs as a JAR
    (lambda: samples.zip_file({"readme.txt": b"hi"}), DOCX, Reason.DOCUMENT_INVALID),  # any zip
    (macro_docx, DOCX, Reason.ACTIVE_CONTENT),  # a macro-enabled document declared as docx
    (lambda: rewrite(docx(), {"word/vbaProject.bin": b"\xd0\xcf\x11\xe0"}), DOCX, Reason.ACTIVE_CONTENT),
    (lambda: rewrite(xlsx(), {"xl/activeX/activeX1.bin": b"x"}), XLSX, Reason.ACTIVE_CONTENT),
    (lambda: rewrite(odf("odt"), {"Basic/Standard/Module1.xml": b"<script/>"}), ODT, Reason.ACTIVE_CONTENT),
    (docx, XLSX, Reason.DOCUMENT_INVALID),  # a Word document declared as a spreadsheet
    (xlsx, PPTX, Reason.DOCUMENT_INVALID),
    (lambda: odf("ods"), ODT, Reason.DOCUMENT_INVALID),
    (lambda: odf("odt"), DOCX, Reason.DOCUMENT_INVALID),
    (docx, ODT, Reason.DOCUMENT_INVALID),
    (lambda: rewrite(docx(), {"word/document.xml": None}), DOCX, Reason.DOCUMENT_INVALID),  # main part missing
    (lambda: rewrite(docx(), {"[Content_Types].xml": content_types(docx()).replace(
        b"wordprocessingml.document.main+xml", b"wordprocessingml.template.main+xml")}), DOCX,
     Reason.DOCUMENT_INVALID),  # a template
    (lambda: rewrite(docx(), {"[Content_Types].xml": b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]>'
                                                     + content_types(docx()).split(b"?>", 1)[1]}),
     DOCX, Reason.DOCUMENT_INVALID),  # entities in the content types
    (lambda: rewrite(docx(), {"[Content_Types].xml": b"<Types"}), DOCX, Reason.DOCUMENT_INVALID),
    (lambda: samples.pdf(), DOCX, Reason.TYPE_MISMATCH),  # not a zip at all
])
def test_crafted_documents_are_refused(make: Any, mime: str, reason: Reason) -> None:
    with pytest.raises(Rejection) as info:
        decide(make(), mime)
    assert info.value.reason is reason, info.value.detail


def test_macros_pass_when_the_profile_allows_them() -> None:
    data = macro_docx()
    with pytest.raises(Rejection):
        check_office(RangeReader(Memory(data), len(data), budget=1 << 20).as_file(), DOCX)
    # allowed macros: the package is still judged by its main part, which is a macro-enabled document
    with pytest.raises(Rejection) as info:
        check_office(RangeReader(Memory(data), len(data), budget=1 << 20).as_file(), DOCX, allow_macros=True)
    assert info.value.reason is Reason.DOCUMENT_INVALID
    plain = rewrite(docx(), {"word/vbaProject.bin": b"\xd0\xcf\x11\xe0"})
    assert check_office(RangeReader(Memory(plain), len(plain), budget=1 << 20).as_file(), DOCX,
                        allow_macros=True).startswith("DOCX")
