from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest

from valet.errors import BadRequest
from valet.grants.naming import MAX_FILENAME_CHARS, blob_name, new_upload_id, parse_upload_id, sanitize_filename

NOW = datetime(2026, 11, 22, 12, 30, 15, 123000, tzinfo=UTC)


def test_upload_id_is_uuid7_carrying_the_issue_time() -> None:
    upload_id = new_upload_id(NOW, os.urandom)
    parsed = uuid.UUID(upload_id)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert parse_upload_id(upload_id) == NOW


def test_upload_ids_differ_in_their_random_bits() -> None:
    ids = {new_upload_id(NOW, os.urandom) for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    "value",
    ["", "not-an-id", str(uuid.uuid4()), "../../etc/passwd", new_upload_id(NOW, os.urandom).upper(), "x" * 5000],
)
def test_foreign_upload_ids_are_rejected(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_upload_id(value)
    assert info.value.code == "invalid_upload_id"


@pytest.mark.parametrize("value", ["ea01d3ac-36be-7017-b9d0-65add90aa1dd", "ffffffff-ffff-7fff-bfff-ffffffffffff"])
def test_a_well_formed_id_dated_after_the_year_9999_is_rejected_not_a_server_error(value: str) -> None:
    # Found by the API fuzzer: a UUIDv7 whose 48-bit timestamp is past datetime's range raised ValueError (500).
    with pytest.raises(BadRequest) as info:
        parse_upload_id(value)
    assert info.value.code == "invalid_upload_id"


def test_blob_name_is_partition_date_id_and_extension() -> None:
    upload_id = new_upload_id(NOW, lambda n: b"\x01" * n)
    assert blob_name("tenant/u-alice", upload_id, "png") == f"tenant/u-alice/2026/11/22/{upload_id}.png"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cat.png", "cat.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("evil\u202egnp.exe", "evilgnp.exe"),  # RTL override removed
        ("tab\tand\nnewline.txt", "tab and newline.txt"),
        ("nul\x00byte.png", "nulbyte.png"),
        ("zero\u200bwidth.png", "zerowidth.png"),
        ("  ..hidden.. ", "hidden"),
        ("CON", "_CON"),
        ("com1.txt", "_com1.txt"),
        ("...", "upload"),
        ("/", "upload"),
        ("e\u0301t\u00e9.png", "\u00e9t\u00e9.png"),  # NFC
        ("日本語.pdf", "日本語.pdf"),
    ],
)
def test_filename_is_sanitized(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_overlong_filename_keeps_its_extension() -> None:
    cleaned = sanitize_filename("a" * 2000 + ".pdf")
    assert len(cleaned) == MAX_FILENAME_CHARS and cleaned.endswith(".pdf")
