"""Deciding an upload: accepted or quarantined, with a record, moved without a byte through the app.

The validator runs the steps below; what it decides is :func:`valet.validation.decision.decide` (pure),
and what touches storage is the storage side: :class:`~valet.validation.store.UploadStore` (the head, the
copy, the records), :class:`~valet.validation.tombstones.Tombstones` (tombstones, error tags) and
:class:`~valet.validation.announce.Announcer` (the decision event, the audit record).

:meth:`Validator.process` takes a blob *name* in the uploads container and does, safely to repeat:

1. read the head (one ranged GET of up to the sniff window, with the bytes as stored): the same response
   carries the properties, metadata, copy status and index tag count; a *sealed* tombstone (see
   :mod:`valet.validation.trusted`) means "already decided": done, in that one request; metadata that
   merely says "tombstone" is the client's and decides nothing. The index tags are read (one more
   request) only when the tag count says there are any (a scanner's verdict, a recorded failure);
2. if an earlier invocation may have failed after its copy (a failure recorded in the upload's tags, or
   an upload older than :data:`FIRST_TRY`), look for a destination copy with its record and finish that
   one; a fresh upload skips both lookups (a concurrent invocation's copy is met by the create-only copy);
3. check the upload (grant, path, expiry, no app-reserved metadata, not copy-created, size, type from
   that head, image and PDF structure, zip directory and local headers, scanner verdicts, declared
   sha256 over a bounded-memory stream) and decide; every read takes the bytes as stored
   (``decompress=False``);
4. server-side copy to ``accepted`` or ``quarantine`` at the same name, with the record as metadata,
   create-only (``If-None-Match: *``) and pinned to the checked source version (source ``If-Match``),
   then the copy's HTTP properties set by the validator when the upload's differ (one more request);
   an upload over the profile cap or copy-created gets a record with bounded evidence (its head and the
   head's sha256) instead of a copy;
5. replace the source with a sealed tombstone (``If-Match`` the source ETag) that occupies the name until
   the create-only SAS cannot be replayed, and carries the outcome for the status endpoint. Snapshots
   (``sp=c`` lets its holder take them) are not looked for: a create-only SAS cannot change the blob, so a
   snapshot holds the very bytes decided here, no grant can read it, and the sweep deletes it with the
   tombstone (``delete_snapshots="include"``). A quarantine always wins a race with an acceptance: the
   loser's accepted copy is deleted.

Every later read of the source is pinned to the ETag of the head's response; if the source changes under
us (a concurrent invocation wrote the tombstone), the whole step starts over and finds the finished decision. Storage
failures raise :class:`DecisionFailed` so the host retries, after recording ``valetstate=error`` and the
attempt count as index tags on the source (tags change no ETag, so recording an error does not trigger
the function again; the write is conditional on the ETag seen and re-checked, so it never wipes the tags
of a tombstone written meanwhile); the upload itself stays where it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError, ResourceModifiedError
from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient

from valet import telemetry
from valet.audit import AuditTrail
from valet.clock import utcnow
from valet.grants.granted import DEFAULT_CLOCK_SKEW
from valet.grants.policy import Policy
from valet.grants.token import GrantKeyRing
from valet.validation import records, trusted
from valet.validation.announce import Announcer
from valet.validation.decision import Rules, decide, tombstone_until, verified_upload_id
from valet.validation.events import SENT, DecisionEvents
from valet.validation.reasons import Outcome
from valet.validation.records import Decision
from valet.validation.scanners import Scanner, ScanResult
from valet.validation.store import DecisionFailed, SourceChanged, UploadStore
from valet.validation.structure import DEFAULT_READ_BUDGET, ImageLimits
from valet.validation.tombstones import Tombstones

__all__ = ["FIRST_TRY", "DecisionFailed", "Validator"]

log = logging.getLogger("valet.validation")

_RESTARTS = 3
FIRST_TRY = timedelta(seconds=60)  # an upload younger than this, with no failure recorded, is on its first try
# A tombstone with more index tags than these still owes its decision event (records.EVENT).
_TOMBSTONE_TAGS = len(records.tombstone_tags(datetime.fromtimestamp(0).astimezone()))


class Validator:
    def __init__(
        self,
        *,
        blob_service: BlobServiceClient,
        uploads: str,
        accepted: str,
        quarantine: str,
        keys: GrantKeyRing,
        policy: Policy,
        sas_ttl: timedelta,
        tombstone_grace: timedelta,
        sniff_bytes: int = 64 * 1024,
        copy_wait_seconds: float = 60.0,
        scanners: Sequence[Scanner] = (),
        image_limits: ImageLimits | None = None,
        structure_read_bytes: int = DEFAULT_READ_BUDGET,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
        events: DecisionEvents | None = None,
        audit_trail: AuditTrail | None = None,
    ) -> None:
        self.store = UploadStore(blob_service=blob_service, uploads=uploads, accepted=accepted,
                                 quarantine=quarantine, sniff_bytes=sniff_bytes,
                                 copy_wait_seconds=copy_wait_seconds, sleep=sleep)
        self.tombstones = Tombstones(self.store, trusted.Sealer(keys), event_pending=events is not None)
        self.announcer = Announcer(self.store, events, audit_trail)  # events None: decisions are not announced
        self.rules = Rules(keys=keys, policy=policy, clock_skew=clock_skew, scanners=tuple(scanners),
                           image_limits=image_limits or ImageLimits(), structure_read_bytes=structure_read_bytes)
        self._sas_ttl = sas_ttl
        self._grace = tombstone_grace
        self._clock = clock

    @property
    def service(self) -> BlobServiceClient:
        return self.store.service

    @property
    def uploads(self) -> str:
        return self.store.uploads

    @property
    def sealer(self) -> trusted.Sealer:
        return self.tombstones.sealer

    @property
    def events(self) -> DecisionEvents | None:
        return self.announcer.events

    def now(self) -> datetime:
        return self._clock()

    def is_tombstone(self, name: str, metadata: dict[str, str] | None) -> bool:
        """A tombstone this app wrote for ``name``: the seal proves it; metadata alone does not."""
        return self.tombstones.is_tombstone(name, metadata)

    def cancel(self, name: str, *, upload_id: str, caller: str, until: datetime) -> None:
        """Occupy ``name`` with a sealed ``cancelled`` tombstone (see :meth:`Tombstones.cancel`)."""
        self.tombstones.cancel(name, upload_id=upload_id, caller=caller, until=until, now=self._clock())

    # -- the one entry point ---------------------------------------------------------------------------

    def process(self, name: str, *, verdict: ScanResult | None = None) -> Decision | None:
        """Decide the upload at ``name`` (idempotent). Returns the decision, or ``None`` when there is no
        such upload and no record of one. ``verdict`` is a scanner result that arrived out of band (a
        Defender event) and overrides the configured scanners."""
        started = time.time_ns()  # the decision span's start: the head read belongs to the decision
        for _ in range(_RESTARTS):
            try:
                return self._process_once(name, verdict, started)
            except SourceChanged:
                continue
        raise DecisionFailed("The upload kept changing while it was being decided.", retry_after=5)

    def _process_once(self, name: str, verdict: ScanResult | None, started: int) -> Decision | None:
        store = self.store
        source = store.upload(name)
        try:
            props, head = store.read_head(source)
            if props is None:
                return store.find_record(name)
            if self.is_tombstone(name, props.metadata):
                decision = Decision.from_metadata(props.metadata, fallback=Outcome.QUARANTINED)
                if self.events is not None and (props.tag_count or 0) > _TOMBSTONE_TAGS:
                    # an earlier delivery could not send it
                    self.announcer.announce_pending(source, props, decision, self._clock())
                return decision
            found = store.find_record_at(name) if self._may_have_tried(source, props) else None
            if found is not None:
                existing, dest, dest_props = found
                if existing.outcome is Outcome.QUARANTINED:
                    store.discard_accepted(name)
                if existing.evidence == "":
                    store.set_destination_properties(dest, dest_props.content_settings, dest_props.etag, existing)
                return self._finish(source, props, existing, sends=True, created_accepted=False)
            decision = decide(store.stored_upload(source, props, head), store.pinned(source, props), self.rules,
                              self._clock(), verdict)
            observed = telemetry.current()
            with observed.decision(verified_upload_id(decision), start_time=started):
                decision, created = store.store(source, props, head, decision)
                final = self._finish(source, props, decision, sends=created,
                                     created_accepted=created and decision.outcome is Outcome.ACCEPTED)
                if created:  # this invocation stored the record: count the verdict once
                    lag = (self._clock() - props.creation_time).total_seconds() if props.creation_time else None
                    observed.decided(outcome=final.outcome.value, reason=final.reason, profile=final.profile,
                                     size=final.size or 0, lag_seconds=lag)
                return final
        except SourceChanged:
            raise
        except ResourceModifiedError as exc:
            raise SourceChanged() from exc
        except (AzureError, DecisionFailed) as exc:
            self.tombstones.record_error(source, exc)
            if isinstance(exc, DecisionFailed):
                raise
            raise DecisionFailed("Storage failed while deciding the upload.", retry_after=5) from exc
        except Exception as exc:  # one upload's defect is recorded on it, never a crash loop
            log.warning("deciding %s failed unexpectedly (%s)", name, type(exc).__name__)
            self.tombstones.record_error(source, exc)
            raise DecisionFailed("The upload could not be decided.", retry_after=5) from exc

    def _finish(self, source: BlobClient, props: BlobProperties, decision: Decision, *, sends: bool,
                created_accepted: bool) -> Decision:
        """Tombstone the upload; the invocation whose tombstone landed audits it. ``sends``: this invocation
        stored the record (or finishes an earlier try's), so it sends the decision event, at the same time
        as the tombstone write (see :mod:`valet.validation.announce`). One that lost to a quarantine
        removes the accepted copy it made: a quarantine always wins."""
        until = tombstone_until(decision, props.creation_time, self._clock(), sas_ttl=self._sas_ttl,
                                grace=self._grace)
        sending = self.announcer.send(decision, props.name) if sends else None
        try:
            ours, winner = self.tombstones.write(source, props, decision, until)
        finally:
            failure = sending.exception() if sending is not None else None  # waits for the queue's answer
        sent = sending is not None and failure is None
        if ours:
            self.announcer.audit(decision, props.name)
            if failure is not None:
                raise failure  # the marker stays on the tombstone: a later delivery or the reconciler sends it
            if sent:
                try:
                    source.set_blob_tags(records.tombstone_tags(until))  # the marker goes: the event is on the queue
                except AzureError:
                    SENT.remember(source.url)  # whoever meets the marker here removes it: no second event
                    raise
            return decision
        if winner is None or winner.outcome is decision.outcome:
            if sent:
                self.tombstones.settle_tags(source)  # the tombstone that won owes no event: ours is on the queue
            return decision  # the same verdict: ours carries the full record
        if winner.outcome is Outcome.QUARANTINED and created_accepted:
            self.store.discard_accepted(props.name)
        if sent:
            self.announcer.correct(props.name, winner)
        return winner

    def _may_have_tried(self, source: BlobClient, props: BlobProperties) -> bool:
        """Whether an earlier invocation may have stored a destination copy and then failed before its
        tombstone: it recorded its failure in the upload's tags, or the upload is old enough for a retry
        after a crash (or the reconciler) to be deciding it. A fresh upload with no failure recorded was
        not tried before, so the two destination lookups are skipped; a copy made by a concurrent
        invocation is still found by the create-only copy (409) and the race on the tombstone."""
        tags = self.store.tags(source, props)
        if tags.get(records.STATE) == records.ERROR or records.ATTEMPTS in tags:
            return True
        created = props.creation_time
        return created is None or self._clock() - created >= FIRST_TRY
