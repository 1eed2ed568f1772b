"""The one entry point of authentication: request in, authorized :class:`Caller` out.

``X-API-Key`` (or ``?apiKey=`` when allowed) selects API key authentication; otherwise
``Authorization: Bearer``; neither is a 401 ``missing_credentials``. Every 401 carries a
``WWW-Authenticate`` challenge; a valid caller without the required roles/scopes gets a 403
``insufficient_scope``. Logs name caller ids, key ids and issuers only.

Before any of that, the client address's failure budget is checked (:class:`FailureThrottle`): an address
that keeps failing gets ``429 too_many_failures`` without costing a lookup, and key-store reads for key
ids that are not cached stay within a global budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import azure.functions as func

from valet.caller import Caller
from valet.errors import TooManyRequests, Unauthenticated

from . import apikeys
from .bearer import BearerValidator, KeysFactory
from .challenge import insufficient_scope, unauthenticated
from .keystore import CachedKeyLookup, KeyStore
from .ratelimit import FailureThrottle, RateLimiter
from .settings import AuthSettings
from .transport import client_address, is_secure

log = logging.getLogger("valet.auth")

API_KEY_HEADER = "x-api-key"
API_KEY_QUERY = "apiKey"


def _apikey_error(detail: str, code: str, error: str = "invalid_token") -> Unauthenticated:
    return unauthenticated(detail, code, error=error, scheme="ApiKey")


class Authenticator:
    def __init__(
        self,
        settings: AuthSettings,
        keystore: KeyStore | None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        keys_factory: KeysFactory | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._bearer = BearerValidator(settings, keys_factory)
        self._keys = (
            CachedKeyLookup(
                keystore,
                settings.apikey_cache_seconds,
                negative_ttl=settings.apikey_negative_cache_seconds,
                monotonic=monotonic,
            )
            if keystore is not None
            else None
        )
        self._limiter = RateLimiter(
            settings.rate_limit_per_minute, settings.rate_limit_burst, monotonic=monotonic
        )
        self._read_limiter = RateLimiter(
            settings.status_rate_limit_per_minute, settings.status_rate_limit_burst, monotonic=monotonic
        )
        self._failures = FailureThrottle(
            settings.auth_failures_per_minute,
            settings.auth_failures_burst,
            settings.auth_global_failures_per_minute,
            settings.auth_global_failures_burst,
            monotonic=monotonic,
        )

    def admit(self, req: func.HttpRequest) -> Caller:
        """Authenticate, authorize and rate-limit: what the grant path calls first."""
        caller = self.authenticate(req)
        self.throttle(caller)
        return caller

    def admit_read(self, req: func.HttpRequest) -> Caller:
        """Authenticate, authorize and rate-limit with the read budget (status, profiles): clients poll."""
        caller = self.authenticate(req)
        self.throttle(caller, self._read_limiter)
        return caller

    def authenticate(self, req: func.HttpRequest) -> Caller:
        """The authenticated caller holding the required roles/scopes (401/403/429/503 otherwise)."""
        caller = self.identify(req)
        self.authorize(caller)
        return caller

    def client_address(self, req: func.HttpRequest) -> str:
        """The client address as the app sees it (``X-Forwarded-For`` only from trusted proxies)."""
        return client_address(req.headers, self._settings.trusted_proxies)

    def identify(self, req: func.HttpRequest) -> Caller:
        """The authenticated caller, whatever its roles (401/429/503 otherwise): for routes that check a
        role of their own (the review routes)."""
        address = client_address(req.headers, self._settings.trusted_proxies)
        self._failures.check_address(address)  # 429, logged once below when the budget ran out
        try:
            caller = self._credentials(req)
        except Unauthenticated:
            if self._failures.failed(address):
                log.warning("address over its failure budget: throttled until it refills address=%s", address)
            raise
        return caller

    def _credentials(self, req: func.HttpRequest) -> Caller:
        headers = req.headers
        query_key = req.params.get(API_KEY_QUERY)
        header_key = headers.get(API_KEY_HEADER)
        if query_key is not None and not self._settings.apikey_allow_query:
            log.info("apikey rejected: sent in query string")
            raise _apikey_error(
                "API keys must be sent in the X-API-Key header, not the query string",
                "apikey_in_query_not_allowed",
                error="invalid_request",
            )
        presented = header_key if header_key is not None else query_key
        if presented is not None:
            return self._api_key(presented.strip(), req)
        return self._bearer_token(headers.get("authorization"))

    def authorize(self, caller: Caller, required: Iterable[str] | None = None) -> None:
        """Every required role/scope must be held (``roles`` or ``scp``; a key's scopes)."""
        needed = frozenset(required) if required is not None else self._settings.required_roles
        held = caller.roles | caller.scopes
        if not needed <= held:
            log.info("caller lacks required roles caller=%s", caller.id)
            raise insufficient_scope("The caller lacks a required role or scope", needed)

    def throttle(self, caller: Caller, limiter: RateLimiter | None = None) -> None:
        """Per-caller, per-instance rate limit (429 with ``Retry-After``); the grant budget by default."""
        try:
            (self._limiter if limiter is None else limiter).check(caller.id)
        except TooManyRequests:
            log.info("rate limited caller=%s", caller.id)
            raise

    def _bearer_token(self, authorization: str | None) -> Caller:
        if not authorization:
            raise unauthenticated(
                "Send a bearer token (Authorization header) or an API key (X-API-Key header)",
                "missing_credentials",
                error=None,
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated(
                "The Authorization header must use the Bearer scheme", "invalid_request", error="invalid_request"
            )
        if not self._settings.issuers:
            raise unauthenticated("Bearer tokens are not accepted by this service", "invalid_token")
        return self._bearer.validate(token.strip())

    def _api_key(self, presented: str, req: func.HttpRequest) -> Caller:
        pepper = self._settings.apikey_pepper
        if pepper is None or self._keys is None:
            raise _apikey_error("API keys are not accepted by this service", "apikeys_disabled")
        if not self._settings.allow_insecure_http and not is_secure(
            req.url, req.headers, self._settings.trusted_proxies
        ):
            log.warning("apikey rejected: plain http")
            raise _apikey_error(
                "API keys are accepted over HTTPS only", "apikey_requires_https", error="invalid_request"
            )
        try:
            parsed = apikeys.parse(presented)
        except apikeys.MalformedKey as exc:
            log.info("apikey rejected: malformed (%s)", exc.args[0] if exc.args else "shape")
            raise _apikey_error("The API key is malformed", "invalid_api_key") from None
        known, record = self._keys.cached(parsed.kid)
        if not known:
            self._failures.take_lookup()  # 429 before the read when failed reads are over budget
            try:
                record = self._keys.get(parsed.kid)
            except Exception:
                self._failures.return_lookup()  # the store failed, not the key
                raise
        valid = record is not None and apikeys.matches(pepper, parsed, record.secret_hash)
        if valid and not known:
            self._failures.return_lookup()
        if record is None or not valid:
            log.info("apikey rejected: unknown key or wrong secret key_id=%s", parsed.kid)
            raise _apikey_error("The API key is not valid", "invalid_api_key")
        state = record.state(self._clock())
        if state != "active":
            log.info("apikey rejected: %s key_id=%s", state, parsed.kid)
            raise _apikey_error(f"The API key is {state}", f"apikey_{state}")
        caller = Caller(
            kind="apikey",
            issuer="apikey",
            subject=record.owner,
            tenant=record.tenant,
            client_id=record.name,
            scopes=record.scopes,
            key_id=record.key_id,
        )
        log.info("apikey accepted caller=%s key_id=%s", caller.id, record.key_id)
        return caller
