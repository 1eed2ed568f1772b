"""API keys: format, transport rules, store lookups, revocation, rotation, rate limit."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest

from tests.support.auth import request
from tests.support.fakes import InMemoryKeyStore
from valet.auth import Authenticator, AuthSettings, KeyRecord, apikeys
from valet.auth.keystore import CachedKeyLookup, KeyConflict, KeyExists, KeyNotFound
from valet.auth.keytool import main as keytool
from valet.errors import Forbidden, TooManyRequests, Unauthenticated

PEPPER = base64.urlsafe_b64encode(b"p" * 32).decode()
ENV = {"VALET_APIKEY_PEPPER": PEPPER}


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def create(store: InMemoryKeyStore, clock: Clock, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    out = io.StringIO()
    code = keytool(list(args), store_factory=lambda s: store, environ=env or ENV, out=out, clock=clock)
    assert code == 0, out.getvalue()
    text = out.getvalue()
    key = re.search(apikeys.SCANNER_REGEX, text)
    kid = re.search(r"key id: (\w+)", text)
    assert key and kid
    return key.group(0), kid.group(1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> InMemoryKeyStore:
    return InMemoryKeyStore()


def make_auth(store: InMemoryKeyStore, clock: Clock, **env: str) -> Authenticator:
    settings = AuthSettings.from_env({**ENV, **env})
    return Authenticator(settings, store, clock=clock, monotonic=clock)


def with_key(key: str, url: str = "https://valet.example/api/uploads", **headers: str) -> Any:
    return request({"X-API-Key": key, **headers}, url=url)


def refused(auth: Authenticator, req: Any, code: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        auth.authenticate(req)
    assert info.value.code == code
    assert info.value.headers["WWW-Authenticate"].startswith('ApiKey realm="valet"')
    return info.value


def test_generated_keys_match_the_scanner_regex_and_parse() -> None:
    key, parsed = apikeys.generate()
    assert len(key) == apikeys.KEY_LENGTH
    assert re.fullmatch(apikeys.SCANNER_REGEX, key)
    assert apikeys.parse(key) == parsed
    assert "secret=***" in repr(parsed)


def test_valid_key_authenticates(store: InMemoryKeyStore, clock: Clock) -> None:
    key, kid = create(store, clock, "create", "--owner", "billing", "--name", "nightly", "--tenant", "contoso")
    caller = make_auth(store, clock).authenticate(with_key(key))
    assert (caller.kind, caller.subject, caller.tenant, caller.key_id) == ("apikey", "billing", "contoso", kid)
    assert caller.id == "apikey:contoso:billing"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # checksum
        lambda k: k[:20] + ("A" if k[20] != "A" else "B") + k[21:],  # secret changed, checksum stale
        lambda k: k[:-1],
        lambda k: k + "0",
        lambda k: k.replace("valet_", "valex_"),
        lambda k: k[:10] + "!" + k[11:],
        lambda k: "",
        lambda k: "x" * 5000,
    ],
)
def test_malformed_keys_are_refused_before_any_lookup(store: InMemoryKeyStore, clock: Clock, mangle: Any) -> None:
    key, _ = create(store, clock, "create", "--owner", "o", "--name", "n")
    store.lookups = 0
    refused(make_auth(store, clock), with_key(mangle(key)), "invalid_api_key")
    assert store.lookups == 0


def test_unknown_and_wrong_secret_keys_are_refused(store: InMemoryKeyStore, clock: Clock) -> None:
    key, kid = create(store, clock, "create", "--owner", "o", "--name", "n")
    auth = make_auth(store, clock)
    refused(auth, with_key(apikeys.generate()[0]), "invalid_api_key")
    forged, _ = apikeys.generate(kid)  # right id, wrong secret
    refused(auth, with_key(forged), "invalid_api_key")


def test_query_string_key_refused_unless_allowed(store: InMemoryKeyStore, clock: Clock) -> None:
    key, _ = create(store, clock, "create", "--owner", "o", "--name", "n")
    req = request(params={"apiKey": key}, url=f"https://valet.example/api/uploads?apiKey={key}")
    err = refused(make_auth(store, clock), req, "apikey_in_query_not_allowed")
    assert key not in err.detail and key not in str(err.headers)
    assert make_auth(store, clock, VALET_APIKEY_ALLOW_QUERY="true").authenticate(req).subject == "o"


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("http://valet.example/api/uploads", {}),
        ("http://127.0.0.1:7071/api/uploads", {}),
        ("http://valet.example/api/uploads", {"X-Forwarded-Proto": "https"}),  # untrusted peer
        ("http://valet.example/api/uploads", {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}),
        ("https://valet.example/api/uploads", {"X-Forwarded-Proto": "http", "X-Forwarded-For": "10.0.0.5"}),
    ],
)
def test_plain_http_is_refused(store: InMemoryKeyStore, clock: Clock, url: str, headers: dict[str, str]) -> None:
    key, _ = create(store, clock, "create", "--owner", "o", "--name", "n")
    store.lookups = 0
    auth = make_auth(store, clock, VALET_TRUSTED_PROXIES="10.0.0.0/24")
    refused(auth, with_key(key, url, **headers), "apikey_requires_https")
    assert store.lookups == 0


def test_forwarded_proto_from_trusted_proxy_and_insecure_override(store: InMemoryKeyStore, clock: Clock) -> None:
    key, _ = create(store, clock, "create", "--owner", "o", "--name", "n")
    auth = make_auth(store, clock, VALET_TRUSTED_PROXIES="10.0.0.0/24")
    url = "http://valet.example/api/uploads"
    ok = with_key(key, url, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1, 10.0.0.5:443"})
    assert auth.authenticate(ok).subject == "o"
    insecure = make_auth(store, clock, VALET_ALLOW_INSECURE_HTTP="true")
    assert insecure.authenticate(with_key(key, "http://127.0.0.1:7071/api/uploads")).subject == "o"


def test_revoked_key_refused_within_cache_ttl(store: InMemoryKeyStore, clock: Clock) -> None:
    key, kid = create(store, clock, "create", "--owner", "o", "--name", "n")
    auth = make_auth(store, clock, VALET_APIKEY_CACHE_SECONDS="60")
    auth.authenticate(with_key(key))
    assert keytool(["revoke", kid], store_factory=lambda s: store, environ=ENV, out=io.StringIO()) == 0
    auth.authenticate(with_key(key))  # still cached: revocation delay is bounded by the TTL
    clock.now += 61
    refused(auth, with_key(key), "apikey_revoked")


def test_expired_key_refused(store: InMemoryKeyStore, clock: Clock) -> None:
    key, _ = create(store, clock, "create", "--owner", "o", "--name", "n", "--expires-days", "1")
    auth = make_auth(store, clock)
    auth.authenticate(with_key(key))
    clock.now += 86400
    refused(auth, with_key(key), "apikey_expired")


def test_rotation_overlap_then_old_key_expires(store: InMemoryKeyStore, clock: Clock) -> None:
    old, old_kid = create(store, clock, "create", "--owner", "o", "--name", "n", "--tenant", "t")
    new, new_kid = create(store, clock, "rotate", old_kid, "--overlap-hours", "2")
    assert new_kid != old_kid
    auth = make_auth(store, clock, VALET_APIKEY_CACHE_SECONDS="0")
    assert auth.authenticate(with_key(old)).key_id == old_kid
    assert auth.authenticate(with_key(new)).key_id == new_kid
    assert auth.authenticate(with_key(new)).id == auth.authenticate(with_key(old)).id  # same caller
    clock.now += 2 * 3600
    refused(auth, with_key(old), "apikey_expired")
    assert auth.authenticate(with_key(new)).key_id == new_kid


def test_key_without_required_scope_is_forbidden(store: InMemoryKeyStore, clock: Clock) -> None:
    key, _ = create(store, clock, "create", "--owner", "o", "--name", "n", "--scope", "Reports.Read")
    with pytest.raises(Forbidden) as info:
        make_auth(store, clock).authenticate(with_key(key))
    assert info.value.code == "insufficient_scope"


def test_api_keys_disabled_without_pepper(store: InMemoryKeyStore, clock: Clock) -> None:
    key, _ = create(store, clock, "create", "--owner", "o", "--name", "n")
    auth = Authenticator(AuthSettings.from_env({}), store)
    refused(auth, with_key(key), "apikeys_disabled")


def test_burst_over_rate_limit_is_429_with_retry_after(store: InMemoryKeyStore, clock: Clock) -> None:
    key, _ = create(store, clock, "create", "--owner", "o", "--name", "n")
    auth = make_auth(store, clock, VALET_RATE_LIMIT_PER_MINUTE="60", VALET_RATE_LIMIT_BURST="5")
    for _ in range(5):
        auth.admit(with_key(key))
    with pytest.raises(TooManyRequests) as info:
        auth.admit(with_key(key))
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "1"
    clock.now += 1
    auth.admit(with_key(key))


def test_keytool_list_never_shows_keys_or_hashes(store: InMemoryKeyStore, clock: Clock) -> None:
    key, kid = create(store, clock, "create", "--owner", "o", "--name", "n")
    out = io.StringIO()
    assert keytool(["list"], store_factory=lambda s: store, environ=ENV, out=out, clock=clock) == 0
    text = out.getvalue()
    record = store.get(kid)
    assert record is not None
    assert kid in text and key not in text and record.secret_hash not in text
    assert apikeys.parse(key).secret not in text
    assert keytool(["revoke", "nope"], store_factory=lambda s: store, environ=ENV, out=io.StringIO()) == 1
    assert keytool(["list"], environ=ENV, out=io.StringIO()) == 2  # no store wired


def test_record_json_round_trip_and_no_secret_in_repr() -> None:
    record = KeyRecord("abcdefABCDEF", "n", "o", "f" * 64, "t", frozenset({"a", "b"}), 1, 2, None)
    assert KeyRecord.from_json(record.to_json()) == record
    assert "f" * 64 not in repr(record)


def test_in_memory_store_conditional_writes() -> None:
    store = InMemoryKeyStore()
    record = store.put(KeyRecord("abcdefABCDEF", "n", "o", "h"))
    with pytest.raises(KeyExists):
        store.put(record)
    updated = store.update(KeyRecord("abcdefABCDEF", "n", "o", "h", revoked_at=5, etag=record.etag))
    with pytest.raises(KeyConflict):
        store.update(record)  # stale etag
    with pytest.raises(KeyNotFound):
        store.update(KeyRecord("zzzzzzzzzzzz", "n", "o", "h"))
    assert store.list("o") == [updated] and store.list("x") == []


def test_cached_lookup_caches_misses_for_ttl(clock: Clock) -> None:
    store = InMemoryKeyStore()
    cached = CachedKeyLookup(store, 60, monotonic=clock)
    for _ in range(10):
        assert cached.get("abcdefABCDEF") is None
    assert store.lookups == 1
    clock.now += 60
    cached.get("abcdefABCDEF")
    assert store.lookups == 2
