"""Announcing decisions: the decision event on the queue, and the audit record.

At least once, and once in the ordinary case. The event is sent once the decision is durable (the
destination copy with its record exists, so a consumer can always read the accepted blob), by the
invocation that stored that record (create-only: one per destination) or that finishes a record an
earlier try stored; concurrent deliveries that found the record stored send nothing. The message goes
out while the tombstone is written, not after it (one request less on the way to the end of the
invocation; the event can reach a consumer a few milliseconds before the status route shows the
verdict). The tombstone carries the index tag valetevent=pending, removed once the message is on the
queue, so "decided, event owed" survives any crash: if sending fails, the invocation fails and the
host tries again; that delivery (or the tombstone's own trigger) finds the tombstone, sees from its
tag count (in the same head read) that the marker is still there, and sends the event then, once the
tombstone is older than :data:`EVENT_GRACE` (before that its writer may still be sending it; the
reconciler picks up older tombstones that still owe one). When storage fails between sending and
removing the marker, the process remembers the event went out (``events.SENT``), and whoever meets the
marker next in it removes the marker instead of sending again; a crash there, or another instance
meeting the marker, repeats the event, and so can a sender that lost the tombstone race to a different verdict (it
then sends the final verdict again, after its own): consumers de-duplicate by uploadId + status and
take the last status.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobClient, BlobProperties

from valet.audit import Action, Actor, AuditTrail, AuditUnavailable
from valet.telemetry import traces
from valet.validation import records
from valet.validation.events import SENT, DecisionEvents
from valet.validation.records import Decision
from valet.validation.store import UploadStore

audit = logging.getLogger("valet.audit")
log = logging.getLogger("valet.validation")

EVENT_GRACE = timedelta(seconds=30)  # a tombstone's writer has this long to send its event
# Where decision events are sent while the tombstone is written: one pool for the process (threads start on
# first use), whatever the number of validators.
_SENDER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="valet-events")


class Announcer:
    """Sends decision events (``events`` None: decisions are not announced) and writes the audit record."""

    def __init__(self, store: UploadStore, events: DecisionEvents | None, trail: AuditTrail | None = None) -> None:
        self._store = store
        self.events = events
        self.trail = trail  # the audit trail (valet.audit); None: the log line only

    def send(self, decision: Decision, name: str) -> Future[None] | None:
        """Start sending the event on the sender threads (the storage clients are thread-safe); ``None``
        when decisions are not announced."""
        if self.events is None:
            return None
        publish = traces.carried(self.events.publish)  # the send span stays in the decision's trace
        return _SENDER.submit(publish, decision, self._store.destination(decision), name)

    def publish(self, decision: Decision, container: str, name: str) -> None:
        """Send the event now (the caller handles a failure)."""
        if self.events is not None:
            self.events.publish(decision, container, name)

    def correct(self, name: str, winner: Decision) -> None:
        """This invocation announced a verdict that lost to a quarantine: announce the one that stands, so
        the last event this invocation sent is the final verdict (the winner sends its own as well)."""
        if self.events is None:
            return
        decision = self._store.find_record(name) or winner
        try:
            self.events.publish(decision, self._store.destination(decision), name)
        except AzureError as exc:
            log.warning("correction event for %s not sent (%s)", name, type(exc).__name__)

    def announce_pending(self, source: BlobClient, props: BlobProperties, tombstone: Decision,
                         now: datetime) -> None:
        """Send the event a tombstone still owes, unless its writer may still be sending it: a tombstone
        younger than :data:`EVENT_GRACE` is left alone (its writer removes the marker milliseconds after
        the write), so concurrent deliveries do not repeat the event; the reconciler comes back to older
        ones (see :mod:`valet.validation.reconcile`)."""
        if self.events is None:
            return
        if SENT.sent(source.url):  # this process sent it; only removing the marker failed
            tags = self._store.tags(source, props)
            source.set_blob_tags({k: v for k, v in tags.items() if k != records.EVENT})
            SENT.forget(source.url)
            return
        written = props.last_modified or props.creation_time
        if written is not None and now - written < EVENT_GRACE:
            return
        tags = self._store.tags(source, props)  # the tag count said there is more than the tombstone's own
        if tags.get(records.EVENT) != records.PENDING:
            return
        decision = self._store.find_record(props.name) or tombstone  # the full record lives on the destination copy
        self.events.publish(decision, self._store.destination(decision), props.name)
        source.set_blob_tags({k: v for k, v in tags.items() if k != records.EVENT})

    def audit(self, decision: Decision, name: str) -> None:
        audit.info(
            "upload decided",
            extra={
                "event": "decision",
                "upload_id": decision.upload_id,
                "caller": decision.caller,
                "outcome": decision.outcome.value,
                "reason": decision.reason,
                "detail": decision.detail,
                "blob": f"{self._store.uploads}/{name}",
                "profile": decision.profile,
                "declared_type": decision.declared_type,
                "detected_type": decision.detected_type,
                "size": decision.size,
                "sha256": decision.sha256 or None,
                "scan": decision.scan or None,
                "decided_at": records.timestamp(decision.decided_at),
            },
        )
        if self.trail is None:
            return
        try:  # with the decision itself: the tombstone that made it final has just landed
            self.trail.write(Action.DECISION, actor=Actor.app("validator"), upload_id=decision.upload_id,
                             owner=decision.caller, outcome=decision.outcome.value, reason=decision.reason,
                             detail=decision.detail, data={
                                 "blob": f"{self._store.uploads}/{name}", "profile": decision.profile,
                                 "declaredType": decision.declared_type, "detectedType": decision.detected_type,
                                 "size": decision.size, "sha256": decision.sha256, "scan": decision.scan,
                                 "previousStatus": decision.previous})
        except AuditUnavailable:  # the decision stands; the trail's log line keeps the record
            log.error("audit record of the decision of %s not appended", name)
