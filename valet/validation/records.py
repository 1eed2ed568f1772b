"""The record of a decision, as blob metadata on the destination copy and on the source tombstone.

Metadata values travel as HTTP headers, so everything is ASCII: values that could hold anything (the
caller id comes from token claims) are percent-encoded and capped. The grant token never goes into a
record; the upload id joins the record with the grant audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from valet.clock import RFC3339, rfc3339
from valet.validation.reasons import Outcome

STATE = "valetstate"
TOMBSTONE = "tombstone"
ERROR = "error"
UNTIL = "valetuntil"
ATTEMPTS = "valetattempts"
ERROR_CODE = "valeterror"
OUTCOME = "valetoutcome"
REASON = "valetreason"
EVENT = "valetevent"  # index tag: "pending" until the decision's event is on the queue
PENDING = "pending"
WRITE_ID = "valetwriteid"  # random per tombstone write: tells our own write from another invocation's

_FIELDS = {
    "outcome": OUTCOME,
    "reason": REASON,
    "detail": "valetdetail",
    "upload_id": "valetuploadid",
    "caller": "valetcaller",
    "profile": "valetprofile",
    "declared_type": "valetdeclaredtype",
    "detected_type": "valetdetectedtype",
    "size": "valetsize",
    "sha256": "valetsha256",
    "granted_at": "valetgrantedat",
    "grant_expires": "valetgrantexpires",
    "created_at": "valetcreatedat",
    "decided_at": "valetdecidedat",
    "scan": "valetscan",
    "previous": "valetprevious",
    "filename": "valetfilename",
    "evidence": "valetevidence",
    "review": "valetreview",
    "reviewed_by": "valetreviewedby",
    "reviewed_at": "valetreviewedat",
    "review_reason": "valetreviewreason",
}
_MAX_VALUE = 512
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%") + " "


def ascii_value(value: str) -> str:
    return quote(value, safe=_SAFE)[:_MAX_VALUE]


def timestamp(moment: datetime | None) -> str:
    return "" if moment is None else rfc3339(moment)


def parse_timestamp(value: str | None) -> datetime | None:
    """A record's timestamp, or ``None`` for anything else (the parsers here are total: whatever a
    client wrote into metadata or tags is data, never an exception)."""
    if not value or not isinstance(value, str) or len(value) != 20 or not value.isascii():
        return None
    try:
        return datetime.strptime(value, RFC3339).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_count(value: str | None) -> int | None:
    """A non-negative count of at most 9 ASCII digits, or ``None``. ``str.isdigit`` alone is not enough:
    it is true for ``"²"`` and other scripts' digits, and ``int`` refuses those and over 4300 digits."""
    if not value or not isinstance(value, str) or len(value) > 9 or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    detail: str
    upload_id: str
    caller: str
    decided_at: datetime
    profile: str = ""
    declared_type: str = ""
    detected_type: str = ""
    size: int | None = None
    sha256: str = ""
    granted_at: datetime | None = None
    grant_expires: datetime | None = None
    created_at: datetime | None = None
    scan: str = ""
    previous: str = ""  # set when a later verdict moved an accepted upload to quarantine
    filename: str = ""  # the sanitized original filename from the grant (for downloads), when known
    evidence: str = ""  # set when quarantine keeps bounded evidence instead of the whole upload
    # Whether the verified grant stored a row in the quota table, which settling the decision consumes.
    # Not part of the record (a decision read back from metadata says None: unknown).
    stored_row: bool | None = field(default=None, compare=False)
    review: str = ""  # "released" or "purged" once a reviewer acted (valet.review)
    reviewed_by: str = ""
    reviewed_at: datetime | None = None
    review_reason: str = ""

    def metadata(self) -> dict[str, str]:
        values = {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "detail": self.detail,
            "upload_id": self.upload_id,
            "caller": self.caller,
            "profile": self.profile,
            "declared_type": self.declared_type,
            "detected_type": self.detected_type,
            "size": "" if self.size is None else str(self.size),
            "sha256": self.sha256,
            "granted_at": timestamp(self.granted_at),
            "grant_expires": timestamp(self.grant_expires),
            "created_at": timestamp(self.created_at),
            "decided_at": timestamp(self.decided_at),
            "scan": self.scan,
            "previous": self.previous,
            "filename": self.filename,
            "evidence": self.evidence,
            "review": self.review,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": timestamp(self.reviewed_at),
            "review_reason": self.review_reason,
        }
        return {_FIELDS[k]: ascii_value(v) for k, v in values.items() if v}

    def tags(self) -> dict[str, str]:
        """Index tags on the destination copy, so operators can find decisions by outcome and reason."""
        return {OUTCOME: self.outcome.value, REASON: self.reason}

    def requarantined(self, reason: str, detail: str, scan: str, at: datetime) -> Decision:
        return replace(self, outcome=Outcome.QUARANTINED, reason=reason, detail=detail, scan=scan,
                       previous=self.outcome.value, decided_at=at)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], *, fallback: Outcome) -> Decision:
        def get(field: str) -> str:
            return unquote(metadata.get(_FIELDS[field], ""))

        try:
            outcome = Outcome(get("outcome"))
        except ValueError:
            outcome = fallback
        size = parse_count(get("size"))
        return cls(
            outcome=outcome,
            reason=get("reason") or "unknown",
            detail=get("detail"),
            upload_id=get("upload_id"),
            caller=get("caller"),
            decided_at=parse_timestamp(get("decided_at")) or datetime.min.replace(tzinfo=UTC),
            profile=get("profile"),
            declared_type=get("declared_type"),
            detected_type=get("detected_type"),
            size=size,
            sha256=get("sha256"),
            granted_at=parse_timestamp(get("granted_at")),
            grant_expires=parse_timestamp(get("grant_expires")),
            created_at=parse_timestamp(get("created_at")),
            scan=get("scan"),
            previous=get("previous"),
            filename=get("filename"),
            evidence=get("evidence"),
            review=get("review"),
            reviewed_by=get("reviewed_by"),
            reviewed_at=parse_timestamp(get("reviewed_at")),
            review_reason=get("review_reason"),
        )


# A tombstone's bytes. Not empty: a ranged GET of an empty blob is 416 with no properties, and the
# validator's first request (a ranged GET of the head) must answer "decided" for a tombstone by itself.
# Only the seal in the metadata makes a blob a tombstone; these bytes say what it is to a person.
TOMBSTONE_BODY = b"valet tombstone\n"


def tombstone_metadata(decision: Decision, until: datetime, write_id: str = "") -> dict[str, str]:
    meta = {
        STATE: TOMBSTONE,
        UNTIL: timestamp(until),
        _FIELDS["outcome"]: decision.outcome.value,
        _FIELDS["reason"]: ascii_value(decision.reason),
        _FIELDS["upload_id"]: ascii_value(decision.upload_id),
        _FIELDS["decided_at"]: timestamp(decision.decided_at),
    }
    if write_id:
        meta[WRITE_ID] = write_id
    return meta


def tombstone_tags(until: datetime, *, event_pending: bool = False) -> dict[str, str]:
    """Index tags that let the sweeper find expired tombstones without listing the container; with
    ``event_pending``, also the marker that the decision's event is not yet on the queue (cleared once it
    is, so a later delivery that sees more tags than these two knows to send it)."""
    tags = {STATE: TOMBSTONE, UNTIL: timestamp(until)}
    if event_pending:
        tags[EVENT] = PENDING
    return tags


def tag(tags: Mapping[str, str] | None, name: str) -> str:
    """The value of one of valet's index tags, or ``""``."""
    return (tags or {}).get(name, "")


def is_tombstone(metadata: Mapping[str, str] | None) -> bool:
    """Whether the metadata *says* tombstone. A client can write that too: decisions trust a tombstone only
    once :meth:`valet.validation.trusted.Sealer.verify` accepts its seal."""
    return bool(metadata) and metadata.get(STATE) == TOMBSTONE  # type: ignore[union-attr]
