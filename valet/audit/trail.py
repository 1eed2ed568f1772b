"""The one call other features use: ``audit.record(action, actor=..., ...)`` (buffered, no I/O) and
``audit.write(...)`` (appended before it returns, for decisions and review actions).

A record goes to the ``valet.audit`` logger instead when it cannot go to the container: the container is
off (``VALET_AUDIT_CONTAINER=none``), the buffer is full, or a synchronous append failed. (The grant and
decision paths keep their own ``valet.audit`` log lines as before.)
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from valet.audit.flusher import Flusher
from valet.audit.records import Actor, AuditRecord, Scalar, check_action
from valet.audit.settings import AuditSettings
from valet.audit.store import AppendStore, AuditReader
from valet.clock import utcnow
from valet.errors import ServiceUnavailable

log = logging.getLogger("valet.audit")


class AuditUnavailable(ServiceUnavailable):
    code = "audit_unavailable"


class AuditTrail:
    def __init__(self, store: AppendStore | None, *, flush_seconds: float = 1.0, max_records: int = 10_000,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.flusher = Flusher(store, interval=flush_seconds, max_records=max_records) if store else None
        self._clock = clock
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: AuditSettings, blob_service: BlobServiceClient) -> AuditTrail:
        """``blob_service`` should be the audit trail's own client, so its requests are never counted
        as the grant path's (see :func:`valet.storage.make_blob_service`)."""
        if not settings.enabled:
            return cls(None)
        store = AppendStore(blob_service.get_container_client(settings.container))
        return cls(store, flush_seconds=settings.flush_seconds, max_records=settings.buffer_records)

    def reader(self) -> AuditReader | None:
        return None if self.store is None else AuditReader(self.store.container_client)

    def make(self, action: str, *, actor: Actor, upload_id: str = "", batch_id: str = "", owner: str = "",
             outcome: str = "", reason: str = "", detail: str = "",
             data: Mapping[str, Scalar] | None = None) -> AuditRecord:
        with self._seq_lock:
            seq = next(self._seq)
        return AuditRecord(at=self._clock(), action=check_action(action), actor=actor, upload_id=upload_id,
                           batch_id=batch_id, owner=owner, outcome=outcome, reason=reason, detail=detail,
                           data=dict(data or {}), instance=self.store.instance if self.store else "", seq=seq)

    def record(self, action: str, *, actor: Actor, upload_id: str = "", batch_id: str = "", owner: str = "",
               outcome: str = "", reason: str = "", detail: str = "",
               data: Mapping[str, Scalar] | None = None) -> AuditRecord:
        """Buffer a record for the background flusher (grant side: no storage request here)."""
        entry = self.make(action, actor=actor, upload_id=upload_id, batch_id=batch_id, owner=owner,
                          outcome=outcome, reason=reason, detail=detail, data=data)
        if self.flusher is None or not self.flusher.put(entry):  # serialised on the flusher's thread
            self._log(entry)  # no container, or the buffer is full: the log keeps it
        return entry

    def write(self, action: str, *, actor: Actor, upload_id: str = "", batch_id: str = "", owner: str = "",
              outcome: str = "", reason: str = "", detail: str = "",
              data: Mapping[str, Scalar] | None = None) -> AuditRecord:
        """Append a record now (decisions, review actions); :class:`AuditUnavailable` (503) if storage
        refuses, so the action's caller can retry it (review actions are idempotent)."""
        entry = self.make(action, actor=actor, upload_id=upload_id, batch_id=batch_id, owner=owner,
                          outcome=outcome, reason=reason, detail=detail, data=data)
        if self.store is None:
            self._log(entry)
            return entry
        try:
            self.store.append(entry.line())
        except AzureError as exc:
            self._log(entry)
            raise AuditUnavailable("The audit trail cannot be written right now.", retry_after=5) from exc
        return entry

    def close(self) -> None:
        if self.flusher is not None:
            self.flusher.close()

    @staticmethod
    def _log(entry: AuditRecord) -> None:
        doc = entry.to_json()
        log.info("audit %s", entry.action, extra={"event": entry.action, "audit": doc})
