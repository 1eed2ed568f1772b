"""A cache of one user delegation key per storage account, so the grant path makes no storage call.

The reference sample asks storage for a new user delegation key on every grant. A key can sign any number
of SAS and lives up to 7 days, and heavy Get User Delegation Key traffic draws ``503 ServerBusy``; so we
keep one key per account per process:

* a key is requested for ``lifetime`` (default 4 h) and replaced once less than ``refresh_before``
  remains; ``refresh_before`` is longer than the longest SAS, so every SAS expires before its key;
* the replacement is fetched in the background while the current key keeps serving (no caller waits);
* concurrent callers share one fetch (single flight);
* a failed refresh keeps the current key in use while it is valid for the SAS asked for;
* with no usable key, a caller waits for one bounded fetch (the SDK's retries are bounded by the client
  configuration) and gets :class:`~valet.errors.ServiceUnavailable` (``503``, ``Retry-After``) when it
  fails; for ``failure_backoff`` after a failure, callers get the ``503`` at once without another call.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobSasPermissions, UserDelegationKey, generate_blob_sas

from valet.clock import utcnow
from valet.errors import ServiceUnavailable

log = logging.getLogger("valet.grants.delegation")

MAX_KEY_LIFETIME = timedelta(days=7)
# Ask for a key that starts this far back, so a storage clock behind ours still accepts it.
KEY_START_SKEW = timedelta(minutes=15)


class DelegationKeySource(Protocol):
    """What fetches keys; :class:`azure.storage.blob.BlobServiceClient` fits."""

    def get_user_delegation_key(
        self, key_start_time: datetime, key_expiry_time: datetime
    ) -> UserDelegationKey: ...


def blob_sas(key: UserDelegationKey, *, account: str, container: str, name: str, permission: BlobSasPermissions,
             now: datetime, expires: datetime, skew: timedelta, content_disposition: str | None = None,
             content_type: str | None = None) -> str:
    """A user delegation SAS for one blob, over HTTPS only, valid from ``now - skew`` (no start time when
    ``skew`` is zero) until ``expires``; ``content_disposition`` and ``content_type``, when given, are the
    SAS's response-header overrides (``rscd``, ``rsct``)."""
    return generate_blob_sas(
        account_name=account,
        container_name=container,
        blob_name=name,
        user_delegation_key=key,
        permission=permission,
        expiry=expires,
        start=now - skew if skew else None,
        protocol="https",
        content_disposition=content_disposition,
        content_type=content_type,
    )


def key_expiry(key: UserDelegationKey) -> datetime:
    return _parse_time(key.signed_expiry)


@functools.lru_cache(maxsize=16)  # the same few key expiries are parsed on every grant
def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.min.replace(tzinfo=UTC)
    return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)



class UserDelegationKeyCache:
    def __init__(
        self,
        source: DelegationKeySource,
        *,
        lifetime: timedelta = timedelta(hours=4),
        refresh_before: timedelta = timedelta(minutes=30),
        failure_backoff: timedelta = timedelta(seconds=2),
        wait_timeout: float = 15.0,
        retry_after: int = 5,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not timedelta(minutes=5) <= lifetime <= MAX_KEY_LIFETIME:
            raise ValueError("lifetime must be between 5 minutes and 7 days")
        if not timedelta(0) < refresh_before < lifetime:
            raise ValueError("refresh_before must be positive and shorter than lifetime")
        self._source = source
        self._lifetime = lifetime
        self._refresh_before = refresh_before
        self._failure_backoff = failure_backoff
        self._wait_timeout = wait_timeout
        self._retry_after = retry_after
        self._clock = clock
        self._state_lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._key: UserDelegationKey | None = None
        self._expiry = datetime.min.replace(tzinfo=UTC)
        self._failed_at: datetime | None = None
        self._background: threading.Thread | None = None
        self.fetches = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"UserDelegationKeyCache(expiry={self._expiry.isoformat()}, fetches={self.fetches})"

    def get(self, valid_until: datetime) -> UserDelegationKey:
        """A key that stays valid at least until ``valid_until`` (the SAS expiry)."""
        now = self._clock()
        with self._state_lock:
            key, expiry = self._key, self._expiry
            if key is not None and expiry >= valid_until:
                if expiry - self._refresh_before <= now:
                    self._start_background_refresh(now)
                return key
            if self._in_backoff(now):
                raise self._unavailable()
        return self._fetch_blocking(valid_until)

    @property
    def ready(self) -> bool:
        """Whether a key that is still valid is cached (no storage call; for the health route)."""
        return self._key is not None and self._expiry > self._clock()

    def prefetch(self) -> bool:
        """Best-effort warm-up at start-up; returns whether a key is now cached."""
        try:
            self.get(self._clock())
        except ServiceUnavailable:
            return False
        return True

    # -- internals ---------------------------------------------------------------------------------

    def _in_backoff(self, now: datetime) -> bool:
        return self._failed_at is not None and now - self._failed_at < self._failure_backoff

    def _unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            "Storage cannot issue upload credentials right now; retry shortly.",
            code="storage_unavailable",
            retry_after=self._retry_after,
        )

    def _start_background_refresh(self, now: datetime) -> None:
        # Called with _state_lock held.
        if self._background is not None and self._background.is_alive():
            return
        if self._in_backoff(now):
            return
        thread = threading.Thread(target=self._refresh_quietly, name="valet-udk-refresh", daemon=True)
        self._background = thread
        thread.start()

    def _refresh_quietly(self) -> None:
        if not self._fetch_lock.acquire(blocking=False):
            return  # a fetch is already running
        try:
            self._fetch_once()
        except ServiceUnavailable:
            pass  # logged in _fetch_once; the current key keeps serving
        finally:
            self._fetch_lock.release()

    def _fetch_blocking(self, valid_until: datetime) -> UserDelegationKey:
        if not self._fetch_lock.acquire(timeout=self._wait_timeout):
            raise self._unavailable()
        try:
            with self._state_lock:  # another caller may have fetched while we waited
                if self._key is not None and self._expiry >= valid_until:
                    return self._key
                if self._in_backoff(self._clock()):
                    raise self._unavailable()
            key = self._fetch_once()
            if key_expiry(key) < valid_until:
                raise self._unavailable()
            return key
        finally:
            self._fetch_lock.release()

    def _fetch_once(self) -> UserDelegationKey:
        # Called with _fetch_lock held.
        now = self._clock()
        start, expiry = now - KEY_START_SKEW, now + self._lifetime
        try:
            key = self._source.get_user_delegation_key(key_start_time=start, key_expiry_time=expiry)
        except AzureError as exc:
            with self._state_lock:
                self._failed_at = self._clock()
                self.failures += 1
            log.warning("user delegation key fetch failed: %s", type(exc).__name__)
            raise self._unavailable() from exc
        with self._state_lock:
            self._key, self._expiry = key, key_expiry(key)
            self._failed_at = None
            self.fetches += 1
        log.info("user delegation key refreshed; expires %s", self._expiry.isoformat())
        return key
