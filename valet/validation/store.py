"""The storage side of a decision: reads of the upload and the destination records.

:class:`UploadStore` is the one adapter around the blob containers a decision touches (uploads,
accepted, quarantine). The validator, the malware handler and the tombstone writer call its public
methods: read the head (one ranged GET that also carries the properties, metadata, copy status and tag
count), the index tags (a request only when the tag count says there are any), the upload pinned to the
ETag of its head, an existing record (the destination copy, waiting out a pending copy), the copy itself
(create-only, pinned to the checked source version) or bounded evidence instead of a copy, and the
destination's HTTP properties. Every read takes the bytes as stored (``decompress=False``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient, ContentSettings

from valet.errors import ServiceUnavailable
from valet.validation import trusted
from valet.validation.blobio import RangeSource
from valet.validation.decision import EVIDENCE_ONLY, CopyFacts, StoredUpload
from valet.validation.reasons import Outcome
from valet.validation.records import Decision

log = logging.getLogger("valet.validation")


class DecisionFailed(ServiceUnavailable):
    """The decision could not be completed now (storage error, copy not finished); the host retries."""

    code = "decision_failed"


class SourceChanged(Exception):
    """The source blob's ETag moved while we worked: another invocation finished first."""


def stored_upload(container: str, props: BlobProperties, head: bytes, tags: Mapping[str, str]) -> StoredUpload:
    """What storage said about an upload (its properties as the SDK gives them), as the decision's facts."""
    copy = props.copy
    return StoredUpload(
        container=container, name=props.name, size=props.size, head=head, metadata=props.metadata or {},
        content_type=props.content_settings.content_type, created_at=props.creation_time,
        copy=CopyFacts(copy.id, copy.source, copy.status) if copy is not None else CopyFacts(), tags=tags,
        unreadable=trusted.unreadable(props), retention=trusted.retention(props),
    )


class _Pinned:
    """Range reads of one version of a blob: every GET carries ``If-Match`` with the ETag we checked."""

    def __init__(self, blob: BlobClient, etag: str) -> None:
        self._blob, self._etag = blob, etag

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: Any) -> Any:
        return self._blob.download_blob(  # the bytes as stored, whatever Content-Encoding the client set
            offset=offset, length=length, etag=self._etag, match_condition=MatchConditions.IfNotModified,
            decompress=False, **kwargs
        )


class UploadStore:
    def __init__(self, *, blob_service: BlobServiceClient, uploads: str, accepted: str, quarantine: str,
                 sniff_bytes: int = 64 * 1024, copy_wait_seconds: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.service = blob_service
        self.uploads, self.accepted, self.quarantine = uploads, accepted, quarantine
        self._sniff = sniff_bytes
        self._copy_wait = copy_wait_seconds
        self._sleep = sleep

    def upload(self, name: str) -> BlobClient:
        return self.service.get_blob_client(self.uploads, name)

    def destination(self, decision: Decision) -> str:
        return self.accepted if decision.outcome is Outcome.ACCEPTED else self.quarantine

    # -- reads -----------------------------------------------------------------------------------------

    def read_head(self, source: BlobClient) -> tuple[BlobProperties | None, bytes]:
        """The upload's head (up to the sniff window) with its properties, metadata, copy status and index
        tag count, from one ranged GET: the decision's first request, and for a tombstone its only one.
        Storage sets every one of these facts itself (see :mod:`valet.validation.trusted`); the ETag in
        the same response pins every later read and write. An empty blob has no byte range (416): its
        properties then take a second request."""
        try:
            stream = source.download_blob(offset=0, length=self._sniff, max_concurrency=1, decompress=False)
        except ResourceNotFoundError:
            return None, b""
        except HttpResponseError as exc:
            if exc.status_code == 416:
                return self.properties(source), b""
            if str(getattr(exc, "error_code", "") or "") in trusted.UNSERVED_CODES:
                return self._listed(source), b""  # decided from its properties: see trusted.unreadable
            raise
        head: bytes = stream.readall()
        props: BlobProperties = stream.properties
        total = str(props.content_range or "").rpartition("/")[2]
        if not total.isdigit():
            raise DecisionFailed("Storage did not say how large the upload is.", retry_after=5)
        props.size = int(total)  # the download's properties give the range's length; the blob's is after "/"
        props.metadata = props.metadata or {}
        return props, head

    def _listed(self, source: BlobClient) -> BlobProperties | None:
        """An upload's properties, metadata and tags from a listing, which storage answers for a blob it
        will not serve (Get Blob Properties needs the key of a customer-provided-key blob)."""
        container = self.service.get_container_client(self.uploads)
        for blob in container.list_blobs(name_starts_with=source.blob_name, include=["metadata", "tags"],
                                         results_per_page=2):
            if blob.name == source.blob_name:
                blob.metadata = blob.metadata or {}
                return blob
        return None

    @staticmethod
    def properties(blob: BlobClient) -> BlobProperties | None:
        try:
            return blob.get_blob_properties()
        except ResourceNotFoundError:
            return None

    @staticmethod
    def tags(source: BlobClient, props: BlobProperties) -> dict[str, str]:
        """The upload's index tags: a request only when the tag count read with the head says any exist."""
        if props.tags is None:
            props.tags = source.get_blob_tags() if (props.tag_count or 0) > 0 else {}
        return dict(props.tags)

    def stored_upload(self, source: BlobClient, props: BlobProperties, head: bytes) -> StoredUpload:
        """The facts a decision trusts in, from the head read (and the tags, read once)."""
        return stored_upload(self.uploads, props, head, self.tags(source, props))

    @staticmethod
    def pinned(source: BlobClient, props: BlobProperties) -> RangeSource:
        """The upload's bytes at the version of its head: a later read of a changed blob fails (412)."""
        return _Pinned(source, props.etag)

    def find_record(self, name: str) -> Decision | None:
        found = self.find_record_at(name)
        return None if found is None else found[0]

    def find_record_at(self, name: str) -> tuple[Decision, BlobClient, BlobProperties] | None:
        """A finished destination copy of ``name`` (quarantine wins over accepted), waiting out a pending
        copy; a failed copy is removed so the decision is made again."""
        for container, outcome in ((self.quarantine, Outcome.QUARANTINED), (self.accepted, Outcome.ACCEPTED)):
            dest = self.service.get_blob_client(container, name)
            props = self.properties(dest)
            if props is None:
                continue
            final = self.wait_for_copy(dest, props)
            if final is not None:
                return Decision.from_metadata(final.metadata, fallback=outcome), dest, final
        return None

    def wait_for_copy(self, dest: BlobClient, props: BlobProperties) -> BlobProperties | None:
        """The properties once the copy into ``dest`` succeeded; None if it failed (and was removed)."""
        deadline = time.monotonic() + self._copy_wait
        delay = 0.1
        while True:
            status = props.copy.status if props.copy else None
            if status in (None, "success"):
                return props
            if status in ("failed", "aborted"):
                try:
                    dest.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
                except (ResourceNotFoundError, ResourceModifiedError):
                    pass
                return None
            if time.monotonic() >= deadline:
                raise DecisionFailed("The server-side copy has not finished yet.", retry_after=30)
            self._sleep(delay)
            delay = min(delay * 2, 2.0)
            props = dest.get_blob_properties()

    # -- the destination record ------------------------------------------------------------------------

    def store(self, source: BlobClient, props: BlobProperties, head: bytes,
              decision: Decision) -> tuple[Decision, bool]:
        """The destination record: a copy with its HTTP properties set here, or bounded evidence. Returns
        the decision as recorded and whether this call created the destination blob."""
        if decision.reason in EVIDENCE_ONLY or trusted.unreadable(props):  # also when the grant failed first
            return self._store_evidence(source, props, head, decision)
        created, dest, settings, etag, stored = self._copy(source, props, decision)
        if stored is not None:
            decision = stored  # another invocation's copy was there first: its record stands
        self.set_destination_properties(dest, settings, etag, decision)
        return decision, created

    def _store_evidence(self, source: BlobClient, props: BlobProperties, head: bytes,
                        decision: Decision) -> tuple[Decision, bool]:
        """A quarantine record holding the upload's head (at most the sniff window) and its sha256."""
        if props.copy is not None and props.copy.status == "pending" and props.copy.id:
            try:  # storage is still fetching bytes the caller pointed it at: stop it
                source.abort_copy(props.copy.id)
            except HttpResponseError:
                pass
            raise SourceChanged()  # the abort changed the blob: decide again from fresh properties
        evidence = f"head {len(head)} of {props.size} bytes, sha256 {hashlib.sha256(head).hexdigest()}"
        decision = replace(decision, evidence=evidence)
        dest = self.service.get_blob_client(self.quarantine, props.name)
        try:
            dest.upload_blob(head, metadata=decision.metadata(), tags=decision.tags(),
                             content_settings=ContentSettings(content_type=trusted.OCTET_STREAM))
            return decision, True
        except ResourceExistsError:  # another invocation stored it first: its record stands
            existing = self.properties(dest)
            return (Decision.from_metadata(existing.metadata, fallback=Outcome.QUARANTINED)
                    if existing is not None else decision), False

    def _copy(self, source: BlobClient, props: BlobProperties,
              decision: Decision) -> tuple[bool, BlobClient, ContentSettings, str, Decision | None]:
        """Server-side copy to the destination. Returns whether this call created it, the client, and the
        copy's HTTP properties and ETag. A copy that completed at once (always, within one account, for
        blobs up to a few MiB) inherited the upload's properties, and its response carries the ETag: no
        further request then."""
        dest = self.service.get_blob_client(self.destination(decision), props.name)
        try:
            result = dest.start_copy_from_url(
                source.url,
                metadata=decision.metadata(),
                tags=decision.tags(),
                match_condition=MatchConditions.IfMissing,
                source_etag=props.etag,
                source_match_condition=MatchConditions.IfNotModified,
            )
            created = True
            if result.get("copy_status") == "success" and result.get("etag"):
                return True, dest, props.content_settings, str(result["etag"]), None
        except ResourceExistsError:
            created = False  # another invocation got there first: "already done"
        except HttpResponseError as exc:
            error_code = str(getattr(exc, "error_code", "") or "")
            if exc.status_code == 412 and error_code.lower().startswith("sourcecondition"):
                raise SourceChanged() from exc
            if exc.status_code == 409 and error_code == "PendingCopyOperation":
                created = False
            else:
                raise
        final = self.wait_for_copy(dest, dest.get_blob_properties())
        if final is None:
            raise DecisionFailed("The server-side copy failed.", retry_after=5)
        stored = None if created else Decision.from_metadata(final.metadata, fallback=decision.outcome)
        return created, dest, final.content_settings, final.etag, stored

    def set_destination_properties(self, dest: BlobClient, have: ContentSettings, etag: str,
                                   decision: Decision) -> None:
        """Copy Blob carries the upload's HTTP properties, which the client chose: replace them, unless they
        already are what the verdict says (the usual case for an accepted upload: no extra request)."""
        wanted = trusted.destination_settings(decision.outcome is Outcome.ACCEPTED, decision.declared_type)
        if not trusted.settings_differ(have, wanted):
            return
        try:
            dest.set_http_headers(wanted, etag=etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            pass  # another invocation set them (or a requarantine moved the copy) meanwhile

    def discard_accepted(self, name: str) -> None:
        """Quarantine wins: remove an accepted copy of an upload that is (also) in quarantine."""
        try:
            self.service.get_blob_client(self.accepted, name).delete_blob()
            log.warning("accepted copy of %s removed: the upload is quarantined", name)
        except ResourceNotFoundError:
            pass
