"""Deciding an upload: accepted or quarantined, with a record, moved without a byte through the app.

:meth:`Validator.process` takes a blob *name* in the uploads container and does, safely to repeat:

1. read properties (one HEAD); a tombstone means "already decided": done;
2. if a destination copy with its record exists (a crash between copy and tombstone), finish that one;
3. otherwise check the upload (grant, path, expiry, size, type from a range-read head, archive directory,
   scanner verdicts, declared sha256 over a bounded-memory stream) and decide;
4. server-side copy to ``accepted`` or ``quarantine`` at the same name, with the record as metadata,
   create-only (``If-None-Match: *``) and pinned to the checked source version (source ``If-Match``);
5. replace the source with an empty tombstone (``If-Match`` the source ETag) that occupies the name until
   the create-only SAS cannot be replayed, and carries the outcome for the status endpoint.

Every read of the source is pinned to the ETag first seen; if the source changes under us (a concurrent
invocation wrote the tombstone), the whole step starts over and finds the finished decision. Storage
failures raise :class:`DecisionFailed` so the host retries, after recording ``valetstate=error`` and the
attempt count as index tags on the source (tags change no ETag, so recording an error does not trigger
the function again); the upload itself stays where it is.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
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
from valet.errors import ServiceUnavailable, ValetError
from valet.grant_token import GrantKeyRing
from valet.naming import parse_upload_id
from valet.policy import ArchiveLimits, Policy, Profile
from valet.validation import grantcheck, records
from valet.validation.archive import check_zip, directory_budget
from valet.validation.blobio import RangeReader, read_range, sha256_of
from valet.validation.grantcheck import DEFAULT_CLOCK_SKEW, GrantFacts
from valet.validation.reasons import Outcome, Reason, Rejection
from valet.validation.records import Decision
from valet.validation.scanners import Scanner, ScanResult, ScanSubject, Verdict
from valet.validation.sniff import decide_type

audit = logging.getLogger("valet.audit")
log = logging.getLogger("valet.validation")

ZIP = "application/zip"
_RESTARTS = 3


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
        return self._blob.download_blob(
            offset=offset, length=length, etag=self._etag, match_condition=MatchConditions.IfNotModified, **kwargs
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
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
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
        self._clock = clock
        self._sleep = sleep
        self._skew = clock_skew

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
            props = self._properties(source)
            if props is None:
                return self._find_record(name)
            if records.is_tombstone(props.metadata):
                return Decision.from_metadata(props.metadata, fallback=Outcome.QUARANTINED)
            existing = self._find_record(name)
            if existing is not None:
                if self._tombstone(source, props, existing, self._until(props, existing)):
                    self._audit(existing, name)
                return existing
            decision = self._decide(source, props, verdict)
            self._copy(source, props, decision)
            if self._tombstone(source, props, decision, self._until(props, decision)):
                self._audit(decision, name)
            return decision
        except SourceChanged:
            raise
        except ResourceModifiedError as exc:
            raise SourceChanged() from exc
        except (AzureError, DecisionFailed) as exc:
            self._record_error(source, exc)
            if isinstance(exc, DecisionFailed):
                raise
            raise DecisionFailed("Storage failed while deciding the upload.", retry_after=5) from exc

    # -- checks ----------------------------------------------------------------------------------------

    def _decide(
        self, source: BlobClient, props: BlobProperties, verdict: ScanResult | None
    ) -> Decision:
        now = self._clock()
        facts = _Facts(name=props.name, size=props.size, created_at=props.creation_time)
        facts.upload_id = _upload_id_from_name(props.name)
        try:
            claims = self._check_grant(props, facts)
            if verdict is not None and verdict.verdict is Verdict.MALICIOUS:
                facts.scan = f"{verdict.scanner}:{verdict.detail}"
                raise Rejection(Reason.MALWARE, f"{verdict.scanner} reported the upload malicious")
            self._check_content(source, props, claims, facts)
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

    def _check_content(self, source: BlobClient, props: BlobProperties, claims: GrantFacts, facts: _Facts) -> None:
        profile = self._policy.profiles.get(claims.profile)
        if profile is None:
            raise Rejection(Reason.UNKNOWN_PROFILE, "the grant's profile is no longer configured")
        size = props.size
        check_size(size, claims.size, profile)
        grantcheck.check_stored_type(props.content_settings.content_type, claims.content_type)

        pinned = _Pinned(source, props.etag)
        head = read_range(pinned, 0, min(size, self._sniff))
        if size == 0:
            facts.detected_type = claims.content_type
        else:
            verdict = decide_type(head, claims.content_type, profile.types)
            facts.detected_type = verdict.detected or ""
            if verdict.reason is not None:
                raise Rejection(verdict.reason, verdict.detail)
            if facts.detected_type == ZIP or claims.content_type == ZIP:
                limits = profile.archive or ArchiveLimits()
                check_zip(RangeReader(pinned, size, budget=directory_budget(limits)), size, limits)  # type: ignore[arg-type]

        tags = source.get_blob_tags() if self._scanners else {}
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
        """A finished destination copy of ``name`` (quarantine wins over accepted), waiting out a pending
        copy; a failed copy is removed so the decision is made again."""
        for container, outcome in ((self.quarantine, Outcome.QUARANTINED), (self.accepted, Outcome.ACCEPTED)):
            dest = self.service.get_blob_client(container, name)
            props = self._properties(dest)
            if props is None:
                continue
            if self._wait_for_copy(dest, props):
                return Decision.from_metadata(props.metadata, fallback=outcome)
        return None

    def _wait_for_copy(self, dest: BlobClient, props: BlobProperties) -> bool:
        """True once the copy into ``dest`` succeeded; False if it failed (and was removed)."""
        deadline = time.monotonic() + self._copy_wait
        delay = 0.1
        while True:
            status = props.copy.status if props.copy else None
            if status in (None, "success"):
                return True
            if status in ("failed", "aborted"):
                try:
                    dest.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
                except (ResourceNotFoundError, ResourceModifiedError):
                    pass
                return False
            if time.monotonic() >= deadline:
                raise DecisionFailed("The server-side copy has not finished yet.", retry_after=30)
            self._sleep(delay)
            delay = min(delay * 2, 2.0)
            props = dest.get_blob_properties()

    def _copy(self, source: BlobClient, props: BlobProperties, decision: Decision) -> bool:
        """Server-side copy to the destination; True if this call created it, False if it existed."""
        container = self.accepted if decision.outcome is Outcome.ACCEPTED else self.quarantine
        dest = self.service.get_blob_client(container, props.name)
        try:
            dest.start_copy_from_url(
                source.url,
                metadata=decision.metadata(),
                tags=decision.tags(),
                match_condition=MatchConditions.IfMissing,
                source_etag=props.etag,
                source_match_condition=MatchConditions.IfNotModified,
            )
            created = True
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
        if not self._wait_for_copy(dest, dest.get_blob_properties()):
            raise DecisionFailed("The server-side copy failed.", retry_after=5)
        return created

    def _until(self, props: BlobProperties, decision: Decision) -> datetime:
        """How long the tombstone must hold the name: until the upload's SAS can no longer be used, plus
        grace. A verified grant for this very blob says when; otherwise assume the longest SAS this app
        issues, counted from the blob's creation."""
        created = props.creation_time or self._clock()
        untrusted = {Reason.MISSING_GRANT.value, Reason.BAD_GRANT.value, Reason.PATH_MISMATCH.value}
        if decision.grant_expires is not None and decision.reason not in untrusted:
            return decision.grant_expires + self._grace
        return created + self._sas_ttl + self._grace

    def _tombstone(self, source: BlobClient, props: BlobProperties, decision: Decision, until: datetime) -> bool:
        """Replace the upload with its tombstone. True if this call did: the decision is final then, so the
        audit record is written once, also when a response was lost and the storage client sent the write
        again (the retry finds a tombstone; its write id says whose)."""
        write_id = uuid.uuid4().hex
        metadata = records.tombstone_metadata(decision, until, write_id)
        try:
            source.upload_blob(
                b"",
                overwrite=True,
                metadata=metadata,
                tags=records.tombstone_tags(until),
                content_settings=ContentSettings(content_type="application/octet-stream"),
                etag=props.etag,
                match_condition=MatchConditions.IfNotModified,
            )
            return True
        except ResourceModifiedError:
            now = self._properties(source)
            if now is None or not records.is_tombstone(now.metadata):
                raise
            return now.metadata.get(records.WRITE_ID) == write_id
        except ResourceNotFoundError:  # the name was freed: occupy it again, create-only
            try:
                source.upload_blob(b"", metadata=metadata, tags=records.tombstone_tags(until))
                return True
            except ResourceExistsError:
                now = self._properties(source)
                return now is not None and now.metadata.get(records.WRITE_ID) == write_id

    def _record_error(self, source: BlobClient, exc: BaseException) -> None:
        """Best effort: the failure is also visible in the host's retry and poison handling."""
        code = getattr(exc, "error_code", None) or getattr(exc, "code", None) or type(exc).__name__
        try:
            props = source.get_blob_properties()
            if records.is_tombstone(props.metadata):
                return
            tags = source.get_blob_tags()
            previous = tags.get(records.ATTEMPTS, "0")
            attempts = int(previous) + 1 if previous.isdigit() else 1
            tags.update({records.STATE: records.ERROR, records.ATTEMPTS: str(attempts),
                         records.ERROR_CODE: _tag_safe(str(code))})
            source.set_blob_tags(tags)
            log.warning("decision failed for %s (attempt %d): %s", source.blob_name, attempts, code)
        except AzureError as second:
            log.warning("decision failed for %s: %s; error state not recorded (%s)",
                        source.blob_name, code, type(second).__name__)

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
