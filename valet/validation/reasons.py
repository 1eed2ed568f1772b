"""Decision outcomes and reason codes: stable strings recorded on blobs, in the audit log and (mapped to
a coarser public code) in the status endpoint.

A reason code says *why* an upload ended where it did. Codes are part of the contract: records and
dashboards key on them, so they never change meaning. :data:`PUBLIC_REASONS` maps each to what a client
may see: enough to fix an honest mistake (wrong size, wrong type, wrong hash), nothing that helps probe
the content checks (active content and polyglot detection both read ``content_not_allowed``).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"
    CANCELLED = "cancelled"  # the caller gave the grant back before uploading: a tombstone, no copy


class Reason(StrEnum):
    OK = "ok"
    CANCELLED = "cancelled"
    # The grant carried by the upload (x-ms-meta-valetgrant).
    MISSING_GRANT = "missing_grant"
    BAD_GRANT = "bad_grant"
    PATH_MISMATCH = "path_mismatch"
    GRANT_EXPIRED = "grant_expired"
    UNKNOWN_PROFILE = "unknown_profile"
    # Size.
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    SIZE_MISMATCH = "size_mismatch"
    # Type.
    CONTENT_TYPE_MISMATCH = "content_type_mismatch"  # the blob's Content-Type header is not the granted one
    TYPE_NOT_ALLOWED = "type_not_allowed"  # the bytes are of a type the profile does not accept
    TYPE_MISMATCH = "type_mismatch"  # the bytes are not of the declared type
    ACTIVE_CONTENT = "active_content"  # HTML, scripted SVG, XML, PDF JavaScript where it does not belong
    POLYGLOT = "polyglot"  # the bytes are valid as two different formats
    IMAGE_INVALID = "image_invalid"  # declared an image; the bytes do not parse as that image format
    IMAGE_LIMITS = "image_limits"  # dimensions or pixel count beyond the limits (decompression bombs)
    PDF_INVALID = "pdf_invalid"  # declared a PDF; the bytes do not parse as one
    PDF_UNVERIFIABLE = "pdf_unverifiable"  # the PDF's structure could not be checked within the read budget
    # What a create-only SAS lets a caller do besides uploading bytes.
    RESERVED_METADATA = "reserved_metadata"  # valet* metadata that only the app writes (spoofed state)
    # No longer given (issue 19: a snapshot holds the decided bytes and goes with the tombstone); kept so
    # records written before still read and map.
    SNAPSHOT_PRESENT = "snapshot_present"
    COPY_CREATED = "copy_created"  # the upload is a Copy Blob of another URL, not bytes the caller sent
    UNREADABLE = "unreadable"  # Archive tier or a customer-provided key: storage will not serve the bytes
    RETENTION_SET = "retention_set"  # a legal hold or immutability policy on the upload
    # Content.
    SHA256_MISMATCH = "sha256_mismatch"
    ARCHIVE_INVALID = "archive_invalid"
    ARCHIVE_TOO_MANY_ENTRIES = "archive_too_many_entries"
    ARCHIVE_TOO_LARGE = "archive_too_large"
    ARCHIVE_RATIO = "archive_ratio"
    ARCHIVE_OVERLAP = "archive_overlap"  # entries share bytes: a non-recursive zip bomb
    ARCHIVE_GAP = "archive_gap"  # bytes between entries or before the directory (hidden entries)
    ARCHIVE_MISMATCH = "archive_mismatch"  # a local header disagrees with its central directory record
    ARCHIVE_UNSAFE_NAME = "archive_unsafe_name"  # '..', absolute paths, drive letters, backslashes
    MALWARE = "malware"


PUBLIC_REASONS: dict[Reason, str] = {
    Reason.OK: "ok",
    Reason.CANCELLED: "cancelled",
    Reason.MISSING_GRANT: "grant_invalid",
    Reason.BAD_GRANT: "grant_invalid",
    Reason.PATH_MISMATCH: "grant_invalid",
    Reason.GRANT_EXPIRED: "grant_expired",
    Reason.UNKNOWN_PROFILE: "profile_unavailable",
    Reason.EMPTY: "empty",
    Reason.TOO_LARGE: "too_large",
    Reason.SIZE_MISMATCH: "size_mismatch",
    Reason.CONTENT_TYPE_MISMATCH: "content_type_mismatch",
    Reason.TYPE_NOT_ALLOWED: "type_not_allowed",
    Reason.TYPE_MISMATCH: "type_mismatch",
    Reason.ACTIVE_CONTENT: "content_not_allowed",
    Reason.POLYGLOT: "content_not_allowed",
    Reason.IMAGE_INVALID: "type_mismatch",
    Reason.IMAGE_LIMITS: "too_large",
    Reason.PDF_INVALID: "type_mismatch",
    Reason.PDF_UNVERIFIABLE: "content_not_allowed",
    Reason.RESERVED_METADATA: "content_not_allowed",
    Reason.SNAPSHOT_PRESENT: "content_not_allowed",
    Reason.COPY_CREATED: "content_not_allowed",
    Reason.UNREADABLE: "properties_not_allowed",
    Reason.RETENTION_SET: "properties_not_allowed",
    Reason.SHA256_MISMATCH: "sha256_mismatch",
    Reason.ARCHIVE_INVALID: "archive_invalid",
    Reason.ARCHIVE_TOO_MANY_ENTRIES: "archive_limits",
    Reason.ARCHIVE_TOO_LARGE: "archive_limits",
    Reason.ARCHIVE_RATIO: "archive_limits",
    Reason.ARCHIVE_OVERLAP: "archive_limits",
    Reason.ARCHIVE_GAP: "archive_invalid",
    Reason.ARCHIVE_MISMATCH: "archive_invalid",
    Reason.ARCHIVE_UNSAFE_NAME: "archive_invalid",
    Reason.MALWARE: "malware_detected",
}


def public_reason(code: str) -> str:
    """The client-facing code for a recorded reason; unknown codes (a newer writer) stay opaque."""
    try:
        return PUBLIC_REASONS[Reason(code)]
    except ValueError:
        return "rejected"


class Rejection(Exception):
    """A check failed: the upload is quarantined with ``reason``. ``detail`` is for the record (operators),
    never for the client, and never holds secrets."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
