"""Grants while storage is failing, through the registered function with real RS256 tokens from the
session issuer: every storage request of the app goes through the fault proxy.

With a cached user delegation key a grant needs no storage at all, so an outage changes nothing. Without
one, the grant waits for one bounded fetch (three attempts, ``LinearRetry`` backoff of at most 2 s
between them, each attempt bounded by ``VALET_STORAGE_TIMEOUT_SECONDS``; a caller waits at most three
timeouts for a fetch another thread runs) and answers ``503 storage_unavailable`` with ``Retry-After``,
never ``500`` and never a hang. Whichever comes first ends the wait: the fetch failing, or (when the
app's warm-up fetch holds the single-flight lock) three timeouts of waiting for it.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.conftest import MODES, apply, call_grant
from tests.support.faultproxy import FaultProxy
from tests.support.functions import fresh_app
from valet.local.devidp import DevIssuer

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(90)]

TIMEOUT_SECONDS = 1  # VALET_STORAGE_TIMEOUT_SECONDS for these tests (the smallest allowed)
ATTEMPTS, MAX_BACKOFF = 3, 2.0  # valet.storage.make_blob_service: LinearRetry(backoff=1 +/- 1, retry_total=2)
# One fetch: every attempt may use its whole timeout (delay mode), plus the backoffs between attempts.
FETCH_BOUND = ATTEMPTS * TIMEOUT_SECONDS + (ATTEMPTS - 1) * MAX_BACKOFF
SLACK = 4.0  # a loaded 2-core machine: thread start, imports, TLS handshakes


@pytest.mark.parametrize("mode", MODES)
def test_cached_key_keeps_grants_working_while_storage_fails(
    monkeypatch: pytest.MonkeyPatch, proxied_env: dict[str, str], storage_proxy: FaultProxy,
    issuer: DevIssuer, mode: str,
) -> None:
    with fresh_app(monkeypatch, {**proxied_env, "VALET_STORAGE_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS)}) as app:
        assert call_grant(app, issuer.mint("alice")).status_code == 201  # the key is cached now
        runtime = app.runtime()
        before = (storage_proxy.requests, storage_proxy.connections, runtime.storage_requests.count)
        apply(storage_proxy, mode)
        for n in range(5):
            response = call_grant(app, issuer.mint(f"user-{n}"))
            assert response.status_code == 201, response.get_body()
        assert (storage_proxy.requests, storage_proxy.connections, runtime.storage_requests.count) == before


@pytest.mark.parametrize("mode", ["down", "reset", "503", "delay"])
def test_without_a_cached_key_the_grant_is_a_bounded_503(
    monkeypatch: pytest.MonkeyPatch, proxied_env: dict[str, str], storage_proxy: FaultProxy,
    issuer: DevIssuer, mode: str,
) -> None:
    token = issuer.mint("alice")
    apply(storage_proxy, mode)  # failing before the app starts: its warm-up fetch fails too
    started = time.monotonic()
    with fresh_app(monkeypatch, {**proxied_env, "VALET_STORAGE_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS)}) as app:
        response = call_grant(app, token)
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.get_body()
    problem = json.loads(response.get_body())
    assert problem["code"] == "storage_unavailable" and response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    assert elapsed < FETCH_BOUND + SLACK, f"{mode}: 503 after {elapsed:.2f} s"
    # The fetches are bounded too: three attempts each, the warm-up's and at most one of the grant's.
    assert storage_proxy.requests <= 2 * ATTEMPTS


def test_grants_resume_once_storage_recovers(
    monkeypatch: pytest.MonkeyPatch, proxied_env: dict[str, str], storage_proxy: FaultProxy, issuer: DevIssuer,
) -> None:
    token = issuer.mint("alice")
    apply(storage_proxy, "503")
    with fresh_app(monkeypatch, {**proxied_env, "VALET_STORAGE_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS)}) as app:
        refused = call_grant(app, token)
        assert refused.status_code == 503
        storage_proxy.heal()
        # An impatient client: inside the 2 s back-off after a failed fetch, 503 at once without a storage
        # request; the first call after it fetches a key (or finds the one the warm-up's retry got).
        deadline = time.monotonic() + FETCH_BOUND + SLACK
        while (response := call_grant(app, token)).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert response.status_code == 201, response.get_body()
        grant = json.loads(response.get_body())
        assert grant["blobUri"].startswith(storage_proxy.url)  # the SAS names the endpoint the app knows
        fetched = storage_proxy.requests
        assert call_grant(app, issuer.mint("bob")).status_code == 201
        assert storage_proxy.requests == fetched  # and the key is cached again
