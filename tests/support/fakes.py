"""Small in-memory stand-ins for the Protocols valet depends on (never for the Azure SDK)."""

from __future__ import annotations

import threading
from dataclasses import replace

from valet.auth.keystore import KeyConflict, KeyExists, KeyNotFound, KeyRecord
from valet.caller import Caller

ALICE = Caller(
    kind="bearer",
    issuer="https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0",
    subject="aaaaaaaa-0000-0000-0000-000000000001",
    tenant="11111111-1111-1111-1111-111111111111",
    roles=frozenset({"Uploads.Write", "Uploads.Archives", "Uploads.Videos", "Uploads.Large"}),  # every built-in profile
)


class FixedCaller:
    """An authenticator that always answers the same caller (for tests of the grant path itself)."""

    def __init__(self, caller: Caller = ALICE) -> None:
        self.caller = caller

    def authenticate(self, request: object) -> Caller:
        return self.caller

    def admit(self, request: object) -> Caller:
        return self.caller

    def admit_read(self, request: object) -> Caller:
        return self.caller

    def identify(self, request: object) -> Caller:
        return self.caller

    def client_address(self, request: object) -> str:
        return "127.0.0.1"


class InMemoryKeyStore:
    """A :class:`KeyStore` in a dict, with the same etag semantics as the blob store."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._etags: dict[str, str] = {}
        self._counter = 0
        self._lock = threading.Lock()
        self.lookups = 0

    def _next_etag(self) -> str:
        self._counter += 1
        return f'"{self._counter}"'

    def get(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            self.lookups += 1
            text = self._data.get(key_id)
            return None if text is None else KeyRecord.from_json(text, self._etags[key_id])

    def put(self, record: KeyRecord) -> KeyRecord:
        with self._lock:
            if record.key_id in self._data:
                raise KeyExists(record.key_id)
            self._data[record.key_id] = record.to_json()
            etag = self._etags[record.key_id] = self._next_etag()
            return replace(record, etag=etag)

    def list(self, owner: str | None = None) -> list[KeyRecord]:
        with self._lock:
            records = [KeyRecord.from_json(t, self._etags[k]) for k, t in sorted(self._data.items())]
        return [r for r in records if owner is None or r.owner == owner]

    def update(self, record: KeyRecord) -> KeyRecord:
        with self._lock:
            if record.key_id not in self._data:
                raise KeyNotFound(record.key_id)
            if record.etag is not None and record.etag != self._etags[record.key_id]:
                raise KeyConflict(record.key_id)
            self._data[record.key_id] = record.to_json()
            etag = self._etags[record.key_id] = self._next_etag()
            return replace(record, etag=etag)
