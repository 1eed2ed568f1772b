from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import UserDelegationKey

from valet.errors import ServiceUnavailable
from valet.grants.delegation import UserDelegationKeyCache, key_expiry

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeKeySource:
    """Stands in for storage's Get User Delegation Key; counts calls, can fail or be slow."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.delay = 0.0
        self.lock = threading.Lock()

    def get_user_delegation_key(self, key_start_time: datetime, key_expiry_time: datetime) -> UserDelegationKey:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise ServiceRequestError("connection refused")
        key = UserDelegationKey()
        key.signed_start = key_start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_expiry = key_expiry_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.value = f"key-{self.calls}"
        return key


def make(source: FakeKeySource, clock: Clock, **kw: object) -> UserDelegationKeyCache:
    return UserDelegationKeyCache(
        source, lifetime=timedelta(hours=4), refresh_before=timedelta(minutes=30), clock=clock, **kw  # type: ignore[arg-type]
    )


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def test_steady_state_makes_one_fetch_for_many_grants() -> None:
    source, clock = FakeKeySource(), Clock()
    cache = make(source, clock)
    for i in range(10_000):
        clock.now = T0 + timedelta(seconds=i)
        cache.get(clock.now + timedelta(minutes=3))
    assert source.calls == 1


def test_key_covers_the_sas_it_signs() -> None:
    source, clock = FakeKeySource(), Clock()
    cache = make(source, clock)
    until = T0 + timedelta(minutes=3)
    assert key_expiry(cache.get(until)) >= until


def test_refresh_happens_ahead_of_expiry_in_the_background() -> None:
    source, clock = FakeKeySource(), Clock()
    cache = make(source, clock)
    first = cache.get(T0 + timedelta(minutes=3))
    clock.now = T0 + timedelta(hours=3, minutes=35)  # inside the 30-minute refresh window
    served = cache.get(clock.now + timedelta(minutes=3))
    assert served is first  # the caller did not wait for the refresh
    wait_for(lambda: source.calls == 2)
    wait_for(lambda: cache.get(clock.now + timedelta(minutes=3)) is not first)


def test_concurrent_callers_share_one_fetch() -> None:
    source, clock = FakeKeySource(), Clock()
    source.delay = 0.2
    cache = make(source, clock)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(T0 + timedelta(minutes=3)))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert source.calls == 1
    assert len(results) == 20 and all(r is results[0] for r in results)


def test_failed_refresh_keeps_serving_the_valid_key() -> None:
    source, clock = FakeKeySource(), Clock()
    cache = make(source, clock)
    first = cache.get(T0 + timedelta(minutes=3))
    source.fail = True
    clock.now = T0 + timedelta(hours=3, minutes=40)
    assert cache.get(clock.now + timedelta(minutes=3)) is first
    wait_for(lambda: cache.failures == 1)
    assert cache.get(clock.now + timedelta(minutes=3)) is first


def test_no_valid_key_gives_503_with_retry_after_quickly() -> None:
    source, clock = FakeKeySource(), Clock()
    source.fail = True
    cache = make(source, clock)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        cache.get(T0 + timedelta(minutes=3))
    assert time.monotonic() - started < 1
    assert info.value.status == 503 and int(info.value.headers["Retry-After"]) >= 1
    assert info.value.code == "storage_unavailable"


def test_after_a_failure_callers_back_off_without_hammering_storage() -> None:
    source, clock = FakeKeySource(), Clock()
    source.fail = True
    cache = make(source, clock)
    for _ in range(50):
        with pytest.raises(ServiceUnavailable):
            cache.get(T0 + timedelta(minutes=3))
    assert source.calls == 1
    clock.now = T0 + timedelta(seconds=3)  # past the 2 s backoff
    source.fail = False
    cache.get(clock.now + timedelta(minutes=3))
    assert source.calls == 2


def test_expired_key_is_not_served() -> None:
    source, clock = FakeKeySource(), Clock()
    cache = make(source, clock)
    cache.get(T0 + timedelta(minutes=3))
    source.fail = True
    clock.now = T0 + timedelta(hours=4, minutes=1)
    with pytest.raises(ServiceUnavailable):
        cache.get(clock.now + timedelta(minutes=3))


def test_key_near_expiry_is_not_used_for_a_sas_that_would_outlive_it() -> None:
    source, clock = FakeKeySource(), Clock()
    cache = make(source, clock)
    first = cache.get(T0 + timedelta(minutes=3))
    clock.now = T0 + timedelta(hours=3, minutes=58)  # key has 2 minutes left, SAS wants 3
    second = cache.get(clock.now + timedelta(minutes=3))
    assert second is not first and key_expiry(second) >= clock.now + timedelta(minutes=3)


@pytest.mark.parametrize(
    ("lifetime", "refresh"),
    [(timedelta(days=8), timedelta(minutes=30)), (timedelta(hours=1), timedelta(hours=2)), (timedelta(hours=1), timedelta(0))],
)
def test_invalid_lifetimes_are_refused(lifetime: timedelta, refresh: timedelta) -> None:
    with pytest.raises(ValueError):
        UserDelegationKeyCache(FakeKeySource(), lifetime=lifetime, refresh_before=refresh)
