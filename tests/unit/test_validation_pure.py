"""Pure parts of validation: type decisions, archive limits, reason mapping, records, id ownership."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from azure.storage.blob import BlobProperties, ImmutabilityPolicy

from tests.support import samples
from valet.grants.naming import bind_upload_id, new_upload_id, upload_id_belongs_to
from valet.grants.policy import ArchiveLimits, Profile
from valet.validation.archive import check_zip
from valet.validation.decision import check_size, check_what_storage_says
from valet.validation.reasons import PUBLIC_REASONS, Outcome, Reason, Rejection, public_reason
from valet.validation.records import Decision, ascii_value
from valet.validation.scanners import DefenderTagScanner, ScanSubject, Verdict
from valet.validation.sniff import decide_type
from valet.validation.store import stored_upload

IMAGES = {"image/png": ("png",), "image/jpeg": ("jpg",), "image/gif": ("gif",)}
DOCS = {"application/pdf": ("pdf",), "text/plain": ("txt",), "text/csv": ("csv",)}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(64)


@pytest.mark.parametrize(
    ("head", "declared", "allowed", "reason", "detected"),
    [
        (samples.png(), "image/png", IMAGES, None, "image/png"),
        (JPEG, "image/jpeg", IMAGES, None, "image/jpeg"),
        (samples.pdf(), "application/pdf", DOCS, None, "application/pdf"),
        (b"name,age\nada,36\n", "text/csv", DOCS, None, "text/csv"),
        (samples.EICAR, "text/plain", DOCS, None, "text/plain"),
        (JPEG, "image/png", IMAGES, Reason.TYPE_MISMATCH, "image/jpeg"),
        (b"MZ\x90\x00" + bytes(64), "image/png", IMAGES, Reason.TYPE_NOT_ALLOWED, None),
        (samples.html(), "image/png", IMAGES, Reason.ACTIVE_CONTENT, "text/html"),
        (b"\xef\xbb\xbf  <html><p>hi", "application/pdf", DOCS, Reason.ACTIVE_CONTENT, "text/html"),
        (samples.svg_with_script(), "image/png", IMAGES, Reason.ACTIVE_CONTENT, "image/svg+xml"),
        (b'<?xml version="1.0"?><svg xmlns="x"><rect/></svg>', "image/png", IMAGES, Reason.ACTIVE_CONTENT,
         "image/svg+xml"),
        (b'<?xml version="1.0"?><note>x</note>', "text/plain", DOCS, Reason.ACTIVE_CONTENT, "application/xml"),
        (b"%PDF-1.7\n1 0 obj << /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>", "application/pdf",
         DOCS, Reason.ACTIVE_CONTENT, "application/pdf"),
        (samples.png() + b"<script>alert(1)</script>", "image/png", IMAGES, Reason.POLYGLOT, "image/png"),
        (b"GIF89a" + bytes(40) + b"%PDF-1.4\n", "image/gif", IMAGES, Reason.POLYGLOT, "image/gif"),
        (bytes(range(256)) * 4, "text/plain", DOCS, Reason.TYPE_MISMATCH, None),
        (b"just some words", "image/png", IMAGES, Reason.TYPE_MISMATCH, None),
    ],
)
def test_type_decision(head: bytes, declared: str, allowed: dict[str, tuple[str, ...]],
                       reason: Reason | None, detected: str | None) -> None:
    verdict = decide_type(head, declared, allowed)
    assert verdict.reason == reason, verdict
    if detected is not None:
        assert verdict.detected == detected


def test_svg_allowed_when_the_profile_lists_it_and_it_has_no_script() -> None:
    allowed = {"image/svg+xml": ("svg",)}
    assert decide_type(b'<svg xmlns="x"><rect/></svg>', "image/svg+xml", allowed).reason is None
    assert decide_type(samples.svg_with_script(), "image/svg+xml", allowed).reason is Reason.ACTIVE_CONTENT


def test_size_checks() -> None:
    profile = Profile("p", 100, {"image/png": ("png",)})
    for size, declared, reason in [(0, 10, Reason.EMPTY), (101, 101, Reason.TOO_LARGE), (50, 60, Reason.SIZE_MISMATCH)]:
        with pytest.raises(Rejection) as info:
            check_size(size, declared, profile)
        assert info.value.reason is reason
    check_size(60, 60, profile)
    check_size(0, 0, Profile("e", 100, {"text/plain": ("txt",)}, allow_empty=True))


def archive_reason(data: bytes, limits: ArchiveLimits) -> Reason | None:
    try:
        check_zip(io.BytesIO(data), len(data), limits)
    except Rejection as rejection:
        return rejection.reason
    return None


def test_archive_limits() -> None:
    limits = ArchiveLimits(max_entries=3, max_total_bytes=10 * 1024 * 1024, max_ratio=100)
    assert archive_reason(samples.zip_file({"a": b"a" * 1000, "b": b"b"}), limits) is None
    assert archive_reason(samples.zip_file({str(i): b"x" for i in range(4)}), limits) is Reason.ARCHIVE_TOO_MANY_ENTRIES
    assert archive_reason(samples.zip_bomb(4), limits) is Reason.ARCHIVE_RATIO
    big = ArchiveLimits(max_entries=3, max_total_bytes=2 * 1024 * 1024, max_ratio=10_000)
    assert archive_reason(samples.zip_bomb(4), big) is Reason.ARCHIVE_TOO_LARGE
    assert archive_reason(b"PK\x03\x04 not really a zip", limits) is Reason.ARCHIVE_INVALID


def test_overlapping_entries_are_a_bomb() -> None:
    data = bytearray(samples.zip_file({"a": b"A" * 100, "b": b"B" * 100}))
    # Point the second central-directory entry at the first entry's local header.
    first_cd = data.find(b"PK\x01\x02")
    second_cd = data.find(b"PK\x01\x02", first_cd + 4)
    data[second_cd + 42 : second_cd + 46] = (0).to_bytes(4, "little")
    assert archive_reason(bytes(data), ArchiveLimits()) is Reason.ARCHIVE_OVERLAP


def test_every_reason_has_a_public_code_and_secrets_of_detection_stay_coarse() -> None:
    assert set(PUBLIC_REASONS) == set(Reason)
    assert public_reason("active_content") == public_reason("polyglot") == "content_not_allowed"
    assert public_reason("bad_grant") == public_reason("missing_grant") == "grant_invalid"
    assert public_reason("size_mismatch") == "size_mismatch"
    assert public_reason("something_new") == "rejected"


def test_record_round_trips_through_ascii_metadata() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    decision = Decision(Outcome.QUARANTINED, "type_mismatch", "declared image/png", "id-1", "iss#Zoë\n",
                        now, size=12, granted_at=now)
    meta = decision.metadata()
    assert all(v.isascii() and "\n" not in v for v in meta.values())
    back = Decision.from_metadata(meta, fallback=Outcome.ACCEPTED)
    assert (back.caller, back.size, back.decided_at, back.granted_at) == ("iss#Zoë\n", 12, now, now)
    assert ascii_value("x" * 2000) == "x" * 512


def test_defender_tag_verdicts() -> None:
    scanner = DefenderTagScanner()
    def subject(tags: dict[str, str]) -> ScanSubject:
        return ScanSubject("c", "n", 1, tags, b"")
    assert scanner.scan(subject({})) is None
    assert scanner.scan(subject({"Malware Scanning scan result": "No threats found"})).verdict is Verdict.CLEAN  # type: ignore[union-attr]
    assert scanner.scan(subject({"Malware Scanning scan result": "Malicious"})).verdict is Verdict.MALICIOUS  # type: ignore[union-attr]
    assert scanner.scan(subject({"Malware Scanning scan result": "Scan aborted"})).verdict is Verdict.MALICIOUS  # type: ignore[union-attr]
    assert scanner.scan(subject({"MALWARE SCANNING SCAN RESULT": "Malicious"})).verdict is Verdict.MALICIOUS  # type: ignore[union-attr]


def test_upload_ids_are_bound_to_their_caller() -> None:
    key = b"k" * 32
    plain = new_upload_id(datetime(2026, 1, 1, tzinfo=UTC), lambda n: bytes(range(n)))
    bound = bind_upload_id(plain, key, "t/u-alice")
    assert bound[:20] == plain[:20] and bound[14] == "7"
    assert upload_id_belongs_to(bound, key, "t/u-alice")
    assert not upload_id_belongs_to(bound, key, "t/u-bob")
    assert not upload_id_belongs_to(bound, b"x" * 32, "t/u-alice")


def test_weak_candidates_do_not_count_only_the_best_ranked() -> None:
    from tests.adversarial.test_2_weak_magic import WAVE

    verdict = decide_type(WAVE, "image/webp", {"image/webp": ("webp",)})
    assert verdict.reason is Reason.TYPE_NOT_ALLOWED and verdict.detected == "audio/wave"
    zip_head = samples.zip_file({"a.txt": b"x"})
    assert decide_type(zip_head, "application/zip", {"application/zip": ("zip",)}).reason is None


def test_seals_bind_the_path_and_every_value_and_rotate_with_the_grant_keys() -> None:
    from valet.grants.token import GrantKeyRing
    from valet.validation.trusted import SEAL, Sealer, reserved_metadata

    old, new = b"o" * 32, b"n" * 32
    before = Sealer(GrantKeyRing({"old": old}, "old"))
    sealed = before.seal("uploads", "a/b.png", {"valetstate": "tombstone", "valetoutcome": "quarantined"})
    assert before.verify("uploads", "a/b.png", sealed)
    assert before.verify("uploads", "a/b.png", {k.title(): v for k, v in sealed.items()})  # names in any case
    assert not before.verify("uploads", "a/c.png", sealed)
    assert not before.verify("other", "a/b.png", sealed)
    assert not before.verify("uploads", "a/b.png", {**sealed, "valetoutcome": "accepted"})
    assert not before.verify("uploads", "a/b.png", {**sealed, "valetextra": "1"})
    assert not before.verify("uploads", "a/b.png", {**sealed, SEAL: "v1.old.AAAA"})
    assert not before.verify("uploads", "a/b.png", {k: v for k, v in sealed.items() if k != SEAL})
    rotated = Sealer(GrantKeyRing({"new": new, "old": old}, "new"))
    assert rotated.verify("uploads", "a/b.png", sealed)  # old seals verify during a rotation
    assert not Sealer(GrantKeyRing({"new": new}, "new")).verify("uploads", "a/b.png", sealed)
    assert reserved_metadata({"valetgrant": "t", "ValetGrant": "t", "other": "x"}) == []
    assert reserved_metadata({"valetgrant": "t", "X-Valet": "x", "VALETSTATE": "tombstone"}) == ["VALETSTATE"]


@pytest.mark.parametrize(("name", "safe"), [
    ("a/b/c.txt", True), ("a..b.txt", True), ("dir/", True), ("../x", False), ("a/../../x", False),
    ("/etc/passwd", False), ("C:/x", False), ("c:x", False), ("a\\b", False), ("a\x00b", False),
])
def test_archive_entry_names(name: str, safe: bool) -> None:
    from valet.validation.archive import check_name

    if safe:
        check_name(name)
    else:
        with pytest.raises(Rejection) as caught:
            check_name(name)
        assert caught.value.reason is Reason.ARCHIVE_UNSAFE_NAME


def _props(**attrs: object) -> BlobProperties:
    props = BlobProperties()
    for name, value in attrs.items():
        setattr(props, name, value)
    return props


@pytest.mark.parametrize(("attrs", "reason"), [
    ({"blob_tier": "Archive"}, Reason.UNREADABLE),
    ({"blob_tier": "Hot", "archive_status": "rehydrate-pending-to-hot"}, Reason.UNREADABLE),
    ({"encryption_key_sha256": "c2hh"}, Reason.UNREADABLE),
    ({"has_legal_hold": True}, Reason.RETENTION_SET),
    ({"immutability_policy": ImmutabilityPolicy(expiry_time=datetime(2030, 1, 1, tzinfo=UTC),
                                                policy_mode="Unlocked")}, Reason.RETENTION_SET),
    ({"blob_tier": "Cool"}, None),
    ({"blob_tier": "Cold"}, None),
    ({"encryption_scope": "client-chosen"}, None),
])
def test_properties_a_client_sets_at_creation_are_decided(attrs: dict[str, object], reason: Reason | None) -> None:
    """Issue 24 item 2: each property a create-only PUT can set is either harmless to the decision or
    quarantined with its own reason (see docs/validation.md, "Properties set at creation")."""
    props = _props(metadata={}, **attrs)
    if reason is None:
        check_what_storage_says(stored_upload("uploads", props, b"", {}))
        return
    with pytest.raises(Rejection) as caught:
        check_what_storage_says(stored_upload("uploads", props, b"", {}))
    assert caught.value.reason is reason
    assert public_reason(reason.value) == "properties_not_allowed"
