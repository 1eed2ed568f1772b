"""The decision itself: the facts a decision trusts in, a :class:`~valet.validation.records.Decision` out.

No storage call happens here. :class:`StoredUpload` holds what storage itself said about the upload in the
head read (size, creation time, Content-Type, metadata, copy properties, index tags, the first bytes; see
:mod:`valet.validation.trusted` for why each one can be trusted), and the upload's bytes beyond the head are
read through the :class:`~valet.validation.blobio.RangeSource` the caller passes: the storage side passes
the upload pinned to the ETag of the head, a unit test passes bytes in memory. :func:`decide` checks, in
this order: the grant (name and grant header), a scanner verdict that arrived out of band, what a
create-only SAS allows besides bytes (app-reserved metadata, Copy Blob), the profile, size, stored
Content-Type, the type from the head, image and PDF structure, zip directory and local headers, the
configured scanners, and the declared sha256 over a bounded-memory stream. The first check that fails
quarantines the upload with its reason; the record keeps whatever was learnt before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from valet.errors import ValetError
from valet.grants import granted
from valet.grants.granted import DEFAULT_CLOCK_SKEW, GrantFacts
from valet.grants.naming import parse_upload_id
from valet.grants.policy import ArchiveLimits, Policy, Profile
from valet.grants.token import GrantKeyRing
from valet.validation import trusted
from valet.validation.archive import LOCAL_READ_AHEAD, check_zip, directory_budget, is_zip_container, local_budget
from valet.validation.blobio import RangeReader, RangeSource, sha256_of
from valet.validation.reasons import Outcome, Reason, Rejection
from valet.validation.records import Decision
from valet.validation.scanners import Scanner, ScanResult, ScanSubject, Verdict
from valet.validation.sniff import canonical, decide_type
from valet.validation.structure import DEFAULT_READ_BUDGET, ImageLimits, PdfLimits, check_structure, needs_check

ZIP = "application/zip"
# Quarantine keeps a record and bounded evidence, not a copy, of uploads whose bytes the caller may use
# as free storage: over the profile cap, or fetched by storage from a URL the caller chose.
# An upload storage will not serve (Archive tier, customer-provided key) gets the same, with no bytes.
EVIDENCE_ONLY = frozenset({Reason.TOO_LARGE.value, Reason.COPY_CREATED.value, Reason.UNREADABLE.value})
# A decision on these reasons trusts no grant: its tombstone is timed from the blob, not the grant.
UNTRUSTED_GRANT = frozenset({Reason.MISSING_GRANT.value, Reason.BAD_GRANT.value, Reason.PATH_MISMATCH.value})


@dataclass(frozen=True)
class CopyFacts:
    """The copy properties storage sets on a blob created by Copy Blob (all empty for an upload)."""

    id: str | None = None
    source: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class StoredUpload:
    """What storage said about the upload, from the head read (and its index tags when it has any)."""

    container: str
    name: str
    size: int
    head: bytes  # the first bytes, up to the sniff window, as stored
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    created_at: datetime | None = None
    copy: CopyFacts = field(default_factory=CopyFacts)
    tags: Mapping[str, str] = field(default_factory=dict)
    unreadable: str | None = None  # why storage will not serve the bytes (trusted.unreadable), if it will not
    retention: str | None = None  # a legal hold or immutability policy on the upload (trusted.retention)


@dataclass(frozen=True)
class Rules:
    """What a decision is measured against: the grant keys, the profiles and the configured limits."""

    keys: GrantKeyRing
    policy: Policy
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    scanners: Sequence[Scanner] = ()
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    structure_read_bytes: int = DEFAULT_READ_BUDGET


@dataclass
class _Known:
    """What is known about an upload so far; a rejection records whatever was learnt before it."""

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
        known = {f.name: getattr(self, f.name) for f in fields(self)}  # the same names as Decision's
        return Decision(outcome=outcome, reason=reason.value, detail=detail, decided_at=now, **known)


def decide(upload: StoredUpload, content: RangeSource, rules: Rules, now: datetime,
           verdict: ScanResult | None = None) -> Decision:
    """Accept or quarantine ``upload``. ``content`` reads its bytes (the same version as the head);
    ``verdict`` is a scanner result that arrived out of band (a Defender event) and overrides the
    configured scanners."""
    known = _Known(size=upload.size, created_at=upload.created_at, upload_id=upload_id_from_name(upload.name))
    try:
        claims = _check_grant(upload, rules, known)
        if verdict is not None and verdict.verdict is Verdict.MALICIOUS:
            known.scan = f"{verdict.scanner}:{verdict.detail}"
            raise Rejection(Reason.MALWARE, f"{verdict.scanner} reported the upload malicious")
        check_what_storage_says(upload)
        _check_content(upload, content, rules, claims, known)
    except Rejection as rejection:
        return known.decision(Outcome.QUARANTINED, rejection.reason, rejection.detail, now)
    return known.decision(Outcome.ACCEPTED, Reason.OK, "all checks passed", now)


def cancelled(upload_id: str, caller: str, now: datetime) -> Decision:
    """The record of a grant its caller gave back before uploading (see :mod:`valet.grants.cancel`)."""
    return Decision(outcome=Outcome.CANCELLED, reason=Reason.CANCELLED.value, detail="cancelled by the caller",
                    upload_id=upload_id, caller=caller, decided_at=now)


def tombstone_until(decision: Decision, created_at: datetime | None, now: datetime, *, sas_ttl: timedelta,
                    grace: timedelta) -> datetime:
    """How long the tombstone must hold the name: until the upload's SAS can no longer be used, plus
    grace. A verified grant for this very blob says when; otherwise assume the longest SAS this app
    issues, counted from the blob's creation."""
    if decision.grant_expires is not None and decision.reason not in UNTRUSTED_GRANT:
        return decision.grant_expires + grace
    return (created_at or now) + sas_ttl + grace


def _check_grant(upload: StoredUpload, rules: Rules, known: _Known) -> GrantFacts:
    claims = granted.grant_facts(container=upload.container, name=upload.name, metadata=upload.metadata,
                                 keys=rules.keys, policy=rules.policy, skew=rules.clock_skew)
    known.caller, known.profile = claims.caller, claims.profile
    known.filename = claims.filename or ""
    known.declared_type = claims.content_type
    known.granted_at, known.grant_expires = claims.issued_at, claims.expires_at
    known.upload_id = claims.upload_id
    granted.check_window(claims, upload.created_at, rules.clock_skew)
    return claims


def _check_content(upload: StoredUpload, content: RangeSource, rules: Rules, claims: GrantFacts,
                   known: _Known) -> None:
    profile = rules.policy.profiles.get(claims.profile)
    if profile is None:
        raise Rejection(Reason.UNKNOWN_PROFILE, "the grant's profile is no longer configured")
    size, head = upload.size, upload.head
    check_size(size, claims.size, profile)
    granted.check_stored_type(upload.content_type, claims.content_type)

    if size == 0:
        known.detected_type = claims.content_type
    else:
        verdict = decide_type(head, claims.content_type, profile.types)
        known.detected_type = verdict.detected or ""
        if verdict.reason is not None:
            raise Rejection(verdict.reason, verdict.detail)
        if needs_check(canonical(claims.content_type)):
            check_structure(content, size, head, canonical(claims.content_type), rules.image_limits,
                            rules.structure_read_bytes, PdfLimits(allowed_actions=profile.pdf_actions))
        if is_zip_container(head) or known.detected_type == ZIP or claims.content_type == ZIP:
            limits = profile.archive or ArchiveLimits()
            directory = RangeReader(content, size, budget=directory_budget(limits))
            local = RangeReader(content, size, budget=local_budget(limits.max_entries),
                                read_ahead=LOCAL_READ_AHEAD, head=head)
            check_zip(directory.as_file(), size, limits, local.as_file())

    subject = ScanSubject(upload.container, upload.name, size, upload.tags if rules.scanners else {}, head)
    for scanner in rules.scanners:
        result = scanner.scan(subject)
        if result is None:
            continue
        known.scan = f"{result.scanner}:{result.detail}"
        if result.verdict is Verdict.MALICIOUS:
            raise Rejection(Reason.MALWARE, f"{result.scanner} reported the upload malicious")

    if claims.sha256 is not None:
        known.sha256 = sha256_of(content, size)
        if known.sha256 != claims.sha256.lower():
            raise Rejection(Reason.SHA256_MISMATCH, "content does not match the declared sha256")


def check_what_storage_says(upload: StoredUpload) -> None:
    """What a create-only SAS allows besides uploading bytes, seen in facts storage itself sets."""
    reserved = trusted.reserved_metadata(upload.metadata)
    if reserved:
        raise Rejection(Reason.RESERVED_METADATA, f"client-written app metadata: {', '.join(reserved)}"[:200])
    copy = upload.copy
    if copy.id or copy.source or copy.status:
        raise Rejection(Reason.COPY_CREATED, f"created by Copy Blob (status {copy.status or 'unknown'})")
    if upload.unreadable is not None:
        raise Rejection(Reason.UNREADABLE, f"storage will not serve the bytes: {upload.unreadable}")
    if upload.retention is not None:
        raise Rejection(Reason.RETENTION_SET, upload.retention)


def check_size(size: int, declared: int, profile: Profile) -> None:
    """Empty (unless the profile allows it), over the profile maximum, or not the declared size."""
    if size == 0 and not profile.allow_empty:
        raise Rejection(Reason.EMPTY, "the upload is empty")
    if size > profile.max_bytes:
        raise Rejection(Reason.TOO_LARGE, f"{size} bytes; profile maximum {profile.max_bytes}")
    if size != declared:
        raise Rejection(Reason.SIZE_MISMATCH, f"{size} bytes; declared {declared}")


def upload_id_from_name(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    try:
        parse_upload_id(stem)
    except ValetError:
        return ""
    return stem
