"""The validation feature, assembled from settings: what the triggers and the status route call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import BlobServiceClient

from valet.audit import AuditTrail
from valet.settings import Settings
from valet.validation.events import DecisionEvents
from valet.validation.malware import MalwareEvents
from valet.validation.reconcile import Reconciler, RunReport
from valet.validation.records import Decision
from valet.validation.scanners import SCANNERS
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

    @classmethod
    def from_settings(cls, settings: Settings, blob_service: BlobServiceClient,
                      events: DecisionEvents | None = None, audit: AuditTrail | None = None) -> Validation:
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
        reconciler = Reconciler(blob_service=blob_service, uploads=uploads, decide=validator.process,
                                is_decided=validator.tombstones.is_tombstone,
                                min_age=options.reconcile_after, max_attempts=options.max_attempts,
                                limit=options.reconcile_limit)
        return cls(validator, status, MalwareEvents(validator, storage.account_url), options.sweep_limit,
                   reconciler)

    def on_blob(self, container: str, name: str) -> Decision | None:
        """The blob trigger's entry: only uploads-container blobs are decided."""
        if container != self.validator.store.uploads:
            return None
        return self.validator.process(name)

    def on_event(self, event_type: str, data: Mapping[str, Any]) -> Decision | None:
        return self.malware.handle(event_type, data)

    def reconcile(self) -> RunReport:
        """The reconciler's timer: decide uploads that no trigger decided (bounded work per run)."""
        return self.reconciler.run()

    def sweep(self) -> int:
        return self.validator.tombstones.sweep(self.sweep_limit)
