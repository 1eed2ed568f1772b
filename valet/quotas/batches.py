"""Batch grants in the quota table (pure: the batch row, its document, its event).

A batch row ``b.<batchId>`` lives in the partition of its grants (``<tenant>.<profile>``), so it is
written in the same transaction as their grant rows (and the quota counters) and changed in the same
transaction as each file's settlement: the batch knows every upload's outcome exactly when the counters
do. When the last file is decided (or cancelled, or its window closes with nothing uploaded) that
transaction marks the batch's event ``pending``; whoever committed it sends the one ``batch`` event and
then marks it ``sent``. A duplicate delivery of a decision changes nothing (the upload already has its
status), so it sends nothing; a crash between the commit and the send leaves ``pending``, which the
reconciler's sweep sends after a grace period, as the decision events' marker works.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from valet.clock import utcnow
from valet.quotas.rows import Account, GrantRow, etag_of, grant_from, grant_row, stamp, unstamp
from valet.quotas.table import QuotaTable, replace_if_unchanged

PENDING, SENT = "pending", "sent"
CANCELLED, EXPIRED = "cancelled", "expired"


def batch_row(batch_id: str) -> str:
    return f"b.{batch_id}"


@dataclass(frozen=True)
class BatchRow:
    batch_id: str
    caller: str  # the caller's log-safe id (Caller.id), as the event names it
    caller_segment: str  # who may read it (the caller segment of the blob partition)
    uploads: tuple[str, ...]
    expires: datetime  # the end of the last file's upload window
    statuses: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    event: str = ""
    event_at: str = ""
    etag: str | None = None

    @property
    def complete(self) -> bool:
        return all(u in self.statuses for u in self.uploads)

    def decided(self, upload_id: str, status: str, reason: str | None, now: datetime) -> BatchRow:
        """This batch after one of its uploads got its outcome; the event is owed once all have one."""
        if upload_id not in self.uploads or upload_id in self.statuses:
            return self
        outcome = {"status": status, **({"reason": reason} if reason else {})}
        row = replace(self, statuses={**self.statuses, upload_id: outcome})
        if row.complete and not row.event:
            row = replace(row, event=PENDING, event_at=stamp(now))
        return row

    def document(self) -> dict[str, Any]:
        """``GET /api/batches/{batchId}``."""
        uploads = []
        for upload_id in self.uploads:
            outcome = self.statuses.get(upload_id, {"status": "pending"})
            uploads.append({"uploadId": upload_id, **outcome})
        return {"batchId": self.batch_id, "status": "complete" if self.complete else "pending", "uploads": uploads}

    def event_message(self) -> dict[str, Any]:
        """The one ``batch`` event on the decision queue (no SAS, token or key: ids and outcomes)."""
        return {"type": "batch", "batchId": self.batch_id, "caller": self.caller,
                "uploads": [{"uploadId": u, "status": self.statuses[u]["status"]} for u in self.uploads
                            if u in self.statuses], "completedAt": self.event_at}


def batch_entity(pk: str, row: BatchRow) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": batch_row(row.batch_id), "Kind": "batch", "Caller": row.caller,
            "CallerSegment": row.caller_segment, "Uploads": json.dumps(list(row.uploads)),
            "Statuses": json.dumps(row.statuses, sort_keys=True), "Event": row.event, "EventAt": row.event_at,
            "Expires": stamp(row.expires)}


def batch_from(entity: Mapping[str, Any]) -> BatchRow:
    return BatchRow(
        batch_id=str(entity["RowKey"])[2:], caller=str(entity.get("Caller", "")),
        caller_segment=str(entity.get("CallerSegment", "")),
        uploads=tuple(json.loads(str(entity.get("Uploads", "[]")))),
        expires=unstamp(str(entity["Expires"])), statuses=json.loads(str(entity.get("Statuses", "{}"))),
        event=str(entity.get("Event", "")), event_at=str(entity.get("EventAt", "")), etag=etag_of(entity),
    )


class BatchLedger:
    """Reading batches and settling their event: the parts that touch only batch rows."""

    def __init__(self, table: QuotaTable, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._table = table
        self._clock = clock

    def find(self, account: Account, batch_id: str) -> tuple[str, BatchRow] | None:
        """A batch of this caller (its partition and row), or ``None`` (another caller's looks the same)."""
        pk, entity = self._find(account, batch_row(batch_id))
        if entity is None:
            return None
        row = batch_from(entity)
        return (pk, row) if row.caller_segment == account.caller else None

    def find_grant(self, account: Account, upload_id: str) -> GrantRow | None:
        """A stored grant of this caller by upload id, whatever its profile (``DELETE`` without ``blobUri``)."""
        _, entity = self._find(account, grant_row(upload_id))
        grant = grant_from(entity) if entity is not None else None
        return grant if grant is not None and grant.caller == account.caller else None

    def event_sent(self, pk: str, row: BatchRow) -> None:
        """Mark a completed batch's event sent (an ETag race means another sender marked it: fine)."""
        entity = self._table.read(pk, [batch_row(row.batch_id)]).get(batch_row(row.batch_id))
        if entity is None or entity.get("Event") != PENDING:
            return
        self._table.submit(pk, [replace_if_unchanged({**batch_entity(pk, batch_from(entity)), "Event": SENT},
                                                     etag_of(entity))])

    def owed(self, grace: timedelta, *, limit: int = 100) -> list[tuple[str, BatchRow]]:
        """Completed batches whose event is still ``pending`` after ``grace`` (their sender crashed)."""
        before = stamp(self._clock() - grace)
        out: list[tuple[str, BatchRow]] = []
        for entity in self._table.query("Kind eq @k and Event eq @e and EventAt le @t",
                                        {"k": "batch", "e": PENDING, "t": before}):
            if len(out) >= limit:
                break
            out.append((str(entity["PartitionKey"]), batch_from(entity)))
        return out

    def _find(self, account: Account, row: str) -> tuple[str, Any]:
        """``row`` in any partition of the caller's tenant (``<tenant>.<profile>``: one range query)."""
        for entity in self._table.query("PartitionKey ge @lo and PartitionKey lt @hi and RowKey eq @r",
                                        {"lo": f"{account.tenant}.", "hi": f"{account.tenant}/", "r": row}):
            return str(entity["PartitionKey"]), entity
        return "", None
