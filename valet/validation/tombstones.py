"""Tombstones: writing them, and removing them once the SAS they guard against can no longer be replayed.

A tombstone replaces a decided upload at its name (``If-Match`` the ETag the decision checked), or
occupies the name of a cancelled grant (create-only), for as long as the upload's create-only SAS could
be replayed. Its metadata carries the outcome for the status route and is sealed with an HMAC
(:class:`~valet.validation.trusted.Sealer`): only a sealed tombstone counts as one. :class:`Tombstones`
is the writer the validator, the malware handler and the cancel route use; it also records a failed
decision on the upload (index tags) and keeps the tombstone's own tags (the sweep's query, the event
marker) right.

Removing them.
Tombstones carry index tags (``valetstate=tombstone``, ``valetuntil=<UTC time>``), so one Find Blobs by
Tags query returns the expired ones without listing the container. Each run deletes at most ``limit``;
every delete is conditional on the ETag seen, so a tombstone rewritten meanwhile (its outcome updated)
is left for the next run.

Tags prove nothing (a client can send ``x-ms-tags`` with its upload on Azurite): only a blob whose
metadata carries a valid seal is deleted. The delete takes the blob's snapshots with it
(``delete_snapshots="include"``; the upload's SAS lets its holder snapshot the tombstone too, and a plain
delete then fails with 409 ``SnapshotsPresent``), and one blob that cannot be deleted is logged and
skipped, never the end of the run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient, ContentSettings

from valet.clock import utcnow
from valet.errors import Conflict, ServiceUnavailable
from valet.validation import records, trusted
from valet.validation.decision import cancelled
from valet.validation.events import SENT
from valet.validation.reasons import Outcome
from valet.validation.records import Decision
from valet.validation.store import UploadStore
from valet.validation.trusted import Sealer

audit = logging.getLogger("valet.audit")

log = logging.getLogger("valet.validation")


def sweep_tombstones(
    service: BlobServiceClient, container: str, *, limit: int, sealer: Sealer,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Delete up to ``limit`` expired tombstones from ``container``; returns how many were deleted."""
    now = records.timestamp(clock())
    query = f"\"{records.STATE}\" = '{records.TOMBSTONE}' AND \"{records.UNTIL}\" < '{now}'"
    client = service.get_container_client(container)
    deleted = skipped = 0
    # Full pages: Azurite 3.37 applies maxresults before the filter and then ends the listing early.
    for found in client.find_blobs_by_tags(query, results_per_page=1000):
        if deleted >= limit:
            break
        blob = client.get_blob_client(found.name)
        try:
            props = blob.get_blob_properties()
            until = records.parse_timestamp(props.metadata.get(records.UNTIL))
            if (not records.is_tombstone(props.metadata) or not sealer.verify(container, found.name, props.metadata)
                    or until is None or records.timestamp(until) >= now):
                continue  # the tag index lags, or the tags were not ours: the sealed blob itself decides
            blob.delete_blob(delete_snapshots="include", etag=props.etag,
                             match_condition=MatchConditions.IfNotModified)
            deleted += 1
        except (ResourceNotFoundError, ResourceModifiedError):
            continue
        except Exception as exc:  # noqa: BLE001 - one blob that cannot be removed never stops the sweep
            skipped += 1
            log.warning("tombstone %s/%s not removed (%s: %s); skipped until the next run", container,
                        found.name, type(exc).__name__, getattr(exc, "error_code", None) or "-")
    if deleted or skipped:
        log.info("removed %d expired tombstones from %s (%d skipped)", deleted, container, skipped)
    return deleted


def sealed_error_tags(sealer: Sealer, container: str, name: str, tags: Mapping[str, str] | None) -> Mapping[str, str]:
    """``tags`` if they are the failed-attempt record this app wrote on blob ``container/name`` (sealed,
    like a tombstone); ``{}`` otherwise. A client holding a create-only SAS can set index tags at creation
    (``x-ms-tags``): ``valetstate=error&valetattempts=99`` of its own must not make the reconciler give its
    upload up, nor the status route call it ``needs_operator``."""
    if tags is None or records.tag(tags, records.STATE) != records.ERROR:
        return {}
    return tags if sealer.verify(container, name, tags) else {}


class Tombstones:
    """Writes the sealed tombstones of the uploads container; ``event_pending``: new tombstones carry the
    ``valetevent=pending`` marker (decisions are announced, see :mod:`valet.validation.announce`)."""

    def __init__(self, store: UploadStore, sealer: Sealer, *, event_pending: bool) -> None:
        self._store = store
        self._uploads = store.uploads
        self.sealer = sealer
        self._pending = event_pending

    def is_tombstone(self, name: str, metadata: dict[str, str] | None) -> bool:
        """A tombstone this app wrote for ``name``: the seal proves it; metadata alone does not."""
        return records.is_tombstone(metadata) and self.sealer.verify(self._uploads, name, metadata)

    def error_tags(self, name: str, tags: Mapping[str, str] | None) -> Mapping[str, str]:
        """The failed-attempt record on upload ``name`` (:func:`sealed_error_tags`)."""
        return sealed_error_tags(self.sealer, self._uploads, name, tags)

    def write(self, source: BlobClient, props: BlobProperties, decision: Decision,
              until: datetime) -> tuple[bool, Decision | None]:
        """Replace the upload with its sealed tombstone. ``(True, None)`` if this call did: the decision is
        final then, so the audit record is written once, also when a response was lost and the storage
        client sent the write again (the retry finds a tombstone; its write id says whose). Otherwise
        ``(False, the decision on the tombstone that won)``."""
        write_id = uuid.uuid4().hex
        metadata = self.sealer.seal(self._uploads, props.name, records.tombstone_metadata(decision, until, write_id))
        tags = records.tombstone_tags(until, event_pending=self._pending)
        try:
            if trusted.unreadable(props):  # storage refuses to overwrite an archived blob: free the name first
                source.delete_blob(delete_snapshots="include", etag=props.etag,
                                   match_condition=MatchConditions.IfNotModified)
                return self._occupy(source, props.name, metadata, tags, write_id)
            source.upload_blob(records.TOMBSTONE_BODY, overwrite=True, metadata=metadata, tags=tags,
                               content_settings=ContentSettings(content_type=trusted.OCTET_STREAM),
                               etag=props.etag, match_condition=MatchConditions.IfNotModified)
            return True, None
        except ResourceModifiedError:
            whose = self._whose(source, props.name, write_id)
            if whose is None:
                raise
            return whose
        except ResourceNotFoundError:  # the name was freed: occupy it again, create-only
            return self._occupy(source, props.name, metadata, tags, write_id)

    def _occupy(self, source: BlobClient, name: str, metadata: dict[str, str], tags: dict[str, str],
                write_id: str) -> tuple[bool, Decision | None]:
        """The tombstone at a free name, create-only (a replayed upload that got there first is decided on
        its own: its write triggers the validator again)."""
        try:
            source.upload_blob(records.TOMBSTONE_BODY, metadata=metadata, tags=tags)
            return True, None
        except ResourceExistsError:
            whose = self._whose(source, name, write_id)
            if whose is None:
                raise
            return whose

    def _whose(self, source: BlobClient, name: str, write_id: str) -> tuple[bool, Decision | None] | None:
        """Whose tombstone is at ``name`` now: ours (a retried write), another's decision, or ``None``
        when the blob there is no tombstone (the write's own error stands)."""
        now = self._store.properties(source)
        if now is None or not self.is_tombstone(name, now.metadata):
            return None
        if now.metadata.get(records.WRITE_ID) == write_id:
            return True, None
        return False, Decision.from_metadata(now.metadata, fallback=Outcome.QUARANTINED)

    def cancel(self, name: str, *, upload_id: str, caller: str, until: datetime, now: datetime) -> None:
        """Occupy ``name`` with a sealed ``cancelled`` tombstone before anything was uploaded, so the
        grant's SAS (which cannot be revoked one by one) can no longer create the blob. Create-only:
        :class:`~valet.errors.Conflict` once an upload exists or was decided; a repeated cancel succeeds."""
        decision = cancelled(upload_id, caller, now)
        metadata = self.sealer.seal(self._uploads, name, records.tombstone_metadata(decision, until, uuid.uuid4().hex))
        source = self._store.upload(name)
        try:
            source.upload_blob(records.TOMBSTONE_BODY, overwrite=False, metadata=metadata,
                               tags=records.tombstone_tags(until),
                               content_settings=ContentSettings(content_type=trusted.OCTET_STREAM))
        except ResourceExistsError:
            found = self._store.properties(source)
            if found is not None and self.is_tombstone(name, found.metadata) and \
                    found.metadata.get(records.OUTCOME) == Outcome.CANCELLED.value:
                return  # cancelled already
            raise Conflict("Something was uploaded already; see the upload's status.", code="upload_exists") from None
        except AzureError as exc:
            raise ServiceUnavailable("Storage is unavailable right now.", code="storage_unavailable") from exc
        audit.info("grant cancelled", extra={"event": "cancel", "upload_id": upload_id, "caller": caller,
                                             "blob": f"{self._uploads}/{name}"})

    def settle_tags(self, source: BlobClient) -> None:
        """Give the tombstone at ``source`` its own tags again, without the event marker. Best effort: a
        marker left behind repeats the event later, it loses nothing."""
        try:
            now = source.get_blob_properties()
            until = records.parse_timestamp(now.metadata.get(records.UNTIL))
            if until is not None and self.is_tombstone(now.name, now.metadata):
                source.set_blob_tags(records.tombstone_tags(until))
        except AzureError as exc:
            SENT.remember(source.url)
            log.warning("event marker of %s not removed (%s)", source.blob_name, type(exc).__name__)

    def update_outcome(self, name: str, decision: Decision) -> None:
        """A later verdict (a malware scan) changed the decision: the tombstone says so for the status
        route. Conditional on the ETag seen; a tombstone that is gone (swept) or not ours is left alone."""
        source = self._store.upload(name)
        for _ in range(3):
            try:
                props = source.get_blob_properties()
            except ResourceNotFoundError:
                return  # swept already: the destination records alone answer the status
            if not self.is_tombstone(name, props.metadata):
                return
            said = Decision.from_metadata(props.metadata, fallback=Outcome.QUARANTINED)
            if said.outcome is decision.outcome and said.reason == decision.reason:
                return
            until = records.parse_timestamp(props.metadata.get(records.UNTIL)) or decision.decided_at
            metadata = self.sealer.seal(self._uploads, name, records.tombstone_metadata(decision, until))
            try:
                source.set_blob_metadata(metadata, etag=props.etag, match_condition=MatchConditions.IfNotModified)
                return
            except ResourceModifiedError:
                continue

    def record_error(self, source: BlobClient, exc: BaseException) -> None:
        """Best effort: the failure is also visible in the host's retry and poison handling.

        Tags change no ETag, so the write is conditional on the ETag seen (Azure honours ``If-Match`` on
        Set Blob Tags; Azurite 3.37 ignores it), and re-checked: if a tombstone replaced the upload
        meanwhile, its own tags are written back, so the sweep still finds it."""
        code = getattr(exc, "error_code", None) or getattr(exc, "code", None) or type(exc).__name__
        try:
            props = source.get_blob_properties()
            if self.is_tombstone(props.name, props.metadata):
                return
            name = source.blob_name
            recorded = self.error_tags(name, source.get_blob_tags())  # a client's own tags count nothing
            attempts = (records.parse_count(recorded.get(records.ATTEMPTS)) or 0) + 1
            tags = self.sealer.seal(self._uploads, name, {  # Set Blob Tags replaces every tag: only ours
                records.STATE: records.ERROR, records.ATTEMPTS: str(attempts),
                records.ERROR_CODE: _tag_safe(str(code))})
            try:
                source.set_blob_tags(tags, etag=props.etag, match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                return  # the upload changed (a tombstone landed): its state is no longer ours to record
            after = source.get_blob_properties()
            if after.etag != props.etag and self.is_tombstone(after.name, after.metadata):
                until = records.parse_timestamp(after.metadata.get(records.UNTIL))
                if until is not None:
                    source.set_blob_tags(records.tombstone_tags(until))
                return
            log.warning("decision failed for %s (attempt %d): %s", source.blob_name, attempts, code)
        except AzureError as second:
            log.warning("decision failed for %s: %s; error state not recorded (%s)",
                        source.blob_name, code, type(second).__name__)

    def sweep(self, limit: int, clock: Callable[[], datetime] = utcnow) -> int:
        """Delete up to ``limit`` expired tombstones (see :func:`sweep_tombstones`)."""
        return sweep_tombstones(self._store.service, self._uploads, limit=limit, sealer=self.sealer, clock=clock)


def _tag_safe(value: str) -> str:
    return "".join(ch if ch.isalnum() or ch in " +-./:=_" else "_" for ch in value)[:256]
