"""The validation feature, assembled from settings: what the triggers and the status route call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import BlobServiceClient

from valet.audit import AuditTrail
from valet.quotas.service import Quotas
from valet.quotas.store import Outcome as Settlement
from valet.settings import Settings
from valet.validation.events import DecisionEvents
from valet.validation.malware import MalwareEvents
from valet.validation.reasons import Outcome
from valet.validation.reconcile import Reconciler, RunReport
from valet.validation.records import Decision
from valet.validation.scanners import SCANNERS
from valet.validation.staged import DiscardReport, StagedDiscard
from valet.validation.status import StatusReader
from valet.validation.structure import ImageLimits
from valet.validation.validator import Validator


@dataclass
class Validation:
    validator: Validator
    status: StatusReader
    malware: MalwareEvents
    sweep_limit: int
    reconciler: Reconciler
    staged: StagedDiscard
    quotas: Quotas | None = None

    @classmethod
    def from_settings(cls, settings: Settings, blob_service: BlobServiceClient,
                      events: DecisionEvents | None = None, quotas: Quotas | None = None,
                      audit: AuditTrail | None = None) -> Validation:
        """``events``: where decisions are announced (the runtime passes the decision queue); ``None``
        announces nothing (tools and tests that only decide). ``audit``: the audit trail decisions are
        appended to (``None``: the log line only)."""
        storage, options = settings.storage, settings.validation
        uploads, accepted, quarantine = (
            storage.uploads_container, storage.accepted_container, storage.quarantine_container
        )
        validator = Validator(
            blob_service=blob_service,
            uploads=uploads,
            accepted=accepted,
            quarantine=quarantine,
            keys=settings.grant_keys,
            policy=settings.policy,
            sas_ttl=settings.sas_ttl,
            tombstone_grace=options.tombstone_grace,
            sniff_bytes=options.sniff_bytes,
            copy_wait_seconds=options.copy_wait_seconds,
            scanners=[SCANNERS[name]() for name in options.scanners],
            image_limits=ImageLimits(options.image_max_pixels, options.image_max_dimension),
            structure_read_bytes=options.structure_read_bytes,
            clock_skew=settings.clock_skew,
            events=events,
            audit_trail=audit,
        )
        status = StatusReader(blob_service=blob_service, uploads=uploads, accepted=accepted,
                              quarantine=quarantine, keys=settings.grant_keys,
                              sas_ttl=settings.upload_window,  # renewals keep an upload pending this long
                              max_attempts=options.max_attempts)
        settled = _Settling(validator, quotas)
        reconciler = Reconciler(blob_service=blob_service, uploads=uploads, decide=settled.process,
                                is_decided=validator.tombstones.is_tombstone,
                                error_tags=validator.tombstones.error_tags,
                                min_age=options.reconcile_after, max_attempts=options.max_attempts,
                                limit=options.reconcile_limit)
        staged = StagedDiscard(blob_service=blob_service, uploads=uploads, is_decided=validator.tombstones.is_tombstone,
                               grace=settings.clock_skew, limit=options.reconcile_limit,
                               observe=quotas.staged_observer() if quotas is not None else None)
        return cls(validator, status, MalwareEvents(validator, storage.account_url), options.sweep_limit,
                   reconciler, staged, quotas)

    def on_blob(self, container: str, name: str) -> Decision | None:
        """The blob trigger's entry: only uploads-container blobs are decided."""
        if container != self.validator.store.uploads:
            return None
        return _Settling(self.validator, self.quotas).process(name)

    def on_event(self, event_type: str, data: Mapping[str, Any]) -> Decision | None:
        return self.malware.handle(event_type, data)

    def reconcile(self) -> RunReport:
        """The reconciler's timer: decide uploads that no trigger decided (bounded work per run)."""
        return self.reconciler.run()

    def discard_staged(self) -> DiscardReport:
        """Delete the blocks staged for uploads whose window closed and that were never committed."""
        return self.staged.run()

    def sweep(self) -> int:
        """The sweep timer: blocks staged and never committed (:mod:`valet.validation.staged`), then
        tombstones past their grace, then grants whose window closed (the quota store); returns the
        tombstones removed."""
        self.discard_staged()
        swept = self.validator.tombstones.sweep(self.sweep_limit)
        if self.quotas is not None:
            self.quotas.sweep(limit=self.sweep_limit)
        return swept


class _Settling:
    """Decide an upload, then consume its grant's reservation whatever the verdict (an upload that arrived
    cost storage and work), charging the bytes that arrived when they are more than it declared (an
    oversize upload is quarantined, and its bytes are kept for review). Safe to repeat: a reservation is
    settled once. Only a grant whose verified name says it stored a row reaches the quota table
    (``Decision.stored_row``; unknown for a grant signed before names said, and for a decision read back
    from its record: then the profile and settings decide)."""

    def __init__(self, validator: Validator, quotas: Quotas | None) -> None:
        self._validator = validator
        self._quotas = quotas

    def process(self, name: str) -> Decision | None:
        decision = self._validator.process(name)
        if self._quotas is not None and decision is not None and decision.outcome is not Outcome.CANCELLED:
            partition = "/".join(name.split("/", 2)[:2])
            reason = decision.reason if decision.outcome is Outcome.QUARANTINED else None
            self._quotas.decide(partition, decision.profile, decision.upload_id,
                                Settlement(True, decision.outcome.value, reason, size=decision.size),
                                stored_row=decision.stored_row)
        return decision
