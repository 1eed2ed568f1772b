"""The pure decision, case by case: every reason in ``valet/validation/reasons.py`` comes out of
:func:`valet.validation.decision.decide` (or, for the two that no upload check gives, out of the code
that does), without storage. Real grant names and grant headers (real HMACs, real JWS), real bytes."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support import samples
from valet.grants.naming import granted_blob_name, new_upload_id
from valet.grants.policy import Policy
from valet.grants.token import GRANT_METADATA_KEY, GrantClaims, GrantKeyRing
from valet.validation.decision import CopyFacts, Rules, StoredUpload, cancelled, decide, tombstone_until
from valet.validation.reasons import PUBLIC_REASONS, Outcome, Reason, public_reason
from valet.validation.records import Decision
from valet.validation.scanners import DEFENDER_TAG, DefenderTagScanner, ScanResult, Verdict

NOW = datetime.now(UTC).replace(microsecond=0)
SKEW = timedelta(seconds=300)
RING = GrantKeyRing({"k1": b"1" * 32}, "k1")
OTHER_RING = GrantKeyRing({"k9": b"9" * 32}, "k9")
POLICY = Policy.from_document({"profiles": {
    "images": {"maxBytes": 1_000_000, "types": {"image/png": ["png"], "image/jpeg": ["jpg"]}},
    "documents": {"maxBytes": 1_000_000, "types": {"application/pdf": ["pdf"], "text/plain": ["txt"]}},
    "notes": {"maxBytes": 100, "types": {"text/plain": ["txt"]}},
    "archives": {"maxBytes": 10_000_000, "types": {"application/zip": ["zip"]}},
    "tight": {"maxBytes": 10_000_000, "types": {"application/zip": ["zip"]},
              "archive": {"maxEntries": 3, "maxTotalBytes": 10_000, "maxRatio": 100}},
    "roomy": {"maxBytes": 10_000_000, "types": {"application/zip": ["zip"]},
              "archive": {"maxEntries": 10, "maxTotalBytes": 1_000_000, "maxRatio": 100_000}},
    "gone": {"maxBytes": 100, "types": {"text/plain": ["txt"]}},
}}, setting="test")
WITHOUT_GONE = Policy(default="images", profiles={k: v for k, v in POLICY.profiles.items() if k != "gone"})
RULES = Rules(keys=RING, policy=POLICY, clock_skew=SKEW)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(64)
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "application/pdf": "pdf", "text/plain": "txt",
              "application/zip": "zip"}


class InMemory:
    """The upload's bytes for range reads, as the storage side's pinned blob serves them."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: object) -> object:
        start = offset or 0
        chunk = self.data[start:start + length] if length is not None else self.data[start:]
        return type("Range", (), {"readall": lambda _self: chunk})()


@dataclass
class Case:
    data: bytes
    content_type: str = "image/png"  # declared in the grant
    profile: str = "images"
    declared_size: int | None = None  # default: the data's length
    sha256: str | None = None  # declared: the grant then needs its header
    header: bool = False
    header_blob: str | None = None  # the blob the header was issued for (default: this one)
    ring: GrantKeyRing = RING  # the key ring that signed the name
    name: str | None = None  # default: a granted name
    metadata: dict[str, str] = field(default_factory=dict)
    stored_type: str | None = None
    created_late: bool = False
    copy: CopyFacts = field(default_factory=CopyFacts)
    tags: dict[str, str] = field(default_factory=dict)
    verdict: ScanResult | None = None
    unreadable: str | None = None
    retention: str | None = None
    rules: dict[str, Any] = field(default_factory=dict)
    sniff: int = 64 * 1024


def upload(case: Case) -> tuple[StoredUpload, InMemory, Rules]:
    size = len(case.data) if case.declared_size is None else case.declared_size
    kid = case.ring.active
    name = case.name or granted_blob_name(
        partition="tenant/u-alice", upload_id=new_upload_id(NOW, os.urandom), profile=case.profile, size=size,
        deadline=NOW + timedelta(minutes=3), sha256_declared=case.sha256 is not None, content_type=case.content_type,
        extension=EXTENSIONS[case.content_type], container="uploads", kid=kid, key=case.ring.key(kid) or b"")
    metadata = dict(case.metadata)
    if case.header:
        upload_id = name.rsplit("/", 1)[-1].split(".", 1)[0]
        metadata[GRANT_METADATA_KEY] = RING.sign(GrantClaims(
            upload_id=upload_id, container="uploads", blob=case.header_blob or name, size=size,
            content_type=case.content_type, sha256=case.sha256, profile=case.profile,
            caller="https://issuer#alice", filename="a", issued_at=NOW, expires_at=NOW + timedelta(minutes=3)))
    created = NOW + timedelta(minutes=3) + SKEW + timedelta(seconds=1) if case.created_late else NOW
    stored = StoredUpload(container="uploads", name=name, size=len(case.data), head=case.data[:case.sniff],
                          metadata=metadata, content_type=case.stored_type, created_at=created, copy=case.copy,
                          tags=case.tags, unreadable=case.unreadable, retention=case.retention)
    rules = Rules(**{"keys": RING, "policy": POLICY, "clock_skew": SKEW, **case.rules})
    return stored, InMemory(case.data), rules


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return out.getvalue()


def hidden_entry() -> bytes:
    """The central directory lists only the first of two local entries."""
    data = zip_bytes({"a.txt": b"hello", "payload.bin": bytes(4096)})
    start = zipfile.ZipFile(io.BytesIO(data)).start_dir
    directory = data[start:]
    name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, 28)
    first = directory[:46 + name_len + extra_len + comment_len]
    return data[:start] + first + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(first), start, 0)


def local_name_differs() -> bytes:
    data = zip_bytes({"a.txt": b"hello", "readme.txt": b"x"})
    at = data.index(b"readme.txt")
    return data[:at] + b"readme.exe" + data[at + len(b"readme.txt"):]


def overlapping() -> bytes:
    data = bytearray(samples.zip_file({"a": b"A" * 100, "b": b"B" * 100}))
    first = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", first + 4)
    data[second + 42:second + 46] = (0).to_bytes(4, "little")
    return bytes(data)


def big_pdf() -> bytes:
    """A valid PDF whose cross-reference table sits beyond a small head and a small read budget."""
    return samples.pdf_from([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>",
                             b"<< /Filler (" + b"x" * 20_000 + b") >>"])


PNG = samples.png()
MALICIOUS = ScanResult("defender-event", Verdict.MALICIOUS, "Malicious")
CASES: list[tuple[str, Case, Reason]] = [
    ("ok_png", Case(PNG), Reason.OK),
    ("ok_pdf_with_header_and_sha256", Case(samples.pdf(), "application/pdf", "documents",
                                           sha256=hashlib.sha256(samples.pdf()).hexdigest(), header=True), Reason.OK),
    ("ok_zip", Case(zip_bytes({"a/b.txt": b"hi" * 500}), "application/zip", "archives"), Reason.OK),
    ("no_grant_at_all", Case(PNG, name="tenant/u-alice/2026/12/06/plain.png"), Reason.MISSING_GRANT),
    ("sha256_declared_without_header", Case(PNG, sha256="0" * 64), Reason.MISSING_GRANT),  # the header carries it
    ("name_signed_by_an_unknown_key", Case(PNG, ring=OTHER_RING), Reason.BAD_GRANT),
    ("header_for_another_blob", Case(PNG, header=True, header_blob="tenant/u-alice/other.png"), Reason.PATH_MISMATCH),
    ("created_after_the_window", Case(PNG, created_late=True), Reason.GRANT_EXPIRED),
    ("profile_no_longer_configured", Case(b"hello", "text/plain", "gone", rules={"policy": WITHOUT_GONE}),
     Reason.UNKNOWN_PROFILE),
    ("empty", Case(b""), Reason.EMPTY),
    ("over_the_profile_cap", Case(b"words " * 40, "text/plain", "notes"), Reason.TOO_LARGE),
    ("not_the_declared_size", Case(PNG, declared_size=len(PNG) + 1), Reason.SIZE_MISMATCH),
    ("stored_content_type_differs", Case(PNG, stored_type="image/jpeg"), Reason.CONTENT_TYPE_MISMATCH),
    ("an_executable", Case(b"MZ\x90\x00" + bytes(64)), Reason.TYPE_NOT_ALLOWED),
    ("a_jpeg_declared_png", Case(JPEG), Reason.TYPE_MISMATCH),
    ("html", Case(samples.html()), Reason.ACTIVE_CONTENT),
    ("png_with_a_script", Case(PNG + b"<script>alert(1)</script>"), Reason.POLYGLOT),
    ("truncated_png", Case(PNG[:40]), Reason.IMAGE_INVALID),
    ("png_bomb_header", Case(png_declaring(100_000, 100_000)), Reason.IMAGE_LIMITS),
    ("pdf_that_does_not_parse", Case(b"%PDF-1.7\n" + b"\x00garbage" * 50, "application/pdf", "documents"),
     Reason.PDF_INVALID),
    ("pdf_beyond_the_read_budget", Case(big_pdf(), "application/pdf", "documents", sniff=4096,
                                        rules={"structure_read_bytes": 1024}), Reason.PDF_UNVERIFIABLE),
    ("app_metadata_from_the_client", Case(PNG, metadata={"valetoutcome": "accepted"}), Reason.RESERVED_METADATA),
    ("made_by_copy_blob", Case(PNG, copy=CopyFacts(id="c1", source="https://elsewhere/x", status="success")),
     Reason.COPY_CREATED),
    ("archive_tier_or_customer_key", Case(PNG, unreadable="access tier Archive (offline)"), Reason.UNREADABLE),
    ("legal_hold", Case(PNG, retention="legal hold set"), Reason.RETENTION_SET),
    ("sha256_differs", Case(PNG, sha256="0" * 64, header=True), Reason.SHA256_MISMATCH),
    ("not_a_zip", Case(b"PK\x03\x04 not really a zip", "application/zip", "archives"), Reason.ARCHIVE_INVALID),
    ("too_many_entries", Case(samples.zip_file({str(i): b"x" for i in range(4)}), "application/zip", "tight"),
     Reason.ARCHIVE_TOO_MANY_ENTRIES),
    ("expands_beyond_the_total", Case(samples.zip_bomb(4), "application/zip", "roomy"), Reason.ARCHIVE_TOO_LARGE),
    ("zip_bomb", Case(samples.zip_bomb(4), "application/zip", "archives"), Reason.ARCHIVE_RATIO),
    ("entries_share_bytes", Case(overlapping(), "application/zip", "archives"), Reason.ARCHIVE_OVERLAP),
    ("hidden_entry", Case(hidden_entry(), "application/zip", "archives"), Reason.ARCHIVE_GAP),
    ("local_header_disagrees", Case(local_name_differs(), "application/zip", "archives"), Reason.ARCHIVE_MISMATCH),
    ("path_traversal_entry", Case(zip_bytes({"ok.txt": b"x", "../../etc/cron.d/evil": b"evil"}), "application/zip",
                                  "archives"), Reason.ARCHIVE_UNSAFE_NAME),
    ("verdict_out_of_band", Case(PNG, verdict=MALICIOUS), Reason.MALWARE),
    ("defender_tag", Case(PNG, tags={DEFENDER_TAG: "Malicious"}, rules={"scanners": (DefenderTagScanner(),)}),
     Reason.MALWARE),
]
# Reasons no upload check gives: a cancel's record, and a reason only records older than 2026-12-01 carry.
NOT_FROM_CHECKS = {Reason.CANCELLED, Reason.SNAPSHOT_PRESENT}


def decided(case: Case) -> Decision:
    stored, content, rules = upload(case)
    return decide(stored, content, rules, NOW, case.verdict)


@pytest.mark.parametrize(("case", "reason"), [(c, r) for _, c, r in CASES], ids=[i for i, _, _ in CASES])
def test_decision(case: Case, reason: Reason) -> None:
    decision = decided(case)
    assert (decision.reason, decision.outcome) == (
        reason.value, Outcome.ACCEPTED if reason is Reason.OK else Outcome.QUARANTINED), decision.detail
    assert decision.decided_at == NOW and decision.size == len(case.data)


def test_every_reason_has_a_case() -> None:
    assert {r for _, _, r in CASES} | NOT_FROM_CHECKS == set(Reason)


def test_a_rejection_keeps_what_was_learnt_before_it() -> None:
    decision = decided(Case(JPEG))
    assert (decision.profile, decision.declared_type, decision.detected_type) == ("images", "image/png", "image/jpeg")
    assert decision.caller == "tenant/u-alice" and decision.upload_id and decision.grant_expires is not None
    assert decided(Case(PNG, name="tenant/u-alice/2026/12/06/plain.png")).caller == ""  # nothing to learn from


def test_a_declared_sha256_is_recorded_when_it_matches() -> None:
    digest = hashlib.sha256(PNG).hexdigest()
    assert decided(Case(PNG, sha256=digest, header=True)).sha256 == digest


def test_the_reasons_no_check_gives() -> None:
    record = cancelled("u1", "alice", NOW)
    assert (record.outcome, record.reason) == (Outcome.CANCELLED, Reason.CANCELLED.value)
    old = Decision.from_metadata({"valetoutcome": "quarantined", "valetreason": "snapshot_present"},
                                 fallback=Outcome.QUARANTINED)
    assert old.reason == Reason.SNAPSHOT_PRESENT.value
    assert public_reason(old.reason) == PUBLIC_REASONS[Reason.SNAPSHOT_PRESENT]


def test_the_tombstone_holds_the_name_until_the_sas_cannot_be_used() -> None:
    grace, ttl = timedelta(minutes=15), timedelta(minutes=3)
    trusted = decided(Case(PNG))
    assert trusted.grant_expires is not None
    assert tombstone_until(trusted, NOW, NOW, sas_ttl=ttl, grace=grace) == trusted.grant_expires + grace
    untrusted = decided(Case(PNG, ring=OTHER_RING))
    created = NOW - timedelta(minutes=1)
    assert tombstone_until(untrusted, created, NOW, sas_ttl=ttl, grace=grace) == created + ttl + grace
