"""API key records and where they live.

A :class:`KeyRecord` holds everything about a key except the key: its id, name, owner, tenant,
scopes, times and the HMAC of the secret. Stores implement :class:`KeyStore`; writes are conditional
(create: ``if_none_match="*"``; update: the record's ``etag``), so concurrent tools cannot silently
overwrite each other. :class:`CachedKeyLookup` caches records for at most ``ttl`` seconds: a revocation
or expiry change takes effect on every instance within ``ttl`` (``VALET_APIKEY_CACHE_SECONDS``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from valet.errors import ServiceUnavailable

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

RECORD_VERSION = 1


class KeyStoreError(Exception):
    pass


class KeyExists(KeyStoreError):
    pass


class KeyNotFound(KeyStoreError):
    pass


class KeyConflict(KeyStoreError):
    """The record changed since it was read (etag mismatch)."""


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    name: str
    owner: str
    secret_hash: str = field(repr=False)
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()
    created: int = 0
    expires: int | None = None
    revoked_at: int | None = None
    etag: str | None = field(default=None, compare=False)

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": RECORD_VERSION,
                "keyId": self.key_id,
                "name": self.name,
                "owner": self.owner,
                "tenant": self.tenant,
                "scopes": sorted(self.scopes),
                "created": self.created,
                "expires": self.expires,
                "revokedAt": self.revoked_at,
                "hash": {"alg": "hmac-sha256", "value": self.secret_hash},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, etag: str | None = None) -> KeyRecord:
        data: Any = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            raise ValueError("unsupported key record")
        hashed = data["hash"]
        if hashed.get("alg") != "hmac-sha256":
            raise ValueError("unsupported key hash")

        def opt_int(value: Any) -> int | None:
            return None if value is None else int(value)

        return cls(
            key_id=str(data["keyId"]),
            name=str(data["name"]),
            owner=str(data["owner"]),
            secret_hash=str(hashed["value"]),
            tenant=None if data.get("tenant") is None else str(data["tenant"]),
            scopes=frozenset(str(s) for s in data.get("scopes", [])),
            created=int(data.get("created", 0)),
            expires=opt_int(data.get("expires")),
            revoked_at=opt_int(data.get("revokedAt")),
            etag=etag,
        )


class KeyStore(Protocol):
    def get(self, key_id: str) -> KeyRecord | None: ...

    def put(self, record: KeyRecord) -> KeyRecord:
        """Create; :class:`KeyExists` if the id is taken. Returns the record with its etag."""
        ...

    def list(self, owner: str | None = None) -> list[KeyRecord]: ...

    def update(self, record: KeyRecord) -> KeyRecord:
        """Replace; :class:`KeyNotFound` / :class:`KeyConflict` (etag) otherwise."""
        ...


class BlobKeyStore:
    """One JSON blob per key id (``<key_id>.json``) in a container (default ``valet-apikeys``)."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    @staticmethod
    def blob_name(key_id: str) -> str:
        return f"{key_id}.json"

    def get(self, key_id: str) -> KeyRecord | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            downloader = self._container.get_blob_client(self.blob_name(key_id)).download_blob()
            text = downloader.readall()
            etag = downloader.properties.etag
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _unavailable() from exc
        return KeyRecord.from_json(text, etag)

    def put(self, record: KeyRecord) -> KeyRecord:
        from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError

        try:
            blob = self._container.get_blob_client(self.blob_name(record.key_id))
            result = blob.upload_blob(
                record.to_json().encode("utf-8"),
                overwrite=True,
                if_none_match="*",
                content_settings=_json_content(),
            )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise KeyExists(record.key_id) from exc
        except AzureError as exc:
            raise _unavailable() from exc
        return replace(record, etag=str(result["etag"]))

    def list(self, owner: str | None = None) -> list[KeyRecord]:
        from azure.core.exceptions import AzureError

        records = []
        try:
            for blob in self._container.list_blobs():
                if not blob.name.endswith(".json"):
                    continue
                record = self.get(blob.name[: -len(".json")])
                if record is not None and (owner is None or record.owner == owner):
                    records.append(record)
        except AzureError as exc:
            raise _unavailable() from exc
        return sorted(records, key=lambda r: r.key_id)

    def update(self, record: KeyRecord) -> KeyRecord:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        conditions: dict[str, Any] = {}
        if record.etag is not None:
            conditions = {"etag": record.etag, "match_condition": MatchConditions.IfNotModified}
        else:
            conditions = {"match_condition": MatchConditions.IfPresent}
        try:
            blob = self._container.get_blob_client(self.blob_name(record.key_id))
            result = blob.upload_blob(
                record.to_json().encode("utf-8"),
                overwrite=True,
                content_settings=_json_content(),
                **conditions,
            )
        except ResourceNotFoundError as exc:
            raise KeyNotFound(record.key_id) from exc
        except ResourceModifiedError as exc:
            if record.etag is None:
                raise KeyNotFound(record.key_id) from exc
            raise KeyConflict(record.key_id) from exc
        except AzureError as exc:
            raise _unavailable() from exc
        return replace(record, etag=str(result["etag"]))


def _json_content() -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json")


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The API key store cannot be reached; retry later", code="keystore_unavailable")


class _Flight:
    """One key-store read that concurrent lookups of the same key id wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.record: KeyRecord | None = None
        self.error: BaseException | None = None


class CachedKeyLookup:
    """``get`` through two caches and a single-flight read.

    * Found records are cached for ``ttl`` seconds (``VALET_APIKEY_CACHE_SECONDS``), at most
      ``max_entries`` of them: a revocation or expiry change takes effect within ``ttl``.
    * Unknown key ids are remembered apart, for ``negative_ttl`` seconds (brief, so a new key works
      soon), at most ``max_negative`` of them: a flood of forged key ids costs one read per id and
      cannot push real records out of the first cache.
    * Concurrent lookups of one key id share one read (``single flight``); a failed read is not cached.
    """

    def __init__(
        self,
        store: KeyStore,
        ttl: float,
        *,
        negative_ttl: float | None = None,
        max_entries: int = 10_000,
        max_negative: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._negative_ttl = ttl if negative_ttl is None else min(ttl, negative_ttl)
        self._max = max_entries
        self._max_negative = max_negative
        self._now = monotonic
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()
        self._negative: OrderedDict[str, float] = OrderedDict()
        self._flights: dict[str, _Flight] = {}

    def cached(self, key_id: str) -> tuple[bool, KeyRecord | None]:
        """``(True, record or None)`` when the answer is cached (no read needed), else ``(False, None)``."""
        now = self._now()
        with self._lock:
            return self._cached(key_id, now)

    def _cached(self, key_id: str, now: float) -> tuple[bool, KeyRecord | None]:
        hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < self._ttl:
            return True, hit[1]
        missed = self._negative.get(key_id)
        if missed is not None and now - missed < self._negative_ttl:
            return True, None
        return False, None

    def get(self, key_id: str) -> KeyRecord | None:
        now = self._now()
        with self._lock:
            known, record = self._cached(key_id, now)
            if known:
                return record
            flight = self._flights.get(key_id)
            leader = flight is None
            if flight is None:
                flight = self._flights[key_id] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.record
        try:
            flight.record = self._store.get(key_id)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key_id]
                if flight.error is None:
                    self._remember(key_id, flight.record, now)
            flight.done.set()
        return flight.record

    def _remember(self, key_id: str, record: KeyRecord | None, now: float) -> None:
        if record is not None and self._ttl > 0:
            self._negative.pop(key_id, None)
            self._cache[key_id] = (now, record)
            self._cache.move_to_end(key_id)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        elif record is None and self._negative_ttl > 0:
            self._cache.pop(key_id, None)
            self._negative[key_id] = now
            self._negative.move_to_end(key_id)
            while len(self._negative) > self._max_negative:
                self._negative.popitem(last=False)
