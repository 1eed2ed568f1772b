"""Attack 2: bytes that only *start* like the granted type, and PDFs that act on their own.

Before the fix, any candidate puremagic listed, at any confidence, matched: ``\\xff\\xd8<?php ...`` passed as
``image/jpeg``, ``RIFF....WAVE`` as ``image/webp``, an EXE with ``PKSpX`` at offset 526 as
``application/zip``; a PDF whose ``/OpenAction`` launches a program, or whose ``/S /J#61vaScript`` hides
the name behind a ``#xx`` escape, was accepted."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable

import pytest
from azure.storage.blob import BlobServiceClient

from tests.integration.test_validation import Upload, assert_quarantined, upload
from tests.support import samples
from valet.runtime import Runtime
from valet.validation.reasons import Outcome
from valet.validation.structure import ImageLimits, check_structure

pytestmark = pytest.mark.azurite

PHP_JPEG = b"\xff\xd8<?php system($_GET['c']); ?>" + b" " * 64
WAVE = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x44\xac\x00\x00" + bytes(64)


def exe_with_zip_marker() -> bytes:
    """A Windows executable with a real zip appended (a self-extracting archive): ``zipfile`` opens it."""
    exe = bytearray(b"MZ" + bytes(2046))
    exe[526:531] = b"PKSpX"  # puremagic's "self-extracting zip" signature, its best-ranked match here
    return bytes(exe) + samples.zip_file({"readme.txt": b"hello"})


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header for a huge canvas (a decompression bomb's shape), with a tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


CATALOG_PAGES = b"<< /Type /Pages /Kids [] /Count 0 >>"
ACTIVE_PDFS = {
    "open_action_launch": samples.pdf_from([
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction << /S /Launch /F (cmd.exe) >> >>", CATALOG_PAGES]),
    "escaped_javascript_name": samples.pdf_from([
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >>", CATALOG_PAGES,
        b"<< /S /J#61vaScript /J#53 (app.alert(1)) >>"]),
    "additional_actions": samples.pdf_from([
        b"<< /Type /Catalog /Pages 2 0 R /A#41 << /WC << /S /URI /URI (x) >> >> >>", CATALOG_PAGES]),
    "embedded_file": samples.pdf_from([
        b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles 3 0 R >> >>", CATALOG_PAGES,
        b"<< /Names [(a.exe) 4 0 R] >>", b"<< /Type /Filespec /F (a.exe) >>"]),
    "unreachable_launch_object": samples.pdf_from([
        b"<< /Type /Catalog /Pages 2 0 R >>", CATALOG_PAGES, b"<< /S /Launch /F (calc.exe) >>"]),
}


def pdf_with_object_stream(action: bytes) -> bytes:
    """A PDF 1.5 file whose action dictionary lives compressed inside an object stream, with an xref
    stream: the action's name is never visible in the file's bytes."""
    inner = action
    objstm_data = b"3 0 " + inner
    objstm = zlib.compress(objstm_data)
    out, offsets = b"%PDF-1.7\n", {}
    offsets[1] = len(out)
    out += b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >>\nendobj\n"
    offsets[2] = len(out)
    out += b"2 0 obj\n" + CATALOG_PAGES + b"\nendobj\n"
    offsets[4] = len(out)
    out += (b"4 0 obj\n<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length %d >>\nstream\n" % len(objstm)
            + objstm + b"\nendstream\nendobj\n")
    offsets[5] = len(out)
    rows = [b"\x00" + struct.pack(">I", 0) + b"\xff\xff", b"\x01" + struct.pack(">I", offsets[1]) + b"\x00\x00",
            b"\x01" + struct.pack(">I", offsets[2]) + b"\x00\x00", b"\x02" + struct.pack(">I", 4) + b"\x00\x00",
            b"\x01" + struct.pack(">I", offsets[4]) + b"\x00\x00", b"\x01" + struct.pack(">I", offsets[5]) + b"\x00\x00"]
    xref = zlib.compress(b"".join(rows))
    out += (b"5 0 obj\n<< /Type /XRef /Size 6 /W [1 4 2] /Root 1 0 R /Filter /FlateDecode /Length %d >>\nstream\n"
            % len(xref) + xref + b"\nendstream\nendobj\n")
    out += b"startxref\n%d\n%%%%EOF\n" % offsets[5]
    return out


@pytest.mark.parametrize(("data", "declared", "profile", "reason"), [
    (PHP_JPEG, "image/jpeg", "images", "image_invalid"),
    (WAVE, "image/webp", "images", "type_not_allowed"),
    (exe_with_zip_marker(), "application/zip", "archives", "archive_gap"),
    (png_declaring(100_000, 100_000), "image/png", "images", "image_limits"),
    (samples.png()[:40], "image/png", "images", "image_invalid"),  # signature and a truncated IHDR
], ids=["php_as_jpeg", "wave_as_webp", "exe_as_zip", "png_bomb_header", "truncated_png"])
def test_a_prefix_is_not_a_format(data: bytes, declared: str, profile: str, reason: str,
                                  grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = upload(grant, data, filename="x", contentType=declared, profile=profile)
    assert_quarantined(up, blob_service, reason)


@pytest.mark.parametrize("name", sorted(ACTIVE_PDFS))
def test_pdf_active_content_is_found_after_parsing(name: str, grant: Callable[..., Upload],
                                                   blob_service: BlobServiceClient) -> None:
    up = upload(grant, ACTIVE_PDFS[name], filename="a.pdf", contentType="application/pdf", profile="documents")
    assert_quarantined(up, blob_service, "active_content")


def test_pdf_javascript_inside_an_object_stream(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = pdf_with_object_stream(b"<< /S /JavaScript /JS (app.alert(1)) >>")
    assert b"JavaScript" not in data
    up = upload(grant, data, filename="a.pdf", contentType="application/pdf", profile="documents")
    assert_quarantined(up, blob_service, "active_content")
    benign = pdf_with_object_stream(b"<< /S /GoTo /D [0 /Fit] >>")
    up = upload(grant, benign, filename="b.pdf", contentType="application/pdf", profile="documents")
    assert up.decide().outcome is Outcome.ACCEPTED  # the same structure without an action passes


def test_a_pdf_that_does_not_parse(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = upload(grant, b"%PDF-1.7\n" + b"\x00garbage" * 50, filename="a.pdf", contentType="application/pdf",
                profile="documents")
    decision = up.decide()
    assert (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "pdf_invalid")


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "WEBP"])
def test_real_images_of_every_allowed_type_are_accepted(kind: str, grant: Callable[..., Upload]) -> None:
    up = upload(grant, samples.image(kind, 64, 48), filename="a", contentType=f"image/{kind.lower()}")
    decision = up.decide()
    assert (decision.outcome, decision.reason) == (Outcome.ACCEPTED, "ok"), decision.detail


class Counting:
    """An in-memory range source that counts the requests a check makes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.requests = data, 0

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: object) -> object:
        self.requests += 1
        chunk = self.data[offset or 0:(offset or 0) + (length or 0)]
        return type("R", (), {"readall": lambda _self: chunk})()


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "WEBP"])
def test_image_checks_read_nothing_beyond_the_head(kind: str) -> None:
    """The structure check of an ordinary image is served from the 64 KiB head already read."""
    data = samples.image(kind, 640, 480) + bytes(200_000)  # trailing bytes that must never be fetched
    source = Counting(data)
    report = check_structure(source, len(data), data[:65536], f"image/{kind.lower()}", ImageLimits())
    assert (report.requests, report.bytes_read, source.requests) == (0, 0, 0)
    assert report.detail.endswith("640x480")


def many_pages(pages: int, *, link_script: bool = False) -> bytes:
    """A pypdf-written PDF with a content stream per page; optionally one page's link runs JavaScript."""
    import io
    import os

    from pypdf import PdfWriter
    from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, TextStringObject

    writer = PdfWriter()
    for number in range(pages):
        page = writer.add_blank_page(612, 792)
        content = DecodedStreamObject()
        content.set_data(os.urandom(4000))
        page[NameObject("/Contents")] = writer._add_object(content)
        if link_script and number == pages - 1:
            action = DictionaryObject({NameObject("/S"): NameObject("/JavaScript"),
                                       NameObject("/JS"): TextStringObject("app.alert(1)")})
            link = DictionaryObject({NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Link"),
                                     NameObject("/Rect"): ArrayObject(), NameObject("/A"): writer._add_object(action)})
            page[NameObject("/Annots")] = ArrayObject([writer._add_object(link)])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdfs_larger_than_the_read_budget_are_walked_from_the_trailer(
        grant: Callable[..., Upload], runtime: Runtime, valet_env: dict[str, str]) -> None:
    """With a 64 KiB budget, a ~330 KiB PDF is not held: its catalog, pages and annotations are walked
    in 1 KiB ranges, its content streams never read."""
    from tests.integration.test_validation import PROFILES
    from valet.settings import Settings
    from valet.validation.service import Validation

    small = Validation.from_settings(Settings.from_env({**valet_env, "VALET_PROFILES": json.dumps(PROFILES),
                                                        "VALET_STRUCTURE_READ_BYTES": "65536"}),
                                     runtime.blob_service)
    for data, outcome in ((many_pages(80), Outcome.ACCEPTED), (many_pages(80, link_script=True), Outcome.QUARANTINED)):
        assert len(data) > 4 * 65536
        up = upload(grant, data, filename="a.pdf", contentType="application/pdf", profile="documents")
        decision = small.validator.process(up.name)
        assert decision is not None and decision.outcome is outcome, decision
