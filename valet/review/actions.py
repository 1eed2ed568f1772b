"""Release and purge: what a reviewer's decision does to storage. Every step is conditional and safe to
repeat, and a malware verdict always wins.

Release (the quarantine record is the commit point):

1. the bytes are the decided ones: sha256 streamed from the quarantine copy pinned to the ETag the
   reviewer saw (``If-Match``), equal to the recorded sha256 when the decision recorded one;
2. the quarantine record is marked ``released`` (by, when, why, the sha256) with ``If-Match``: from here a
   retry finishes the same release;
3. a server-side copy to ``accepted`` (create-only, source pinned), whose record says accepted, previously
   quarantined, reviewed by whom, when and why, with the event marker tag;
4. the tombstone, while it still holds the name, is rewritten to ``accepted`` with ``If-Match``: a late
   Defender verdict that moved the copy back (:mod:`valet.validation.malware`) changes the tombstone
   first, so the write fails, the release is undone (accepted copy removed, record marked ``malware``) and
   answers ``409 malware_verdict``; the same happens when the accepted copy is gone or the quarantine
   record says malware by then;
5. the decision event ``accepted`` with ``previousStatus: "quarantined"`` goes out, and the marker goes.

Purge overwrites the quarantine blob (``If-Match``) with a short marker body and the record marked
``purged``: the bytes or evidence are gone (Azure keeps them as a soft-deleted snapshot for the
account's blob soft-delete days), the record stays, the status still answers ``quarantined``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

from valet.caller import Caller
from valet.clock import utcnow
from valet.errors import Conflict, ServiceUnavailable, ValetError
from valet.review import rules
from valet.review.quarantine import QuarantineItem, item_of
from valet.validation import records, trusted
from valet.validation.blobio import sha256_of
from valet.validation.events import DecisionEvents
from valet.validation.reasons import Outcome, Reason
from valet.validation.records import Decision

PURGED_BODY = b"valet: purged by review\n"
COPY_WAIT_SECONDS = 30.0


class PreconditionFailed(ValetError):
    status = 412
    code = "record_changed"
    title = "The record changed"


class _Pinned:
    """Range reads of one version of the quarantine copy (``If-Match``), for the hash."""

    def __init__(self, blob: BlobClient, etag: str) -> None:
        self._blob, self._etag = blob, etag

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: Any) -> Any:
        return self._blob.download_blob(offset=offset, length=length, etag=self._etag,
                                        match_condition=MatchConditions.IfNotModified, decompress=False, **kwargs)


class ReviewActions:
    def __init__(self, *, blob_service: BlobServiceClient, uploads: str, accepted: str, quarantine: str,
                 sealer: trusted.Sealer, events: DecisionEvents | None, clock: Callable[[], datetime] = utcnow,
                 step: Callable[[str], None] = lambda _: None) -> None:
        self._service = blob_service
        self._uploads, self._accepted, self._quarantine = uploads, accepted, quarantine
        self._sealer = sealer
        self._events = events
        self._clock = clock
        self.step = step  # called after each storage step (tests interleave a late verdict here)

    # -- release ---------------------------------------------------------------------------------------

    def release(self, item: QuarantineItem, reviewer: Caller, reason: str, *, if_match: str = "") -> Decision:
        """The accepted decision after release (idempotent). 409 ``malware_verdict`` / ``upload_purged`` /
        ``evidence_only`` / ``content_changed``; 412 ``record_changed`` when ``if_match`` is not the ETag."""
        rules.check_not_own(reviewer, item.decision, item.name)
        try:
            if item.decision.review != rules.RELEASED:
                item = self._mark_released(item, reviewer, reason, if_match)
            return self._finish_release(item)
        except ResourceModifiedError as exc:
            if rules.is_malware(self._reread(item).decision):  # a verdict marked the record meanwhile
                raise Conflict("A malware verdict arrived: it can never be released.", code="malware_verdict") from exc
            raise PreconditionFailed("The record changed meanwhile; read it again.") from exc
        except AzureError as exc:
            raise ServiceUnavailable("Storage failed during the release; try again.", code="storage_unavailable",
                                     retry_after=5) from exc

    def _mark_released(self, item: QuarantineItem, reviewer: Caller, reason: str, if_match: str) -> QuarantineItem:
        rules.check_releasable(item.decision)
        if if_match and if_match.strip('"') != item.etag.strip('"'):
            raise PreconditionFailed("The record is not the version you reviewed; read it again.")
        tomb = self._tombstone()(item.name)
        if tomb is not None and rules.is_malware(tomb[0]):
            self._record_malware(item)
            raise Conflict("A malware verdict can never be released.", code="malware_verdict")
        blob = self._service.get_blob_client(self._quarantine, item.name)
        sha = sha256_of(_Pinned(blob, item.etag), item.stored_bytes)
        if item.decision.sha256 and sha != item.decision.sha256.lower():
            raise Conflict("The kept bytes are not the ones that were decided.", code="content_changed")
        released = replace(item.decision, review=rules.RELEASED, reviewed_by=reviewer.id,
                           reviewed_at=self._clock(), review_reason=reason, sha256=sha)
        result = blob.set_blob_metadata(released.metadata(), etag=item.etag,
                                        match_condition=MatchConditions.IfNotModified)
        self.step("marked")
        return QuarantineItem(item.name, released, str(result["etag"]), item.stored_bytes)

    def accepted_decision(self, item: QuarantineItem) -> Decision:
        d = item.decision
        return replace(d, outcome=Outcome.ACCEPTED, previous=Outcome.QUARANTINED.value,
                       decided_at=d.reviewed_at or self._clock(), detail=f"released by review ({d.reason})")

    def _finish_release(self, item: QuarantineItem) -> Decision:
        decision = self.accepted_decision(item)
        dest = self._service.get_blob_client(self._accepted, item.name)
        source = self._service.get_blob_client(self._quarantine, item.name)
        tags = decision.tags() if self._events is None else {**decision.tags(), records.EVENT: records.PENDING}
        try:
            dest.start_copy_from_url(source.url, metadata=decision.metadata(), tags=tags,
                                     match_condition=MatchConditions.IfMissing, source_etag=item.etag,
                                     source_match_condition=MatchConditions.IfNotModified)
        except ResourceExistsError:
            pass  # an earlier try copied it
        except HttpResponseError as exc:
            if exc.status_code == 412:  # the quarantine record changed since it was marked
                return self._undo_if_malware(item, self._reread(item))
            raise
        props = self._wait_for_copy(dest)
        if props is None:
            return self._undo_if_malware(item, self._reread(item))
        wanted = trusted.destination_settings(True, decision.declared_type)
        if trusted.settings_differ(props.content_settings, wanted):
            dest.set_http_headers(wanted, etag=props.etag, match_condition=MatchConditions.IfNotModified)
        self.step("copied")
        if not self._update_tombstone(item.name, decision):
            self._undo(item)
        self.step("tombstone")
        now = self._reread(item)
        if rules.is_malware(now.decision) or self._wait_for_copy(dest) is None:
            self._undo(item)
        if self._events is not None and dest.get_blob_tags().get(records.EVENT) == records.PENDING:
            self._events.publish(decision, self._accepted, item.name)
            dest.set_blob_tags(decision.tags())
        return decision

    def _update_tombstone(self, name: str, decision: Decision) -> bool:
        """Rewrite the tombstone to ``decision`` (conditional); ``False`` when a malware verdict holds it."""
        source = self._service.get_blob_client(self._uploads, name)
        for _ in range(3):
            found = self._tombstone()(name)
            if found is None:
                return True  # swept already: the destination records alone answer the status
            tomb, etag, until = found
            if rules.is_malware(tomb):
                return rules.is_malware(decision)
            if tomb.outcome is decision.outcome and tomb.reason == decision.reason:
                return True
            metadata = self._sealer.seal(self._uploads, name, records.tombstone_metadata(decision, until))
            try:
                source.set_blob_metadata(metadata, etag=etag, match_condition=MatchConditions.IfNotModified)
                return True
            except ResourceModifiedError:
                continue
        return False

    def _tombstone(self) -> Callable[[str], tuple[Decision, str, datetime] | None]:
        def read(name: str) -> tuple[Decision, str, datetime] | None:
            try:
                props = self._service.get_blob_client(self._uploads, name).get_blob_properties()
            except ResourceNotFoundError:
                return None
            if not records.is_tombstone(props.metadata) or not self._sealer.verify(self._uploads, name,
                                                                                    props.metadata):
                return None
            until = records.parse_timestamp(props.metadata.get(records.UNTIL)) or self._clock()
            return Decision.from_metadata(props.metadata, fallback=Outcome.QUARANTINED), str(props.etag), until
        return read

    def _reread(self, item: QuarantineItem) -> QuarantineItem:
        return item_of(self._service.get_blob_client(self._quarantine, item.name).get_blob_properties())

    def _undo_if_malware(self, item: QuarantineItem, now: QuarantineItem) -> Decision:
        if rules.is_malware(now.decision):
            self._undo(now)
        raise PreconditionFailed("The record changed meanwhile; read it again.")

    def _undo(self, item: QuarantineItem) -> None:
        """A malware verdict won the race: remove the accepted copy, keep the verdict on the record."""
        try:
            self._service.get_blob_client(self._accepted, item.name).delete_blob()
        except ResourceNotFoundError:
            pass
        marked = self._record_malware(self._reread(item))
        self._update_tombstone(item.name, marked)  # the status answers the verdict again
        raise Conflict("A malware verdict arrived: it can never be released.", code="malware_verdict")

    def _record_malware(self, item: QuarantineItem) -> Decision:
        """The quarantine record says malware (and is no longer released), whatever it said before."""
        d = item.decision
        if rules.is_malware(d) and d.review != rules.RELEASED:
            return d
        marked = replace(d, outcome=Outcome.QUARANTINED, reason=Reason.MALWARE.value,
                         detail="a malware verdict arrived during review", decided_at=self._clock(),
                         review="", reviewed_by="", reviewed_at=None, review_reason="")
        try:
            self._service.get_blob_client(self._quarantine, item.name).set_blob_metadata(
                marked.metadata(), etag=item.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            pass  # changed again meanwhile: the next read decides
        return marked

    def _wait_for_copy(self, dest: BlobClient) -> Any:
        deadline = time.monotonic() + COPY_WAIT_SECONDS
        delay = 0.1
        while True:
            try:
                props = dest.get_blob_properties()
            except ResourceNotFoundError:
                return None
            status = props.copy.status if props.copy else None
            if status in (None, "success"):
                return props
            if status in ("failed", "aborted") or time.monotonic() >= deadline:
                raise ServiceUnavailable("The copy to accepted has not finished; try again.",
                                         code="storage_unavailable", retry_after=10)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- purge -----------------------------------------------------------------------------------------

    def purge(self, item: QuarantineItem, reviewer: Caller, reason: str, *, if_match: str = "") -> Decision:
        """Delete the kept bytes or evidence; the record stays, marked ``purged`` (idempotent)."""
        rules.check_not_own(reviewer, item.decision, item.name)
        if item.decision.review == rules.PURGED:
            return item.decision
        if item.decision.review == rules.RELEASED:
            raise Conflict("The upload was released: it is the uploader's now.", code="upload_released")
        if if_match and if_match.strip('"') != item.etag.strip('"'):
            raise PreconditionFailed("The record is not the version you reviewed; read it again.")
        purged = replace(item.decision, review=rules.PURGED, reviewed_by=reviewer.id, reviewed_at=self._clock(),
                         review_reason=reason)
        blob = self._service.get_blob_client(self._quarantine, item.name)
        try:
            blob.upload_blob(PURGED_BODY, overwrite=True, metadata=purged.metadata(), tags=purged.tags(),
                             content_settings=ContentSettings(content_type=trusted.OCTET_STREAM),
                             etag=item.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError as exc:
            raise PreconditionFailed("The record changed meanwhile; read it again.") from exc
        except AzureError as exc:
            raise ServiceUnavailable("Storage failed during the purge; try again.", code="storage_unavailable",
                                     retry_after=5) from exc
        return purged
