"""Signing keys of one issuer: OIDC discovery + JWKS, cached, with rate-limited refetches.

One :class:`IssuerKeys` per configured issuer, created once per process. It owns one
:class:`jwt.PyJWKClient` (``cache_jwk_set=True``, bounded ``timeout``) that does the JWKS fetches, and
adds what the grant path needs on top:

* at most one network attempt (discovery or JWKS) per ``min_refetch`` seconds, successful or not, so a
  flood of tokens with random ``kid`` values or an outage costs at most one fetch per interval;
* the last good key set keeps serving while the endpoint is down (up to ``max_stale`` seconds), and a
  caller whose key is cached never waits for a fetch another caller started;
* every fetch is bounded by ``timeout``; failures (connection resets included) become
  :class:`KeysUnavailable` (mapped to 503), and so does an unknown ``kid`` while the last fetch failed
  (or none has succeeded yet): the keys could not be checked, which says nothing against the token;
* key rotation: an unknown ``kid`` triggers a fetch when the rate limit allows one; whenever the last
  fetch succeeded, a ``kid`` it did not return is :class:`UnknownKey` (a 401 with an error description),
  also inside the refetch interval, as Microsoft's token middleware answers. (Until issue 24 a token
  issued after our last fetch got a 503 there: a real rotation then showed a burst of 503s, and junk
  tokens with a fresh ``iat`` raised the 5xx rate of a healthy service.) A client whose token was signed
  with a key published since gets a 401 for at most ``min_refetch`` seconds.

The JWKS URL comes only from configuration or from the configured discovery document, never from a
token (``jku``/``x5u``/``jwk`` headers are refused before any key lookup).
"""

from __future__ import annotations

import http.client
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import requests

from valet.errors import ConfigurationError

from .settings import IssuerConfig, check_fetch_url

log = logging.getLogger("valet.auth")


class KeysUnavailable(Exception):
    """The issuer's keys cannot be fetched now; ``retry_after`` in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("signing keys unavailable")
        self.retry_after = max(1, math.ceil(retry_after))


class UnknownKey(Exception):
    """The token's ``kid`` is not in the issuer's current key set."""


class IssuerKeys:
    def __init__(
        self,
        config: IssuerConfig,
        *,
        timeout: float,
        min_refetch: float,
        cache_lifetime: float,
        max_stale: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = config.issuer
        self._discovery_url = config.discovery_url
        self._jwks_uri = config.jwks_uri
        self._timeout = timeout
        self._min_refetch = min_refetch
        self._cache_lifetime = cache_lifetime
        self._max_stale = max_stale
        self._now = monotonic
        self._lock = threading.Lock()  # state; never held during a network fetch
        self._fetch_lock = threading.Lock()  # the one fetch in flight
        self._client: jwt.PyJWKClient | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._last_failed = False

    def get(self, kid: str) -> jwt.PyJWK:
        """The key for ``kid``; :class:`UnknownKey` or :class:`KeysUnavailable` (only when the last fetch
        failed) otherwise.

        A caller whose key is cached never waits for a fetch; a caller that needs the keys another caller
        is fetching waits for that fetch (bounded by its timeout) and answers from its result."""
        with self._lock:
            now = self._now()
            key = self._keys.get(kid)
            if key is not None and self._fresh(now):
                return key
            claimed = self._may_fetch(now) and self._fetch_lock.acquire(blocking=False)
            if claimed:
                self._last_attempt = now
            elif key is not None and self._usable_stale(now):
                return key
        if claimed:
            try:
                return self._fetch(kid, key)
            finally:
                self._fetch_lock.release()
        with self._fetch_lock:  # a fetch may be in flight: wait for its outcome
            pass
        with self._lock:
            return self._rate_limited(kid, self._now())

    def _fetch(self, kid: str, stale: jwt.PyJWK | None) -> jwt.PyJWK:
        # Called with _fetch_lock held, _lock not held: callers with cached keys go on meanwhile.
        try:
            keys = self._download()
        except KeysUnavailable:
            with self._lock:
                self._last_failed = True
                if stale is not None and self._usable_stale(self._now()):
                    log.warning("jwks refresh failed; serving cached keys issuer=%s", self.issuer)
                    return stale
            raise
        with self._lock:
            self._keys, self._fetched_at, self._last_failed = keys, self._now(), False
            key = self._keys.get(kid)
        if key is None:
            raise UnknownKey
        return key

    def _rate_limited(self, kid: str, now: float) -> jwt.PyJWK:
        """Answer without a fetch (called with _lock held). While the last fetch failed, a key we do not
        have cannot be called unknown: 503 until the next fetch may run. Otherwise it is unknown (401)."""
        key = self._keys.get(kid)
        if key is not None and (self._fresh(now) or self._usable_stale(now)):
            return key
        if self._fetched_at is None or self._last_failed:
            assert self._last_attempt is not None
            raise KeysUnavailable(self._min_refetch - (now - self._last_attempt))
        raise UnknownKey

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._cache_lifetime

    def _may_fetch(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self._min_refetch

    def _usable_stale(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._cache_lifetime + self._max_stale

    def _download(self) -> dict[str, jwt.PyJWK]:
        client = self._jwks_client()
        try:
            keys = client.get_signing_keys(refresh=True)
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError, OSError, http.client.HTTPException) as exc:
            # pyjwt wraps most transport errors, not a connection reset while reading the answer (OSError).
            log.warning("jwks fetch failed issuer=%s error=%s", self.issuer, type(exc).__name__)
            raise KeysUnavailable(self._min_refetch) from exc
        keyed = {k.key_id: k for k in keys if k.key_id}
        log.info("jwks fetched issuer=%s keys=%d", self.issuer, len(keyed))
        return keyed

    def _jwks_client(self) -> jwt.PyJWKClient:
        if self._client is None:
            uri = self._jwks_uri or self._discover()
            self._client = jwt.PyJWKClient(
                uri,
                cache_jwk_set=True,
                lifespan=self._cache_lifetime,
                timeout=self._timeout,
                cooldown_duration=0,  # refetches are rate-limited here, failures included
            )
        return self._client

    def _discover(self) -> str:
        assert self._discovery_url is not None
        try:
            response = requests.get(
                self._discovery_url,
                timeout=self._timeout,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            )
            response.raise_for_status()
            document: Any = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("oidc discovery failed issuer=%s error=%s", self.issuer, type(exc).__name__)
            raise KeysUnavailable(self._min_refetch) from exc
        uri = document.get("jwks_uri") if isinstance(document, dict) else None
        doc_issuer = document.get("issuer") if isinstance(document, dict) else None
        if not isinstance(uri, str) or (doc_issuer is not None and doc_issuer != self.issuer):
            log.error("oidc discovery document unusable issuer=%s", self.issuer)
            raise KeysUnavailable(self._min_refetch)
        try:
            return check_fetch_url(uri, "jwks_uri")
        except ConfigurationError as exc:
            log.error("oidc discovery jwks_uri is not https issuer=%s", self.issuer)
            raise KeysUnavailable(self._min_refetch) from exc
