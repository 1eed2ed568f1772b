"""Floods of failed authentication: the per-address and global failure budgets, the client address, the
negative cache and single-flight key lookups (in memory; tests/integration/test_apikey_flood.py counts the
reads against the storage emulator)."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest

from tests.support.auth import request
from tests.support.fakes import InMemoryKeyStore
from valet.auth import Authenticator, AuthSettings, KeyRecord, apikeys
from valet.auth.keystore import CachedKeyLookup
from valet.auth.ratelimit import FailureThrottle
from valet.auth.settings import _proxies
from valet.auth.transport import client_address
from valet.errors import TooManyRequests, Unauthenticated

PEPPER_BYTES = b"p" * 32
PEPPER = base64.urlsafe_b64encode(PEPPER_BYTES).decode()


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def forged() -> str:
    """A well-formed key (shape and checksum right) with a random key id nobody issued."""
    return apikeys.generate()[0]


def real_key(store: InMemoryKeyStore, *, scopes: frozenset[str] = frozenset({"Uploads.Write"})) -> str:
    key, parsed = apikeys.generate()
    store.put(KeyRecord(parsed.kid, "n", "svc", apikeys.hash_secret(PEPPER_BYTES, parsed), "t", scopes))
    return key


def from_address(key: str, address: str) -> Any:
    return request({"X-API-Key": key, "X-Forwarded-For": address})


def make_auth(store: InMemoryKeyStore, clock: Clock, **env: str) -> Authenticator:
    settings = AuthSettings.from_env({"VALET_APIKEY_PEPPER": PEPPER, **env})
    return Authenticator(settings, store, clock=clock, monotonic=clock)


# -- client address ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "proxies", "expected"), [
    ({"x-forwarded-for": "203.0.113.7:50123"}, "", "203.0.113.7"),
    ({"x-forwarded-for": "198.51.100.1, 203.0.113.7"}, "", "203.0.113.7"),  # the left part is the client's say
    ({"x-forwarded-for": "198.51.100.1, 203.0.113.7, 10.0.0.4"}, "10.0.0.0/8", "203.0.113.7"),
    ({"x-forwarded-for": "198.51.100.1, 10.0.0.9, 10.0.0.4"}, "10.0.0.0/8", "198.51.100.1"),
    ({"x-forwarded-for": "10.0.0.9, 10.0.0.4"}, "10.0.0.0/8", "10.0.0.9"),  # all trusted: the left-most
    ({"x-forwarded-for": "garbage, 10.0.0.4"}, "10.0.0.0/8", "unknown"),
    ({"client-ip": "192.0.2.5"}, "", "192.0.2.5"),
    ({}, "", "unknown"),
    ({"x-forwarded-for": "[2001:db8:1:2:3:4:5:6]:443"}, "", "2001:db8:1:2::/64"),
    ({"x-forwarded-for": "2001:db8:1:2:ffff::1"}, "", "2001:db8:1:2::/64"),
    ({"x-forwarded-for": "::ffff:192.0.2.9"}, "", "192.0.2.9"),
])
def test_client_address_honours_trusted_proxies_only(headers: dict[str, str], proxies: str, expected: str) -> None:
    assert client_address(headers, _proxies(proxies)) == expected


# -- the budgets ---------------------------------------------------------------------------------------


def test_an_address_that_keeps_failing_waits_and_may_retry_after_the_named_time() -> None:
    clock = Clock()
    throttle = FailureThrottle(60, 3, 0, 1, monotonic=clock)
    for _ in range(3):
        throttle.check_address("a")
        throttle.failed("a")
    with pytest.raises(TooManyRequests) as info:
        throttle.check_address("a")
    assert info.value.code == "too_many_failures"
    wait = int(info.value.headers["Retry-After"])
    assert wait == 1  # 60 a minute: one token a second
    throttle.check_address("b")  # another address is unaffected
    clock.now += wait - 0.5
    with pytest.raises(TooManyRequests):
        throttle.check_address("a")
    clock.now += 0.5
    throttle.check_address("a")  # honouring Retry-After is enough


def test_the_global_budget_is_taken_before_a_read_and_returned_for_a_valid_key() -> None:
    clock = Clock()
    throttle = FailureThrottle(0, 1, 60, 2, monotonic=clock)
    throttle.take_lookup()
    throttle.return_lookup()  # a valid key costs nothing
    throttle.take_lookup()
    throttle.take_lookup()
    with pytest.raises(TooManyRequests) as info:
        throttle.take_lookup()
    assert info.value.headers["Retry-After"] == "1"
    clock.now += 1
    throttle.take_lookup()


def test_failure_budgets_hold_a_bounded_number_of_addresses() -> None:
    throttle = FailureThrottle(1, 5, 0, 1, max_addresses=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100


# -- the key lookup ------------------------------------------------------------------------------------


def test_unknown_key_ids_are_remembered_briefly_and_apart_from_real_records() -> None:
    clock = Clock()
    store = InMemoryKeyStore()
    real = store.put(KeyRecord("realKEY00001", "n", "o", "h"))
    lookup = CachedKeyLookup(store, 60, negative_ttl=10, max_entries=10, max_negative=50, monotonic=clock)
    assert lookup.get(real.key_id) == real
    for n in range(500):  # a flood of forged ids: one read each, and the real record stays cached
        assert lookup.get(f"forged{n:06d}") is None
    assert store.lookups == 501
    store.lookups = 0
    assert lookup.get(real.key_id) == real and store.lookups == 0
    assert lookup.get("forged000499") is None and store.lookups == 0  # remembered
    assert lookup.get("forged000000") is None and store.lookups == 1  # evicted: the negative cache is bounded
    clock.now += 10
    assert lookup.get("forged000499") is None and store.lookups == 2  # brief: 10 s
    assert lookup.cached("forged000499") == (True, None)
    assert lookup.cached("never-seen00") == (False, None)


def test_a_key_created_after_a_miss_works_once_the_negative_entry_expires() -> None:
    clock = Clock()
    store = InMemoryKeyStore()
    lookup = CachedKeyLookup(store, 60, negative_ttl=5, monotonic=clock)
    assert lookup.get("newKEY000001") is None
    record = store.put(KeyRecord("newKEY000001", "n", "o", "h"))
    assert lookup.get("newKEY000001") is None
    clock.now += 5
    assert lookup.get("newKEY000001") == record


class SlowStore(InMemoryKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get(self, key_id: str) -> KeyRecord | None:
        self.release.wait(5)
        return super().get(key_id)


def test_concurrent_lookups_of_one_key_id_share_one_read() -> None:
    store = SlowStore()
    lookup = CachedKeyLookup(store, 60)
    results: list[KeyRecord | None] = []
    threads = [threading.Thread(target=lambda: results.append(lookup.get("sameKEY00001"))) for _ in range(20)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # all 20 are waiting on the one read
    store.release.set()
    for thread in threads:
        thread.join(5)
    assert results == [None] * 20
    assert store.lookups == 1


class FailingStore(InMemoryKeyStore):
    def get(self, key_id: str) -> KeyRecord | None:
        self.lookups += 1
        raise RuntimeError("store down")


def test_a_failed_read_is_not_remembered() -> None:
    store = FailingStore()
    lookup = CachedKeyLookup(store, 60)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            lookup.get("downKEY00001")
    assert store.lookups == 2


# -- the authenticator ---------------------------------------------------------------------------------


def test_a_flood_from_one_address_is_throttled_before_any_lookup() -> None:
    clock = Clock()
    store = InMemoryKeyStore()
    key = real_key(store)
    auth = make_auth(store, clock, VALET_AUTH_FAILURES_PER_MINUTE="6", VALET_AUTH_FAILURES_BURST="5")
    store.lookups = 0
    statuses = []
    for _ in range(600):
        try:
            auth.authenticate(from_address(forged(), "203.0.113.66"))
        except (Unauthenticated, TooManyRequests) as exc:
            statuses.append(exc.status)
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert store.lookups == 5  # the 595 throttled requests cost nothing

    # A caller behind the same address waits too, for the time it is told...
    with pytest.raises(TooManyRequests) as info:
        auth.authenticate(from_address(key, "203.0.113.66"))
    wait = int(info.value.headers["Retry-After"])
    assert 1 <= wait <= 10
    # ...while a caller elsewhere is unaffected.
    assert auth.authenticate(from_address(key, "198.51.100.20")).subject == "svc"
    clock.now += wait
    assert auth.authenticate(from_address(key, "203.0.113.66")).subject == "svc"


def test_a_flood_from_many_addresses_stays_within_the_global_budget() -> None:
    clock = Clock()
    store = InMemoryKeyStore()
    key = real_key(store)
    auth = make_auth(store, clock, VALET_AUTH_GLOBAL_FAILURES_PER_MINUTE="60",
                     VALET_AUTH_GLOBAL_FAILURES_BURST="25")
    assert auth.authenticate(from_address(key, "198.51.100.20")).subject == "svc"  # cached from here on
    store.lookups = 0
    codes = []
    for n in range(1000):
        try:
            auth.authenticate(from_address(forged(), f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"))
        except (Unauthenticated, TooManyRequests) as exc:
            codes.append(exc.code)
    assert store.lookups == 25
    assert codes.count("invalid_api_key") == 25 and codes.count("too_many_failures") == 975
    assert auth.authenticate(from_address(key, "198.51.100.20")).subject == "svc"  # cached keys pass
    clock.now += 10
    store.lookups = 0
    for n in range(100):
        with pytest.raises((Unauthenticated, TooManyRequests)):
            auth.authenticate(from_address(forged(), f"192.0.2.{n}"))
    assert store.lookups == 10  # 60 a minute


def test_valid_keys_do_not_spend_the_global_budget() -> None:
    clock = Clock()
    store = InMemoryKeyStore()
    keys = [real_key(store) for _ in range(30)]
    auth = make_auth(store, clock, VALET_AUTH_GLOBAL_FAILURES_PER_MINUTE="1", VALET_AUTH_GLOBAL_FAILURES_BURST="2")
    for key in keys:
        assert auth.authenticate(from_address(key, "198.51.100.20")).subject == "svc"


def test_bearer_failures_count_against_the_address_too() -> None:
    clock = Clock()
    auth = make_auth(InMemoryKeyStore(), clock, VALET_AUTH_FAILURES_BURST="2")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.authenticate(request({"Authorization": "Bearer a.b.c", "X-Forwarded-For": "192.0.2.1"}))
    with pytest.raises(TooManyRequests):
        auth.authenticate(request({"X-Forwarded-For": "192.0.2.1"}))


def test_the_read_budget_is_its_own() -> None:
    clock = Clock()
    store = InMemoryKeyStore()
    key = real_key(store)
    auth = make_auth(store, clock, VALET_RATE_LIMIT_BURST="2", VALET_STATUS_RATE_LIMIT_BURST="5",
                     VALET_STATUS_RATE_LIMIT_PER_MINUTE="60")
    for _ in range(5):
        auth.admit_read(from_address(key, "198.51.100.20"))
    with pytest.raises(TooManyRequests) as info:
        auth.admit_read(from_address(key, "198.51.100.20"))
    assert info.value.code == "rate_limited" and info.value.headers["Retry-After"] == "1"
    for _ in range(2):  # grants have their own bucket
        auth.admit(from_address(key, "198.51.100.20"))
    with pytest.raises(TooManyRequests):
        auth.admit(from_address(key, "198.51.100.20"))


def test_the_new_settings_are_validated_by_name() -> None:
    from valet.errors import ConfigurationError

    for name in ("VALET_AUTH_FAILURES_PER_MINUTE", "VALET_AUTH_GLOBAL_FAILURES_BURST",
                 "VALET_STATUS_RATE_LIMIT_PER_MINUTE", "VALET_APIKEY_NEGATIVE_CACHE_SECONDS"):
        with pytest.raises(ConfigurationError, match=name):
            AuthSettings.from_env({name: "-1"})
    settings = AuthSettings.from_env({})
    assert (settings.auth_failures_per_minute, settings.auth_failures_burst) == (30, 20)
    assert (settings.auth_global_failures_per_minute, settings.auth_global_failures_burst) == (600, 100)
    assert (settings.status_rate_limit_per_minute, settings.status_rate_limit_burst) == (600, 60)
    assert settings.apikey_negative_cache_seconds == 10


def test_an_exhausted_address_is_logged_once_not_per_request(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    auth = make_auth(InMemoryKeyStore(), clock, VALET_AUTH_FAILURES_BURST="3")
    with caplog.at_level("INFO", logger="valet.auth"):
        for _ in range(50):
            with pytest.raises((Unauthenticated, TooManyRequests)):
                auth.authenticate(from_address(forged(), "203.0.113.9"))
    budget = [r for r in caplog.records if "failure budget" in r.getMessage()]
    assert len(budget) == 1 and "203.0.113.9" in budget[0].getMessage()
    assert len(caplog.records) < 10  # three failures and one warning, not fifty lines
