"""Attack 8: the formats issue 27 let in, crafted to pass as what they are not: a HEIC whose ftyp lies, an
MP4 with a box past the end of the blob or a zip after its last box, a DOCX that is really a JAR, a
macro-enabled document declared as a DOCX, an ODT that says it is a spreadsheet, and text files that are
really HTML pages (UTF-16 CSV or a .txt with a script). Each goes through a real grant, a real PUT and
the real validator on Azurite, and must end in quarantine with its reason and a coarse public code."""

from __future__ import annotations

import codecs
from collections.abc import Callable

import pytest
from azure.storage.blob import BlobServiceClient

from tests.integration.test_validation import Upload, assert_quarantined, upload
from tests.support import samples
from tests.support.samples import box, docx, ftyp, jar, macro_docx, movie, mp4, odf, rewrite
from valet.validation.office import DOCX, ODT
from valet.validation.reasons import public_reason

pytestmark = pytest.mark.azurite


HTML_PAGE = "<!DOCTYPE html>\n<html><body>\n<script>fetch('/steal?c=' + document.cookie)</script>\n</body></html>\n"
CASES = {
    # name: (bytes, filename, declared type, profile, reason)
    "heic_whose_ftyp_lies": (ftyp(b"heic", b"mif1", b"heic") + movie() + box(b"mdat", bytes(64)), "a.heic",
                             "image/heic", "images", "image_invalid"),
    "heic_brands_on_a_png": (ftyp(b"heic", b"mif1", b"heic") + samples.png(), "b.heic", "image/heic", "images",
                             "image_invalid"),
    "avif_declared_heic": (samples.avif(), "c.heic", "image/heic", "images", "type_mismatch"),
    "mp4_box_past_the_end": (mp4(bytes(4096))[:-7], "d.mp4", "video/mp4", "videos", "video_invalid"),
    "mp4_with_a_zip_after_it": (mp4() + samples.zip_file({"payload.exe": b"MZ" + bytes(64)}), "e.mp4", "video/mp4",
                                "videos", "video_invalid"),
    "mp4_without_a_movie": (ftyp(b"isom") + box(b"mdat", bytes(256)), "f.mp4", "video/mp4", "videos",
                            "video_invalid"),
    "quicktime_declared_mp4": (mp4(brand=b"qt  ", compatible=(b"qt  ",)), "g.mp4", "video/mp4", "videos",
                               "type_mismatch"),
    "docx_that_is_a_jar": (jar(), "h.docx", DOCX, "documents", "polyglot"),
    "docx_that_also_runs_as_a_jar": (rewrite(docx(), {"META-INF/MANIFEST.MF": b"Main-Class: Evil\n",
                                                      "Evil.class": b"\xca\xfe\xba\xbe" + bytes(16)}),
                                     "i.docx", DOCX, "documents", "polyglot"),
    "macro_enabled_declared_docx": (macro_docx(), "j.docx", DOCX, "documents", "active_content"),
    "odt_that_says_spreadsheet": (odf("ods"), "k.odt", ODT, "documents", "document_invalid"),
    "utf16_csv_that_is_a_scripted_page": (codecs.BOM_UTF16_LE + HTML_PAGE.encode("utf-16-le"), "l.csv", "text/csv",
                                          "documents", "active_content"),
    "utf16_csv_that_is_a_page": ("<html>\n<body>\n<p>Hello, there, you</p>\n<p>x</p>\n</body>\n</html>\n"
                                 .encode("utf-16"), "m.csv", "text/csv", "documents", "csv_invalid"),
    "txt_that_is_a_scripted_page": (HTML_PAGE.encode(), "n.txt", "text/plain", "documents", "active_content"),
    "txt_that_is_also_a_pdf": (b"read me\n" + samples.pdf(), "o.txt", "text/plain", "documents", "polyglot"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_crafted_files_of_the_new_formats_are_quarantined(name: str, grant: Callable[..., Upload],
                                                          blob_service: BlobServiceClient) -> None:
    data, filename, declared, profile, reason = CASES[name]
    up = upload(grant, data, filename=filename, contentType=declared, profile=profile)
    decision = assert_quarantined(up, blob_service, reason)
    assert public_reason(decision.reason) in {"type_mismatch", "content_not_allowed"}
