"""Deciding an upload: accepted or quarantined, with a record, moved without a byte through the app.

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

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient, ContentSettings

from valet.clock import utcnow
from valet.errors import Conflict, ServiceUnavailable, ValetError
from valet.grant_token import GrantKeyRing
from valet.naming import parse_upload_id
from valet.policy import ArchiveLimits, Policy, Profile
from valet.validation import grantcheck, records, trusted
from valet.validation.archive import LOCAL_READ_AHEAD, check_zip, directory_budget, is_zip_container, local_budget
from valet.validation.blobio import RangeReader, sha256_of
from valet.validation.events import SENT, DecisionEvents
from valet.validation.grantcheck import DEFAULT_CLOCK_SKEW, GrantFacts
from valet.validation.reasons import Outcome, Reason, Rejection
from valet.validation.records import Decision
from valet.validation.scanners import Scanner, ScanResult, ScanSubject, Verdict
from valet.validation.sniff import canonical, decide_type
from valet.validation.structure import DEFAULT_READ_BUDGET, ImageLimits, PdfLimits, check_structure, needs_check

audit = logging.getLogger("valet.audit")
log = logging.getLogger("valet.validation")

ZIP = "application/zip"
_RESTARTS = 3
FIRST_TRY = timedelta(seconds=60)  # an upload younger than this, with no failure recorded, is on its first try
EVENT_GRACE = timedelta(seconds=30)  # a tombstone's writer has this long to send its event
# A tombstone with more index tags than these still owes its decision event (records.EVENT).
_TOMBSTONE_TAGS = len(records.tombstone_tags(datetime.fromtimestamp(0).astimezone()))
# Quarantine keeps a record and bounded evidence, not a copy, of uploads whose bytes the caller may use
# as free storage: over the profile cap, or fetched by storage from a URL the caller chose.
# An upload storage will not serve (Archive tier, customer-provided key) gets the same, with no bytes.
EVIDENCE_ONLY = frozenset({Reason.TOO_LARGE.value, Reason.COPY_CREATED.value, Reason.UNREADABLE.value})
# Where decision events are sent while the tombstone is written: one pool for the process (threads start on
# first use), whatever the number of validators.
_SENDER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="valet-events")


class DecisionFailed(ServiceUnavailable):
    """The decision could not be completed now (storage error, copy not finished); the host retries."""

    code = "decision_failed"


class SourceChanged(Exception):
    """The source blob's ETag moved while we worked: another invocation finished first."""



@dataclass
class _Facts:
    """What is known about an upload so far; a rejection records whatever was learnt before it."""

    name: str
    upload_id: str = ""
    caller: str = ""
    profile: str = ""
    declared_type: str = ""
    detected_type: str = ""
    size: int | None = None
    sha256: str = ""
    granted_at: datetime | None = None
    grant_expires: datetime | None = None
    created_at: datetime | None = None
    scan: str = ""
    filename: str = ""

    def decision(self, outcome: Outcome, reason: Reason, detail: str, now: datetime) -> Decision:
        known = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}  # same names as Decision
        return Decision(outcome=outcome, reason=reason.value, detail=detail, decided_at=now, **known)


class _Pinned:
    """Range reads of one version of a blob: every GET carries ``If-Match`` with the ETag we checked."""

    def __init__(self, blob: BlobClient, etag: str) -> None:
        self._blob, self._etag = blob, etag
        self.bytes_read = 0

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: Any) -> Any:
        return self._blob.download_blob(  # the bytes as stored, whatever Content-Encoding the client set
            offset=offset, length=length, etag=self._etag, match_condition=MatchConditions.IfNotModified,
            decompress=False, **kwargs
        )


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
    ) -> None:
        self.service = blob_service
        self.uploads, self.accepted, self.quarantine = uploads, accepted, quarantine
        self._keys = keys
        self._policy = policy
        self._sas_ttl = sas_ttl
        self._grace = tombstone_grace
        self._sniff = sniff_bytes
        self._copy_wait = copy_wait_seconds
        self._scanners = tuple(scanners)
        self._image_limits = image_limits or ImageLimits()
        self._structure_budget = structure_read_bytes
        self.sealer = trusted.Sealer(keys)
        self._clock = clock
        self._sleep = sleep
        self._skew = clock_skew
        self._events = events  # None: decisions are not announced (tools and tests that do not care)

    # -- the one entry point ---------------------------------------------------------------------------

    def process(self, name: str, *, verdict: ScanResult | None = None) -> Decision | None:
        """Decide the upload at ``name`` (idempotent). Returns the decision, or ``None`` when there is no
        such upload and no record of one. ``verdict`` is a scanner result that arrived out of band (a
        Defender event) and overrides the configured scanners."""
        for _ in range(_RESTARTS):
            try:
                return self._process_once(name, verdict)
            except SourceChanged:
                continue
        raise DecisionFailed("The upload kept changing while it was being decided.", retry_after=5)

    def _process_once(self, name: str, verdict: ScanResult | None) -> Decision | None:
        source = self.service.get_blob_client(self.uploads, name)
        try:
            props, head = self._look(source)
            if props is None:
                return self._find_record(name)
            if self.is_tombstone(name, props.metadata):
                decision = Decision.from_metadata(props.metadata, fallback=Outcome.QUARANTINED)
                if self._events is not None and (props.tag_count or 0) > _TOMBSTONE_TAGS:
                    self._announce_pending(source, props, decision)  # an earlier delivery could not send it
                return decision
            found = self._find_record_at(name) if self._may_have_tried(source, props) else None
            if found is not None:
                existing, dest, dest_props = found
                if existing.outcome is Outcome.QUARANTINED:
                    self._discard_accepted(name)
                if existing.evidence == "":
                    self._set_destination_properties(dest, dest_props.content_settings, dest_props.etag, existing)
                return self._finish(source, props, existing, sends=True, created_accepted=False)
            decision = self._decide(source, props, head, verdict)
            decision, created = self._store(source, props, head, decision)
            return self._finish(source, props, decision, sends=created,
                                created_accepted=created and decision.outcome is Outcome.ACCEPTED)
        except SourceChanged:
            raise
        except ResourceModifiedError as exc:
            raise SourceChanged() from exc
        except (AzureError, DecisionFailed) as exc:
            self._record_error(source, exc)
            if isinstance(exc, DecisionFailed):
                raise
            raise DecisionFailed("Storage failed while deciding the upload.", retry_after=5) from exc
        except Exception as exc:  # one upload's defect is recorded on it, never a crash loop
            log.warning("deciding %s failed unexpectedly (%s)", name, type(exc).__name__)
            self._record_error(source, exc)
            raise DecisionFailed("The upload could not be decided.", retry_after=5) from exc

    def is_tombstone(self, name: str, metadata: dict[str, str] | None) -> bool:
        """A tombstone this app wrote for ``name``: the seal proves it; metadata alone does not."""
        return records.is_tombstone(metadata) and self.sealer.verify(self.uploads, name, metadata)

    def _finish(self, source: BlobClient, props: BlobProperties, decision: Decision, *, sends: bool,
                created_accepted: bool) -> Decision:
        """Tombstone the upload; the invocation whose tombstone landed audits it. ``sends``: this invocation
        stored the record (or finishes an earlier try's), so it sends the decision event, at the same time
        as the tombstone write (see "Decision events" below). One that lost to a quarantine removes the
        accepted copy it made: a quarantine always wins."""
        until = self._until(props, decision)
        sending = self._send(decision, props.name) if sends and self._events is not None else None
        try:
            ours, winner = self._tombstone(source, props, decision, until)
        finally:
            failure = sending.exception() if sending is not None else None  # waits for the queue's answer
        sent = sending is not None and failure is None
        if ours:
            self._audit(decision, props.name)
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
                self._clear_marker(source)  # the tombstone that won owes no event: ours is on the queue
            return decision  # the same verdict: ours carries the full record
        if winner.outcome is Outcome.QUARANTINED and created_accepted:
            self._discard_accepted(props.name)
        if sent:
            self._correct(props.name, winner)
        return winner

    # -- checks ----------------------------------------------------------------------------------------

    def _decide(
        self, source: BlobClient, props: BlobProperties, head: bytes, verdict: ScanResult | None
    ) -> Decision:
        now = self._clock()
        facts = _Facts(name=props.name, size=props.size, created_at=props.creation_time)
        facts.upload_id = _upload_id_from_name(props.name)
        try:
            claims = self._check_grant(props, facts)
            if verdict is not None and verdict.verdict is Verdict.MALICIOUS:
                facts.scan = f"{verdict.scanner}:{verdict.detail}"
                raise Rejection(Reason.MALWARE, f"{verdict.scanner} reported the upload malicious")
            check_what_storage_says(props)
            self._check_content(source, props, head, claims, facts)
        except Rejection as rejection:
            return facts.decision(Outcome.QUARANTINED, rejection.reason, rejection.detail, now)
        return facts.decision(Outcome.ACCEPTED, Reason.OK, "all checks passed", now)

    def _check_grant(self, props: BlobProperties, facts: _Facts) -> GrantFacts:
        claims = grantcheck.grant_facts(container=self.uploads, name=props.name, metadata=props.metadata,
                                        keys=self._keys, policy=self._policy, skew=self._skew)
        facts.caller, facts.profile = claims.caller, claims.profile
        facts.filename = claims.filename or ""
        facts.declared_type = claims.content_type
        facts.granted_at, facts.grant_expires = claims.issued_at, claims.expires_at
        facts.upload_id = claims.upload_id
        grantcheck.check_window(claims, props.creation_time, self._skew)
        return claims

    def _check_content(self, source: BlobClient, props: BlobProperties, head: bytes, claims: GrantFacts,
                       facts: _Facts) -> None:
        profile = self._policy.profiles.get(claims.profile)
        if profile is None:
            raise Rejection(Reason.UNKNOWN_PROFILE, "the grant's profile is no longer configured")
        size = props.size
        check_size(size, claims.size, profile)
        grantcheck.check_stored_type(props.content_settings.content_type, claims.content_type)

        pinned = _Pinned(source, props.etag)  # the head came with the properties; later reads keep to that version
        if size == 0:
            facts.detected_type = claims.content_type
        else:
            verdict = decide_type(head, claims.content_type, profile.types)
            facts.detected_type = verdict.detected or ""
            if verdict.reason is not None:
                raise Rejection(verdict.reason, verdict.detail)
            if needs_check(canonical(claims.content_type)):
                check_structure(pinned, size, head, canonical(claims.content_type), self._image_limits,
                                self._structure_budget, PdfLimits(allowed_actions=profile.pdf_actions))
            if is_zip_container(head) or facts.detected_type == ZIP or claims.content_type == ZIP:
                limits = profile.archive or ArchiveLimits()
                directory = RangeReader(pinned, size, budget=directory_budget(limits))
                local = RangeReader(pinned, size, budget=local_budget(limits.max_entries),
                                    read_ahead=LOCAL_READ_AHEAD, head=head)
                check_zip(directory.as_file(), size, limits, local.as_file())

        tags = self._tags(source, props) if self._scanners else {}  # a request only if a tag exists
        subject = ScanSubject(self.uploads, props.name, size, tags, head)
        for scanner in self._scanners:
            result = scanner.scan(subject)
            if result is None:
                continue
            facts.scan = f"{result.scanner}:{result.detail}"
            if result.verdict is Verdict.MALICIOUS:
                raise Rejection(Reason.MALWARE, f"{result.scanner} reported the upload malicious")

        if claims.sha256 is not None:
            facts.sha256 = sha256_of(pinned, size)
            if facts.sha256 != claims.sha256.lower():
                raise Rejection(Reason.SHA256_MISMATCH, "content does not match the declared sha256")

    # -- storage steps ---------------------------------------------------------------------------------

    def _properties(self, blob: BlobClient) -> BlobProperties | None:
        try:
            return blob.get_blob_properties()
        except ResourceNotFoundError:
            return None

    def _find_record(self, name: str) -> Decision | None:
        found = self._find_record_at(name)
        return None if found is None else found[0]

    def _find_record_at(self, name: str) -> tuple[Decision, BlobClient, BlobProperties] | None:
        """A finished destination copy of ``name`` (quarantine wins over accepted), waiting out a pending
        copy; a failed copy is removed so the decision is made again."""
        for container, outcome in ((self.quarantine, Outcome.QUARANTINED), (self.accepted, Outcome.ACCEPTED)):
            dest = self.service.get_blob_client(container, name)
            props = self._properties(dest)
            if props is None:
                continue
            final = self._wait_for_copy(dest, props)
            if final is not None:
                return Decision.from_metadata(final.metadata, fallback=outcome), dest, final
        return None

    def _wait_for_copy(self, dest: BlobClient, props: BlobProperties) -> BlobProperties | None:
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

    def _store(self, source: BlobClient, props: BlobProperties, head: bytes,
               decision: Decision) -> tuple[Decision, bool]:
        """The destination record: a copy with its HTTP properties set here, or bounded evidence. Returns
        the decision as recorded and whether this call created the destination blob."""
        if decision.reason in EVIDENCE_ONLY or trusted.unreadable(props):  # also when the grant failed first
            return self._store_evidence(source, props, head, decision)
        created, dest, settings, etag, stored = self._copy(source, props, decision)
        if stored is not None:
            decision = stored  # another invocation's copy was there first: its record stands
        self._set_destination_properties(dest, settings, etag, decision)
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
            existing = self._properties(dest)
            return (Decision.from_metadata(existing.metadata, fallback=Outcome.QUARANTINED)
                    if existing is not None else decision), False

    def _set_destination_properties(self, dest: BlobClient, have: ContentSettings, etag: str,
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

    def _look(self, source: BlobClient) -> tuple[BlobProperties | None, bytes]:
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
                return self._properties(source), b""
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
    def _tags(source: BlobClient, props: BlobProperties) -> dict[str, str]:
        """The upload's index tags: a request only when the tag count read with the head says any exist."""
        if props.tags is None:
            props.tags = source.get_blob_tags() if (props.tag_count or 0) > 0 else {}
        return dict(props.tags)

    def _may_have_tried(self, source: BlobClient, props: BlobProperties) -> bool:
        """Whether an earlier invocation may have stored a destination copy and then failed before its
        tombstone: it recorded its failure in the upload's tags, or the upload is old enough for a retry
        after a crash (or the reconciler) to be deciding it. A fresh upload with no failure recorded was
        not tried before, so the two destination lookups are skipped; a copy made by a concurrent
        invocation is still found by the create-only copy (409) and the race on the tombstone."""
        tags = self._tags(source, props)
        if tags.get(records.STATE) == records.ERROR or records.ATTEMPTS in tags:
            return True
        created = props.creation_time
        return created is None or self._clock() - created >= FIRST_TRY

    def _discard_accepted(self, name: str) -> None:
        """Quarantine wins: remove an accepted copy of an upload that is (also) in quarantine."""
        try:
            self.service.get_blob_client(self.accepted, name).delete_blob()
            log.warning("accepted copy of %s removed: the upload is quarantined", name)
        except ResourceNotFoundError:
            pass

    def _copy(self, source: BlobClient, props: BlobProperties,
              decision: Decision) -> tuple[bool, BlobClient, ContentSettings, str, Decision | None]:
        """Server-side copy to the destination. Returns whether this call created it, the client, and the
        copy's HTTP properties and ETag. A copy that completed at once (always, within one account, for
        blobs up to a few MiB) inherited the upload's properties, and its response carries the ETag: no
        further request then."""
        container = self.accepted if decision.outcome is Outcome.ACCEPTED else self.quarantine
        dest = self.service.get_blob_client(container, props.name)
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
        final = self._wait_for_copy(dest, dest.get_blob_properties())
        if final is None:
            raise DecisionFailed("The server-side copy failed.", retry_after=5)
        stored = None if created else Decision.from_metadata(final.metadata, fallback=decision.outcome)
        return created, dest, final.content_settings, final.etag, stored

    def _until(self, props: BlobProperties, decision: Decision) -> datetime:
        """How long the tombstone must hold the name: until the upload's SAS can no longer be used, plus
        grace. A verified grant for this very blob says when; otherwise assume the longest SAS this app
        issues, counted from the blob's creation."""
        created = props.creation_time or self._clock()
        untrusted = {Reason.MISSING_GRANT.value, Reason.BAD_GRANT.value, Reason.PATH_MISMATCH.value}
        if decision.grant_expires is not None and decision.reason not in untrusted:
            return decision.grant_expires + self._grace
        return created + self._sas_ttl + self._grace

    def _tombstone(self, source: BlobClient, props: BlobProperties, decision: Decision,
                   until: datetime) -> tuple[bool, Decision | None]:
        """Replace the upload with its sealed tombstone. ``(True, None)`` if this call did: the decision is
        final then, so the audit record is written once, also when a response was lost and the storage
        client sent the write again (the retry finds a tombstone; its write id says whose). Otherwise
        ``(False, the decision on the tombstone that won)``."""
        write_id = uuid.uuid4().hex
        metadata = self.sealer.seal(self.uploads, props.name, records.tombstone_metadata(decision, until, write_id))
        try:
            if trusted.unreadable(props):  # storage refuses to overwrite an archived blob: free the name first
                source.delete_blob(delete_snapshots="include", etag=props.etag,
                                   match_condition=MatchConditions.IfNotModified)
                return self._occupy(source, props, metadata, until, write_id)
            source.upload_blob(
                records.TOMBSTONE_BODY,
                overwrite=True,
                metadata=metadata,
                tags=records.tombstone_tags(until, event_pending=self._events is not None),
                content_settings=ContentSettings(content_type=trusted.OCTET_STREAM),
                etag=props.etag,
                match_condition=MatchConditions.IfNotModified,
            )
            return True, None
        except ResourceModifiedError:
            now = self._properties(source)
            if now is None or not self.is_tombstone(props.name, now.metadata):
                raise
            return self._whose(now, write_id)
        except ResourceNotFoundError:  # the name was freed: occupy it again, create-only
            return self._occupy(source, props, metadata, until, write_id)

    def _occupy(self, source: BlobClient, props: BlobProperties, metadata: dict[str, str], until: datetime,
                write_id: str) -> tuple[bool, Decision | None]:
        """The tombstone at a free name, create-only (a replayed upload that got there first is decided on
        its own: its write triggers the validator again)."""
        try:
            source.upload_blob(records.TOMBSTONE_BODY, metadata=metadata,
                               tags=records.tombstone_tags(until, event_pending=self._events is not None))
            return True, None
        except ResourceExistsError:
            now = self._properties(source)
            if now is None or not self.is_tombstone(props.name, now.metadata):
                raise
            return self._whose(now, write_id)

    def now(self) -> datetime:
        return self._clock()

    def cancel(self, name: str, *, upload_id: str, caller: str, until: datetime) -> None:
        """Occupy ``name`` with a sealed ``cancelled`` tombstone before anything was uploaded, so the
        grant's SAS (which cannot be revoked one by one) can no longer create the blob. Create-only:
        :class:`~valet.errors.Conflict` once an upload exists or was decided; a repeated cancel succeeds."""
        decision = Decision(outcome=Outcome.CANCELLED, reason=Reason.CANCELLED.value, detail="cancelled by the caller",
                            upload_id=upload_id, caller=caller, decided_at=self._clock())
        metadata = self.sealer.seal(self.uploads, name, records.tombstone_metadata(decision, until, uuid.uuid4().hex))
        source = self.service.get_blob_client(self.uploads, name)
        try:
            source.upload_blob(records.TOMBSTONE_BODY, overwrite=False, metadata=metadata,
                               tags=records.tombstone_tags(until),
                               content_settings=ContentSettings(content_type=trusted.OCTET_STREAM))
        except ResourceExistsError:
            now = self._properties(source)
            if now is not None and self.is_tombstone(name, now.metadata) and \
                    now.metadata.get(records.OUTCOME) == Outcome.CANCELLED.value:
                return  # cancelled already
            raise Conflict("Something was uploaded already; see the upload's status.", code="upload_exists") from None
        except AzureError as exc:
            raise ServiceUnavailable("Storage is unavailable right now.", code="storage_unavailable") from exc
        audit.info("grant cancelled", extra={"event": "cancel", "upload_id": upload_id, "caller": caller,
                                             "blob": f"{self.uploads}/{name}"})

    @staticmethod
    def _whose(tombstone: BlobProperties, write_id: str) -> tuple[bool, Decision | None]:
        if tombstone.metadata.get(records.WRITE_ID) == write_id:
            return True, None
        return False, Decision.from_metadata(tombstone.metadata, fallback=Outcome.QUARANTINED)

    def _record_error(self, source: BlobClient, exc: BaseException) -> None:
        """Best effort: the failure is also visible in the host's retry and poison handling.

        Tags change no ETag, so the write is conditional on the ETag seen (Azure honours ``If-Match`` on
        Set Blob Tags; Azurite 3.37 ignores it), and re-checked: if a tombstone replaced the upload
        meanwhile, its own tags are written back, so the sweep still finds it."""
        code = getattr(exc, "error_code", None) or getattr(exc, "code", None) or type(exc).__name__
        try:
            props = source.get_blob_properties()
            if self.is_tombstone(props.name, props.metadata):
                return
            tags = source.get_blob_tags()
            attempts = (records.parse_count(tags.get(records.ATTEMPTS)) or 0) + 1
            tags.update({records.STATE: records.ERROR, records.ATTEMPTS: str(attempts),
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

    # -- decision events -------------------------------------------------------------------------------
    #
    # At least once, and once in the ordinary case. The event is sent once the decision is durable (the
    # destination copy with its record exists, so a consumer can always read the accepted blob), by the
    # invocation that stored that record (create-only: one per destination) or that finishes a record an
    # earlier try stored; concurrent deliveries that found the record stored send nothing. The message goes
    # out while the tombstone is written, not after it (one request less on the way to the end of the
    # invocation; the event can reach a consumer a few milliseconds before the status route shows the
    # verdict). The tombstone carries the index tag valetevent=pending, removed once the message is on the
    # queue, so "decided, event owed" survives any crash: if sending fails, the invocation fails and the
    # host tries again; that delivery (or the tombstone's own trigger) finds the tombstone, sees from its
    # tag count (in the same head read) that the marker is still there, and sends the event then, once the
    # tombstone is older than EVENT_GRACE (before that its writer may still be sending it; the reconciler
    # picks up older tombstones that still owe one). When storage fails between sending and removing the
    # marker, the process remembers the event went out (events.SENT), and whoever meets the marker next in
    # it removes the marker instead of sending again; a crash there, or another instance meeting the
    # marker, repeats the event, and so can a sender that lost the tombstone race to a different verdict (it
    # then sends the final verdict again, after its own): consumers de-duplicate by uploadId + status and
    # take the last status.

    def destination(self, decision: Decision) -> str:
        return self.accepted if decision.outcome is Outcome.ACCEPTED else self.quarantine

    @property
    def events(self) -> DecisionEvents | None:
        return self._events

    def _send(self, decision: Decision, name: str) -> Future[None]:
        """Start sending the event on the sender threads (the storage clients are thread-safe)."""
        assert self._events is not None
        return _SENDER.submit(self._events.publish, decision, self.destination(decision), name)

    def _clear_marker(self, source: BlobClient) -> None:
        """Remove the event marker from the tombstone another invocation wrote for a decision whose event
        this one sent. Best effort: a marker left behind repeats the event later, it loses nothing."""
        try:
            now = source.get_blob_properties()
            until = records.parse_timestamp(now.metadata.get(records.UNTIL))
            if until is not None and self.is_tombstone(now.name, now.metadata):
                source.set_blob_tags(records.tombstone_tags(until))
        except AzureError as exc:
            SENT.remember(source.url)
            log.warning("event marker of %s not removed (%s)", source.blob_name, type(exc).__name__)

    def _correct(self, name: str, winner: Decision) -> None:
        """This invocation announced a verdict that lost to a quarantine: announce the one that stands, so
        the last event this invocation sent is the final verdict (the winner sends its own as well)."""
        assert self._events is not None
        decision = self._find_record(name) or winner
        try:
            self._events.publish(decision, self.destination(decision), name)
        except AzureError as exc:
            log.warning("correction event for %s not sent (%s)", name, type(exc).__name__)

    def _announce_pending(self, source: BlobClient, props: BlobProperties, tombstone: Decision) -> None:
        """Send the event a tombstone still owes, unless its writer may still be sending it: a tombstone
        younger than :data:`EVENT_GRACE` is left alone (its writer removes the marker milliseconds after
        the write), so concurrent deliveries do not repeat the event; the reconciler comes back to older
        ones (see :mod:`valet.validation.reconcile`)."""
        assert self._events is not None
        if SENT.sent(source.url):  # this process sent it; only removing the marker failed
            tags = self._tags(source, props)
            source.set_blob_tags({k: v for k, v in tags.items() if k != records.EVENT})
            SENT.forget(source.url)
            return
        written = props.last_modified or props.creation_time
        if written is not None and self._clock() - written < EVENT_GRACE:
            return
        tags = self._tags(source, props)  # the tag count said there is more than the tombstone's own
        if tags.get(records.EVENT) != records.PENDING:
            return
        decision = self._find_record(props.name) or tombstone  # the full record lives on the destination copy
        self._events.publish(decision, self.destination(decision), props.name)
        source.set_blob_tags({k: v for k, v in tags.items() if k != records.EVENT})

    def _audit(self, decision: Decision, name: str) -> None:
        audit.info(
            "upload decided",
            extra={
                "event": "decision",
                "upload_id": decision.upload_id,
                "caller": decision.caller,
                "outcome": decision.outcome.value,
                "reason": decision.reason,
                "detail": decision.detail,
                "blob": f"{self.uploads}/{name}",
                "profile": decision.profile,
                "declared_type": decision.declared_type,
                "detected_type": decision.detected_type,
                "size": decision.size,
                "sha256": decision.sha256 or None,
                "scan": decision.scan or None,
                "decided_at": records.timestamp(decision.decided_at),
            },
        )


def check_what_storage_says(props: BlobProperties) -> None:
    """What a create-only SAS allows besides uploading bytes, seen in facts storage itself sets."""
    reserved = trusted.reserved_metadata(props.metadata)
    if reserved:
        raise Rejection(Reason.RESERVED_METADATA, f"client-written app metadata: {', '.join(reserved)}"[:200])
    copy = props.copy
    if copy is not None and (copy.id or copy.source or copy.status):
        raise Rejection(Reason.COPY_CREATED, f"created by Copy Blob (status {copy.status or 'unknown'})")
    why = trusted.unreadable(props)
    if why is not None:
        raise Rejection(Reason.UNREADABLE, f"storage will not serve the bytes: {why}")
    why = trusted.retention(props)
    if why is not None:
        raise Rejection(Reason.RETENTION_SET, why)


def check_size(size: int, declared: int, profile: Profile) -> None:
    """Empty (unless the profile allows it), over the profile maximum, or not the declared size."""
    if size == 0 and not profile.allow_empty:
        raise Rejection(Reason.EMPTY, "the upload is empty")
    if size > profile.max_bytes:
        raise Rejection(Reason.TOO_LARGE, f"{size} bytes; profile maximum {profile.max_bytes}")
    if size != declared:
        raise Rejection(Reason.SIZE_MISMATCH, f"{size} bytes; declared {declared}")


def _upload_id_from_name(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    try:
        parse_upload_id(stem)
    except ValetError:
        return ""
    return stem


def _tag_safe(value: str) -> str:
    return "".join(ch if ch.isalnum() or ch in " +-./:=_" else "_" for ch in value)[:256]
