"""The pure quota rules: limits from profiles, reserve / consume / release, what fits, Retry-After, the
``quota`` problem member, and the in-process memory of refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from valet.errors import ConfigurationError
from valet.http import problem_response
from valet.quotas import Ask, Counter, Limits, QuotaExceeded, RefusalMemory, parse_quotas
from valet.quotas.rows import GrantRow, grant_entity, grant_from
from valet.quotas.rules import binding, day_of, resets_at, retry_after, view

NOW = datetime(2026, 12, 6, 20, 0, 0, tzinfo=UTC)
TODAY = day_of(NOW)
YESTERDAY = day_of(NOW - timedelta(days=1))
UNTIL_MIDNIGHT = 4 * 3600


def doc(**profile: object) -> dict[str, object]:
    return {"profiles": {"p": {"maxBytes": 10, "types": {"image/png": ["png"]}, **profile}}}


def test_limits_come_from_quota_and_tenantquota_and_absent_fields_are_no_limit() -> None:
    quotas = parse_quotas(doc(quota={"bytesPerDay": 100, "pendingFiles": 2}, tenantQuota={"filesPerDay": 9},
                              maxFilesPerBatch=5), setting="S")
    q = quotas["p"]
    assert q.caller == Limits(bytes_per_day=100, pending_files=2) and q.tenant == Limits(files_per_day=9)
    assert q.max_files_per_batch == 5 and q.enabled
    assert [s for s, _ in q.scopes()] == ["caller", "tenant"]


def test_a_profile_without_quota_is_not_enabled_and_batches_default_to_20() -> None:
    q = parse_quotas(doc(), setting="S")["p"]
    assert not q.enabled and q.scopes() == () and q.max_files_per_batch == 20


@pytest.mark.parametrize("profile, message", [
    ({"quota": {"bytesPerDay": 0}}, "bytesPerDay must be a positive integer"),
    ({"quota": {"filesPerDay": True}}, "filesPerDay must be a positive integer"),
    ({"quota": {"filesPerDay": 1.5}}, "filesPerDay must be a positive integer"),
    ({"quota": {"bytesperday": 1}}, "unknown field(s) bytesperday"),
    ({"quota": []}, "quota must be an object"),
    ({"tenantQuota": {"pendingFiles": -1}}, "tenantQuota: pendingFiles must be a positive integer"),
    ({"maxFilesPerBatch": 98}, "maxFilesPerBatch must be an integer from 1 to 97"),
    ({"maxFilesPerBatch": 0}, "maxFilesPerBatch must be an integer from 1 to 97"),
])
def test_malformed_quota_settings_name_the_setting_profile_and_field(profile: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_quotas(doc(**profile), setting="VALET_PROFILES")
    assert info.value.detail.startswith("VALET_PROFILES: profile 'p'") and message in info.value.detail


LIMITS = Limits(bytes_per_day=100, files_per_day=3, pending_files=2)


@pytest.mark.parametrize("counter, ask, over", [
    (Counter(TODAY), Ask(100), ()),                                                   # exactly the limit fits
    (Counter(TODAY), Ask(101), ("bytesPerDay",)),                                     # one byte over
    (Counter(TODAY, bytes=60, reserved_bytes=30, pending=1), Ask(10), ()),            # used + reserved + ask = 100
    (Counter(TODAY, bytes=60, reserved_bytes=30, pending=1), Ask(11), ("bytesPerDay",)),
    (Counter(TODAY, files=2, reserved_files=1, pending=1), Ask(0), ("filesPerDay",)),  # a 4th file of the day
    (Counter(TODAY, pending=2), Ask(1), ("pendingFiles",)),
    (Counter(YESTERDAY, bytes=100, files=3, pending=1), Ask(100), ()),                # the day reset, pending did not
    (Counter(YESTERDAY, bytes=100, files=3, pending=2), Ask(1), ("pendingFiles",)),
    (Counter(TODAY), Ask(10, files=3), ("pendingFiles",)),                            # a batch of 3 > 2 pending
    (Counter(TODAY, bytes=100, files=3, pending=2), Ask(1), ("bytesPerDay", "filesPerDay", "pendingFiles")),
])
def test_what_fits_and_which_limits_bind(counter: Counter, ask: Ask, over: tuple[str, ...]) -> None:
    assert binding(counter, LIMITS, ask, TODAY) == over


def test_no_limits_means_everything_fits() -> None:
    assert binding(Counter(TODAY, bytes=10**15, pending=10**6), Limits(), Ask(10**12, 100), TODAY) == ()


def test_a_counter_from_an_instance_whose_clock_runs_ahead_is_not_reset_back() -> None:
    tomorrow = day_of(NOW + timedelta(days=1))
    ahead = Counter(tomorrow, bytes=100)
    assert ahead.on(TODAY) == ahead and binding(ahead, LIMITS, Ask(1), TODAY) == ("bytesPerDay",)


@pytest.mark.parametrize("start, granted, consumed, expected", [
    # consumed today: reserved moves to used; the day's sum stays the same
    (Counter(TODAY, reserved_bytes=30, reserved_files=1, pending=1), TODAY, True,
     Counter(TODAY, bytes=30, files=1, pending=0)),
    # released today: the bytes and the file are free again
    (Counter(TODAY, reserved_bytes=30, reserved_files=1, pending=1), TODAY, False, Counter(TODAY)),
    # a grant of yesterday settled today: its day already reset; only pending shrinks
    (Counter(TODAY, bytes=5, files=1, pending=2), YESTERDAY, True, Counter(TODAY, bytes=5, files=1, pending=1)),
    (Counter(YESTERDAY, reserved_bytes=30, reserved_files=1, pending=1), YESTERDAY, False, Counter(TODAY)),
    # never below zero
    (Counter(TODAY), TODAY, False, Counter(TODAY)),
])
def test_consume_and_release(start: Counter, granted: str, consumed: bool, expected: Counter) -> None:
    assert start.settle(30, granted, TODAY, consumed=consumed) == expected


def test_staged_bytes_beyond_the_declared_size_are_held_until_settled_and_an_upload_consumes_its_size() -> None:
    reserved = Counter(TODAY, reserved_bytes=30, reserved_files=1, pending=1)
    staged = reserved.restage(970, TODAY, TODAY)  # 1,000 bytes seen staged for a 30-byte grant
    assert staged == Counter(TODAY, reserved_bytes=1_000, reserved_files=1, pending=1)
    assert staged.settle(30, TODAY, TODAY, consumed=False, held=1_000) == Counter(TODAY)
    assert staged.settle(30, TODAY, TODAY, consumed=True, held=1_000) == Counter(TODAY, bytes=30, files=1)
    assert reserved.restage(0, TODAY, TODAY) == reserved and reserved.restage(-5, TODAY, TODAY) == reserved
    # a grant of yesterday: its day has reset, today's counts hold nothing of it
    assert Counter(TODAY, pending=1).restage(970, YESTERDAY, TODAY) == Counter(TODAY, pending=1)


def test_a_grant_row_holds_the_larger_of_declared_and_staged_and_round_trips() -> None:
    row = GrantRow("u1", "c", 30, TODAY, NOW, "t/c/x.png", "c")
    assert row.charge == 30
    staged = GrantRow("u1", "c", 30, TODAY, NOW.replace(microsecond=0), "t/c/x.png", "c", staged=1_000)
    assert staged.charge == 1_000
    assert grant_from(grant_entity("pk", staged)) == staged
    old = {k: v for k, v in grant_entity("pk", row).items() if k != "Staged"}  # a row written before the field
    assert grant_from(old).staged == 0


def test_reserve_adds_the_ask_to_today_and_to_pending() -> None:
    assert Counter(YESTERDAY, bytes=9, pending=1).reserve(Ask(40, 2), TODAY) == Counter(
        TODAY, reserved_bytes=40, reserved_files=2, pending=3)


@pytest.mark.parametrize("over, earliest, seconds", [
    (("bytesPerDay",), None, UNTIL_MIDNIGHT),
    (("filesPerDay",), NOW + timedelta(minutes=5), UNTIL_MIDNIGHT),
    (("pendingFiles",), NOW + timedelta(minutes=5, milliseconds=1), 301),
    (("pendingFiles",), NOW - timedelta(seconds=3), 1),                      # never below 1
    (("pendingFiles",), None, 60),                                           # no expiry known
    (("bytesPerDay", "pendingFiles"), NOW + timedelta(minutes=5), UNTIL_MIDNIGHT),
    (("pendingFiles", "filesPerDay"), NOW + timedelta(hours=5), 5 * 3600),   # the later of the two
])
def test_retry_after(over: tuple[str, ...], earliest: datetime | None, seconds: int) -> None:
    assert retry_after(over, NOW, earliest) == seconds


def test_resets_at_is_the_next_utc_midnight() -> None:
    assert resets_at(TODAY) == datetime(2026, 12, 7, tzinfo=UTC)
    assert day_of(datetime(2026, 12, 6, 23, 30, tzinfo=UTC) + timedelta(hours=1)) == "2026-12-07"


def test_the_quota_member_shows_only_configured_limits() -> None:
    counter = Counter(TODAY, bytes=60, files=1, reserved_bytes=30, reserved_files=1, pending=1)
    assert view("caller", "p", LIMITS, counter, TODAY) == {
        "scope": "caller", "profile": "p",
        "limit": {"bytesPerDay": 100, "filesPerDay": 3, "pendingFiles": 2},
        "used": {"bytesPerDay": 60, "filesPerDay": 1},
        "reserved": {"bytesPerDay": 30, "filesPerDay": 1, "pendingFiles": 1},
        "remaining": {"bytesPerDay": 10, "filesPerDay": 1, "pendingFiles": 1},
        "resetsAt": "2026-12-07T00:00:00Z",
    }
    only = view("tenant", "p", Limits(files_per_day=5), Counter(YESTERDAY, files=5), TODAY)
    assert only["limit"] == {"filesPerDay": 5} and only["used"] == {"filesPerDay": 0}
    assert only["remaining"] == {"filesPerDay": 5} and only["reserved"] == {"filesPerDay": 0}


def test_quota_exceeded_is_a_429_problem_with_retry_after_and_the_quota_member() -> None:
    quota = view("tenant", "p", LIMITS, Counter(TODAY, bytes=100), TODAY)
    response = problem_response(QuotaExceeded(quota, 120, ("bytesPerDay",)))
    import json
    body = json.loads(response.get_body())
    assert response.status_code == 429 and response.headers["Retry-After"] == "120"
    assert body["code"] == "quota_exceeded" and body["quota"] == quota
    assert "tenant's bytesPerDay quota of profile 'p'" in body["detail"]


def test_a_remembered_refusal_refuses_what_would_not_fit_until_its_retry_after() -> None:
    memory = RefusalMemory()
    quota = view("caller", "p", LIMITS, Counter(TODAY, bytes=95, pending=1), TODAY)  # 5 bytes remain
    memory.remember(("pk", "c.x"), QuotaExceeded(quota, 60, ("bytesPerDay",)), NOW)
    again = memory.recall(("pk", "c.x"), Ask(6), NOW + timedelta(seconds=20))
    assert again is not None and again.retry_after == 40 and again.quota == quota
    assert memory.recall(("pk", "c.x"), Ask(5), NOW) is None          # would fit: the store decides
    assert memory.recall(("pk", "c.y"), Ask(6), NOW) is None          # another caller
    assert memory.recall(("pk", "c.x"), Ask(6), NOW + timedelta(seconds=60)) is None  # its Retry-After passed
    assert len(memory) == 0


def test_the_memory_is_bounded_and_forgets_a_partition() -> None:
    memory = RefusalMemory(max_entries=3)
    error = QuotaExceeded(view("caller", "p", LIMITS, Counter(TODAY, pending=2), TODAY), 60, ("pendingFiles",))
    for i in range(5):
        memory.remember((f"pk{i % 2}", f"c.{i}"), error, NOW)
    assert len(memory) <= 3
    memory.forget("pk0")
    assert all(memory.recall(("pk0", f"c.{i}"), Ask(1), NOW) is None for i in range(5))
