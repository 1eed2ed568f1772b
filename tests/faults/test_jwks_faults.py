"""The identity provider's JWKS endpoint failing, through the registered grant function: the session's
development issuer mints the tokens, and the app fetches its keys through the fault proxy (the issuer
entry's ``jwksUri``; plain HTTP is accepted for loopback issuers). Storage is reached directly.

``valet.auth.jwks``: a cached key serves until the JWKS is an hour old (and then for a day more while
refreshes fail); an unknown ``kid`` refetches, at most once per ``VALET_AUTH_JWKS_MIN_REFETCH_SECONDS``
(1.5 s here, counted from the start of the last attempt), each fetch bounded by
``VALET_AUTH_HTTP_TIMEOUT_SECONDS`` (0.3 s here, so a timed-out fetch leaves over a second of the
interval for the follow-up requests of a test).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from types import ModuleType

import azure.functions as func
import pytest

from tests.faults.conftest import apply, call_grant
from tests.support.auth import SigningKey, rsa_key, token
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.functions import fresh_app
from valet.auth.jwks import IssuerKeys, KeysUnavailable, UnknownKey
from valet.auth.settings import IssuerConfig
from valet.local.devidp import DEV_AUDIENCE, DEV_TENANT, DevIssuer

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(60)]

HTTP_TIMEOUT, MIN_REFETCH = 0.3, 1.5
SLACK = 3.0  # a loaded 2-core machine


@pytest.fixture(scope="module")
def rotated_key() -> SigningKey:
    """A key the issuer does not publish (as after a rotation the app has not seen yet)."""
    return rsa_key("dev-rotated-1")


def unknown_kid_token(issuer: DevIssuer, key: SigningKey, subject: str, age: int = 0) -> str:
    now = int(time.time())
    return token(key, {"iss": issuer.issuer, "aud": DEV_AUDIENCE, "sub": subject, "tid": DEV_TENANT,
                       "roles": ["Uploads.Write"], "iat": now - age, "nbf": now - age, "exp": now + 600})


@pytest.fixture
def jwks_proxy(issuer: DevIssuer) -> Iterator[FaultProxy]:
    with FaultProxy(f"http://127.0.0.1:{issuer.port}/dev") as proxy:
        yield proxy


def make_app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], issuer: DevIssuer, proxy: FaultProxy,
             http_timeout: float = HTTP_TIMEOUT) -> contextlib.AbstractContextManager[ModuleType]:
    trusted = [{"issuer": issuer.issuer, "audiences": [DEV_AUDIENCE], "jwksUri": f"{proxy.url}/keys"}]
    return fresh_app(monkeypatch, {**env, "VALET_AUTH_ISSUERS": json.dumps(trusted),
                                   "VALET_AUTH_HTTP_TIMEOUT_SECONDS": str(http_timeout),
                                   "VALET_AUTH_JWKS_MIN_REFETCH_SECONDS": str(MIN_REFETCH)})


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer,
        jwks_proxy: FaultProxy) -> Iterator[ModuleType]:
    with make_app(monkeypatch, valet_env, issuer, jwks_proxy) as module:
        yield module


def assert_idp_unavailable(response: func.HttpResponse) -> None:
    assert response.status_code == 503, response.get_body()
    assert json.loads(response.get_body())["code"] == "idp_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def wait_past_refetch_interval(since: float) -> None:
    """The JWKS may be fetched again ``MIN_REFETCH`` seconds after the last attempt (started after
    ``since``): a bounded wait for a minimum interval, not a race."""
    time.sleep(max(0.0, since + MIN_REFETCH + 0.05 - time.monotonic()))


@pytest.mark.parametrize("mode", ["down", "reset", "503", "delay"])
def test_cached_keys_keep_working_and_unknown_keys_get_503_while_jwks_fails(
    app: ModuleType, issuer: DevIssuer, jwks_proxy: FaultProxy, rotated_key: SigningKey, mode: str,
) -> None:
    assert call_grant(app, issuer.mint("alice")).status_code == 201
    fetched = time.monotonic()
    assert jwks_proxy.requests == 1
    apply(jwks_proxy, mode)

    # A token never seen before (not in the verified-token cache), signed with the cached key: fine.
    response = call_grant(app, issuer.mint("bob"))
    assert response.status_code == 201, response.get_body()
    assert jwks_proxy.requests == 1

    # An unknown kid makes the app refetch, which fails: 503, within the fetch timeout.
    wait_past_refetch_interval(fetched)
    stranger = unknown_kid_token(issuer, rotated_key, "mallory")
    started = time.monotonic()
    response = call_grant(app, stranger)
    elapsed = time.monotonic() - started
    assert_idp_unavailable(response)
    assert elapsed < HTTP_TIMEOUT + SLACK, f"{mode}: 503 after {elapsed:.2f} s"
    seen = jwks_proxy.requests
    assert seen == (1 if mode == "down" else 2)

    # Asked again inside the refetch interval: still 503 (the keys could not be checked), no new fetch.
    assert_idp_unavailable(call_grant(app, unknown_kid_token(issuer, rotated_key, "mallory-2")))
    assert call_grant(app, issuer.mint("carol")).status_code == 201  # and the cached key still serves
    assert jwks_proxy.requests == seen


def test_cold_start_with_jwks_down_is_503_until_it_is_back(
    app: ModuleType, issuer: DevIssuer, jwks_proxy: FaultProxy, rotated_key: SigningKey
) -> None:
    jwks_proxy.down()
    started = time.monotonic()
    response = call_grant(app, issuer.mint("alice"))
    assert time.monotonic() - started < HTTP_TIMEOUT + SLACK
    assert_idp_unavailable(response)
    jwks_proxy.heal()
    time.sleep(int(response.headers["Retry-After"]))  # as a client does; covers the refetch interval
    assert call_grant(app, issuer.mint("alice")).status_code == 201
    assert jwks_proxy.requests == 1
    # The keys were just fetched: a kid not among them is unknown, whenever the token was issued: a 401
    # without another fetch (issue 24: a fresh iat got 503 idp_unavailable while the issuer was up).
    for age in (3600, 0):
        response = call_grant(app, unknown_kid_token(issuer, rotated_key, "mallory", age=age))
        assert response.status_code == 401 and json.loads(response.get_body())["code"] == "invalid_token"
        assert 'error="invalid_token", error_description=' in response.headers["WWW-Authenticate"]
    assert jwks_proxy.requests == 1


def test_cached_keys_do_not_wait_for_a_slow_refetch(
    monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer, jwks_proxy: FaultProxy,
    rotated_key: SigningKey,
) -> None:
    with make_app(monkeypatch, valet_env, issuer, jwks_proxy, http_timeout=2) as app:
        assert call_grant(app, issuer.mint("alice")).status_code == 201
        fetched = time.monotonic()
        jwks_proxy.inject(Fault.delay(30))
        wait_past_refetch_interval(fetched)
        slow: list[int] = []
        refetch = threading.Thread(target=lambda: slow.append(
            call_grant(app, unknown_kid_token(issuer, rotated_key, "mallory")).status_code))
        refetch.start()
        deadline = time.monotonic() + 10
        while jwks_proxy.requests < 2 and time.monotonic() < deadline:  # the refetch is in flight
            time.sleep(0.01)
        assert jwks_proxy.requests == 2
        assert call_grant(app, issuer.mint("bob")).status_code == 201
        assert refetch.is_alive()  # bob's grant did not wait for the refetch (2 s timeout)
        refetch.join(10)
        assert slow == [503]


# -- the key cache itself, with an injected clock -----------------------------------------------------------

def issuer_keys(issuer: DevIssuer, proxy: FaultProxy, clock: list[float]) -> IssuerKeys:
    config = IssuerConfig(issuer=issuer.issuer, audiences=(DEV_AUDIENCE,), jwks_uri=f"{proxy.url}/keys")
    return IssuerKeys(config, timeout=HTTP_TIMEOUT, min_refetch=30, cache_lifetime=3600, max_stale=86400,
                      monotonic=lambda: clock[0])


def test_unknown_kid_is_503_until_a_fetch_succeeds_again(issuer: DevIssuer, jwks_proxy: FaultProxy) -> None:
    clock = [1000.0]
    keys = issuer_keys(issuer, jwks_proxy, clock)
    assert keys.get(issuer.kid).key_id == issuer.kid
    jwks_proxy.inject(Fault.unavailable(retry_after=60))
    clock[0] += 31
    with pytest.raises(KeysUnavailable) as info:
        keys.get("dev-rotated-1")  # refetch allowed, fails
    assert info.value.retry_after == 30
    clock[0] += 10
    with pytest.raises(KeysUnavailable) as info:
        keys.get("dev-rotated-1")  # rate-limited: the last fetch failed, so the kid is not "unknown"
    assert info.value.retry_after == 20
    assert keys.get(issuer.kid).key_id == issuer.kid  # cached keys keep serving
    assert jwks_proxy.requests == 2
    jwks_proxy.heal()
    clock[0] += 20
    with pytest.raises(UnknownKey):
        keys.get("dev-rotated-1")  # fetched: really unknown
    with pytest.raises(UnknownKey):
        keys.get("dev-rotated-1")  # and rate-limited after a good fetch: still unknown, no fetch
    assert jwks_proxy.requests == 3


@pytest.mark.parametrize("fault", [Fault.reset(), Fault.lost_response(), Fault.internal_error()])
def test_a_fetch_cut_off_in_any_way_is_unavailable(issuer: DevIssuer, jwks_proxy: FaultProxy, fault: Fault) -> None:
    jwks_proxy.inject(fault)
    with pytest.raises(KeysUnavailable):  # a connection reset while reading the answer used to escape (500)
        issuer_keys(issuer, jwks_proxy, [0.0]).get(issuer.kid)
