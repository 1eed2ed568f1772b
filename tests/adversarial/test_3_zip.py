"""Attack 3: zips the archive checks skipped or believed.

Before the fix the limits ran only when the detected type was exactly ``application/zip`` (puremagic
ranks a plain zip as DOCX, EPUB, JAR... alike), so a zip bomb declared ``application/octet-stream`` in the
``large`` profile was accepted; and only the central directory was read, so an entry left out of it
(streaming unzippers still extract it) or a listed ``../../etc/cron.d/evil`` passed."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable

import pytest
from azure.storage.blob import BlobServiceClient

from tests.integration.test_validation import Upload, assert_quarantined, upload
from tests.support import samples
from valet.validation.reasons import Outcome

pytestmark = pytest.mark.azurite


def zip_bytes(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return out.getvalue()


def without_last_directory_record(data: bytes) -> bytes:
    """The same local entries, but the central directory lists only the first one: the second (64 KiB of
    deflated zeros here, 64 MiB in the issue) is still extracted by streaming unzippers."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    start = archive.start_dir
    directory = data[start:]
    name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, 28)
    first = directory[:46 + name_len + extra_len + comment_len]
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(first), start, 0)
    return data[:start] + first + end


def with_local_name(data: bytes, old: bytes, new: bytes) -> bytes:
    """Rename an entry in its local header only (same length), so local and central records disagree."""
    at = data.index(old)  # the first occurrence is in the local header (the directory comes last)
    return data[:at] + new + data[at + len(old):]


def docx_like() -> bytes:
    return zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})


def test_zip_bomb_declared_octet_stream_in_the_large_profile(grant: Callable[..., Upload],
                                                             blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.zip_bomb(32), filename="z.bin", contentType="application/octet-stream",
                profile="large")
    assert_quarantined(up, blob_service, "archive_ratio")


def test_hidden_entry_missing_from_the_directory(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = without_last_directory_record(zip_bytes({"a.txt": b"hello", "payload.bin": bytes(64 * 1024)}))
    assert [i.filename for i in zipfile.ZipFile(io.BytesIO(data)).infolist()] == ["a.txt"]  # what zipfile sees
    up = upload(grant, data, filename="a.zip", contentType="application/zip", profile="archives")
    assert_quarantined(up, blob_service, "archive_gap")


@pytest.mark.parametrize("name", ["../../etc/cron.d/evil", "/etc/passwd", "C:/Windows/evil.dll",
                                  "dir\\..\\evil.txt", "a/../../b"])
def test_unsafe_entry_names(name: str, grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = upload(grant, zip_bytes({"ok.txt": b"x", name: b"evil"}), filename="a.zip", contentType="application/zip",
                profile="archives")
    assert_quarantined(up, blob_service, "archive_unsafe_name")


def test_local_header_disagreeing_with_the_directory(grant: Callable[..., Upload],
                                                     blob_service: BlobServiceClient) -> None:
    data = with_local_name(zip_bytes({"a.txt": b"hello", "readme.txt": b"x"}), b"readme.txt", b"readme.exe")
    up = upload(grant, data, filename="a.zip", contentType="application/zip", profile="archives")
    assert_quarantined(up, blob_service, "archive_mismatch")


def test_bytes_prepended_to_a_zip(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    """A self-extracting archive (or any prefix) leaves bytes no entry covers."""
    data = b"MZ" + bytes(510) + zip_bytes({"a.txt": b"hello"})
    up = upload(grant, data, filename="a.zip", contentType="application/zip", profile="archives")
    assert up.decide().outcome is Outcome.QUARANTINED


def test_zip_containers_of_other_names_are_checked_too(grant: Callable[..., Upload],
                                                       blob_service: BlobServiceClient) -> None:
    data = without_last_directory_record(zip_bytes({"[Content_Types].xml": b"<Types/>", "hidden.bin": bytes(4096)}))
    up = upload(grant, data, filename="a.docx", contentType="application/octet-stream", profile="large")
    assert_quarantined(up, blob_service, "archive_gap")


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_honest_zips_still_pass(method: int, grant: Callable[..., Upload]) -> None:
    for data, profile, declared in ((zip_bytes({"a/b.txt": b"hi" * 500, "c.txt": b""}, method), "archives",
                                     "application/zip"),
                                    (docx_like(), "large", "application/octet-stream")):
        up = upload(grant, data, filename="a.zip", contentType=declared, profile=profile)
        decision = up.decide()
        assert (decision.outcome, decision.reason) == (Outcome.ACCEPTED, "ok"), decision.detail


def test_streamed_zip_with_data_descriptors_passes(grant: Callable[..., Upload]) -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.data += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("s.txt", "w") as entry:
            entry.write(b"y" * 5000)
        with archive.open("t.txt", "w", force_zip64=True) as entry:
            entry.write(b"z" * 5000)
    up = upload(grant, bytes(sink.data), filename="s.zip", contentType="application/zip", profile="archives")
    assert up.decide().outcome is Outcome.ACCEPTED
