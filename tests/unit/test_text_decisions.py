"""Text decided as text (issue 27): encodings with and without a BOM, weak signatures that are text,
markup in a text file, and the CSV shape check. Pure: the decision over a head, no storage."""

from __future__ import annotations

import codecs

import pytest

from tests.support import samples
from valet.validation.reasons import Reason
from valet.validation.sniff import decide_type
from valet.validation.text import csv_columns, decode_text

DOCS = {"application/pdf": ("pdf",), "text/plain": ("txt",), "text/csv": ("csv",)}
PROSE = {
    "utf_8": "Grüße aus Köln; naïve café; 日本語のテキスト\n",
    "cp1252": "Café, naïve, déjà vu: “quotes” cost €5\n",
    "latin_1": "Grüße aus Köln, schöne Straße\n",
    "cp1250": "Zażółć gęślą jaźń, čeština\n",
    "koi8_r": "Привет, как дела? Это русский текст.\n",
    "cp1251": "Привет, как дела? Это русский текст.\n",
    "iso8859_7": "Καλημέρα κόσμε, ελληνικά γράμματα\n",
    "shift_jis": "日本語のテキストです。メールの本文。\n",
    "euc_jp": "日本語のテキストです。メールの本文。\n",
    "iso2022_jp": "日本語のテキストです。メールの本文。\n",
    "euc_kr": "안녕하세요 한국어 텍스트입니다\n",
    "iso2022_kr": "안녕하세요 한국어 텍스트입니다\n",
    "gb18030": "你好，这是中文文本。\n",  # noqa: RUF001
    "big5": "你好，這是中文文本。\n",  # noqa: RUF001
}
UNICODE = ["utf_8", "utf_8_sig", "utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be"]


@pytest.mark.parametrize("encoding", [*PROSE, *UNICODE])
def test_text_in_every_encoding_is_text(encoding: str) -> None:
    prose = PROSE.get(encoding, PROSE["utf_8"]) * 40
    data = prose.encode(encoding)
    assert decode_text(data) is not None, encoding
    verdict = decide_type(data, "text/plain", DOCS)
    assert (verdict.reason, verdict.detected) == (None, "text/plain")


@pytest.mark.parametrize("encoding", UNICODE)
def test_a_utf_csv_is_a_csv(encoding: str) -> None:
    data = ("name,city,amount\n" + "Zoë,Köln,3.50\n" * 200).encode(encoding)
    assert decide_type(data, "text/csv", DOCS).reason is None


def test_pandas_style_utf16_csv_with_bom_is_a_csv_not_plain_text() -> None:
    """The issue's first case: puremagic says text/plain for a UTF-16 BOM; the text route decides."""
    data = codecs.BOM_UTF16_LE + "\tname\tvalue\n0\tada\t36\n1\tbob\t41\n".encode("utf-16-le")
    verdict = decide_type(data, "text/csv", DOCS)
    assert (verdict.reason, verdict.detected) == (None, "text/csv")


@pytest.mark.parametrize("data", [
    b"From alice@example.com Mon Jan  1 00:00:00 2024\nSubject: hi\n\nsaved mail\n",  # mbox / git format-patch
    b"From 1a2b3c Mon Sep 17 00:00:00 2001\nFrom: A <a@example.com>\nSubject: [PATCH] fix\n\n---\n",
    b"BM,3 series,2019\nAudi,A4,2020\n",  # a CSV whose first cell starts with BM
    b"GIF89 is a format\n",
    b"PK is the primary key\n",
    b"\x1b[31mERROR\x1b[0m the build failed\n" * 20,  # a terminal log with colours
    samples.EICAR,
])
def test_weak_signatures_that_are_text_stay_text(data: bytes) -> None:
    for declared in ("text/plain", "text/csv"):
        assert decide_type(data, declared, DOCS).reason is None, (declared, data[:20])


def test_a_head_cut_inside_a_multibyte_character_is_still_text() -> None:
    data = ("Grüße, 日本語 " * 6000).encode("utf-8")
    for cut in range(65536, 65540):
        assert decode_text(data[:cut]) is not None, cut
    utf16 = ("name,value\n" + "ada,36\n" * 10000).encode("utf-16")
    assert decide_type(utf16[:65535], "text/csv", DOCS).reason is None


@pytest.mark.parametrize(("data", "reason", "detected"), [
    (bytes(range(256)) * 4, Reason.TYPE_MISMATCH, "application/octet-stream"),
    (b"abc\x00def" * 50, Reason.TYPE_MISMATCH, "application/octet-stream"),
    (samples.png(), Reason.TYPE_NOT_ALLOWED, "image/png"),
    (samples.pdf(), Reason.TYPE_MISMATCH, "application/pdf"),
    (b"intro text\n%PDF-1.7\n1 0 obj << >> endobj\n", Reason.POLYGLOT, "application/pdf"),
    (samples.html(), Reason.ACTIVE_CONTENT, "text/html"),
    ("<html><body onload=go()>hi</body></html>".encode("utf-16"), Reason.ACTIVE_CONTENT, "text/html"),
    (samples.svg_with_script(), Reason.ACTIVE_CONTENT, "image/svg+xml"),
])
def test_what_is_not_harmless_text_is_refused(data: bytes, reason: Reason, detected: str) -> None:
    verdict = decide_type(data, "text/plain", DOCS)
    assert (verdict.reason, verdict.detected) == (reason, detected)


@pytest.mark.parametrize("data", [
    b"<html>\n<head><title>Notes</title></head>\n<body><p>Saved page, no script.</p></body>\n</html>\n",
    b"<p>A snippet of markup in a text file</p>\n",
    "<!DOCTYPE html>\n<html><body><h1>Überschrift</h1></body></html>\n".encode("utf-16"),
    b"The tag <script> starts a script; this sentence is about it, and is text.\n",
])
def test_harmless_markup_in_a_text_file_is_accepted_as_text(data: bytes) -> None:
    verdict = decide_type(data, "text/plain", DOCS)
    assert (verdict.reason, verdict.detected) == (None, "text/plain")


def test_an_html_page_in_a_csv_is_not_a_table() -> None:
    data = "<html>\n<body>\n<p>Hi, there, you</p>\n<p>a</p>\n</body>\n</html>\n".encode("utf-16")
    verdict = decide_type(data, "text/csv", DOCS)
    assert verdict.reason is Reason.CSV_INVALID


@pytest.mark.parametrize(("text", "columns"), [
    ("a,b,c\n1,2,3\n4,5,6\n", 3),
    ("a;b\n1;2\n", 2),
    ("sep=;\na;b\n1;2\n", 2),
    ("name\tage\nada\t36\n", 2),
    ("only\none\ncolumn\n", 1),
    ('a,"multi\nline",c\n1,2,3\n', 3),
    ('a,b\n1,"cut in the mid', 2),  # the head ends inside a quoted field
    ("a,b\n1,2,3\n", None),
    ("version,codename,created,eol\n1.1,Buzz,1993\n12,Bookworm,2023,2026\n", 4),  # trailing empties left out
    ("Report for 2024\nname,amount\nada,3\n", None),
    ('a,b\n"1"x,2\n', None),
])
def test_csv_shape(text: str, columns: int | None) -> None:
    assert csv_columns(text).columns == columns
