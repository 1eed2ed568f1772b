"""The audit record (pure): its line, what it refuses to carry, the filters and the blob layout."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.fakes import ALICE
from valet.audit import records
from valet.audit.records import Actor, AuditRecord
from valet.auth import apikeys

AT = datetime(2026, 12, 6, 20, 15, 3, 123456, tzinfo=UTC)
SAS = "https://acct.blob.core.windows.net/u/a.png?sv=2026-10-06&sr=b&sp=c&sig=abc%2Bdef%3D"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def test_a_record_is_one_ascii_json_line_with_who_what_when() -> None:
    entry = AuditRecord(at=AT, action="grant", actor=Actor.of(ALICE, "203.0.113.9"), upload_id="u1",
                        data={"profile": "images", "size": 12}, instance="i1", seq=7)
    line = entry.line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    doc = json.loads(line)
    assert doc["at"] == "2026-12-06T20:15:03.123Z" and doc["action"] == "grant" and doc["uploadId"] == "u1"
    assert doc["actor"] == {"caller": ALICE.id, "kind": "bearer", "tenant": ALICE.tenant,
                            "subject": ALICE.subject, "clientIp": "203.0.113.9"}
    assert doc["data"] == {"profile": "images", "size": 12} and doc["src"] == {"instance": "i1", "seq": 7}


@pytest.mark.parametrize("secret", [SAS, "sig=abcdef", JWT, "Bearer abcdefghijklmnop", apikeys.generate()[0],
                                    "DefaultEndpointsProtocol=https;AccountKey=abc"])
def test_anything_shaped_like_a_credential_is_redacted_wherever_it_is_put(secret: str) -> None:
    entry = AuditRecord(at=AT, action="download", actor=Actor(caller=secret, client_ip=secret), detail=secret,
                        reason=secret, data={"url": secret})
    line = entry.line().decode()
    assert secret not in line and "sig=" not in line and "eyJ" not in line
    assert line.count(records.REDACTED) == 5


def test_ordinary_values_are_kept() -> None:
    for text in ("sha256 mismatch", "the signature is fine", "design=1", "image/png"):
        assert records.scrub(text) == text


def test_an_action_name_is_checked_and_oversized_data_is_dropped() -> None:
    with pytest.raises(ValueError):
        AuditRecord(at=AT, action="Grant Now", actor=Actor.app("x")).line()
    big = AuditRecord(at=AT, action="grant", actor=Actor.app("x"), data={f"k{i}": "v" * 500 for i in range(40)})
    doc = json.loads(big.line())
    assert len(big.line()) < records.MAX_LINE and doc["truncated"] is True and "data" not in doc


def test_filters_match_actor_or_owner_and_action_families() -> None:
    doc = {"at": "2026-12-06T20:00:00Z", "action": "review.release", "uploadId": "u1",
           "actor": {"caller": "reviewer"}, "owner": "uploader"}
    assert records.matches(doc, upload="u1", caller="reviewer", action="review")
    assert records.matches(doc, caller="uploader", action="review.release")
    assert not records.matches(doc, caller="someone")
    assert not records.matches(doc, upload="u2")
    assert not records.matches(doc, action="rev")
    assert records.parse_line(b"{not json") is None and records.parse_line(b'["x"]') is None


def test_blob_names_sort_by_hour_and_days_cover_a_range_newest_first() -> None:
    name = records.blob_name(AT, "abc", 2)
    assert name == "2026/12/06/20/abc.0002.jsonl" and records.hour_of(name) == AT.replace(
        minute=0, second=0, microsecond=0)
    assert records.hour_of("2026/12/06/xx/abc.jsonl") is None and records.hour_of("odd") is None
    days = list(records.day_prefixes(AT - timedelta(days=2, hours=21), AT))
    assert days == ["2026/12/06/", "2026/12/05/", "2026/12/04/", "2026/12/03/"]
    hour = AT.replace(minute=0, second=0, microsecond=0)
    assert records.hour_in_range(hour, AT, AT) and not records.hour_in_range(hour, AT + timedelta(hours=1), AT)
