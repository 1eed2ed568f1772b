"""What one audit record holds, how it is written as a line, and where it is stored (pure).

A record says who did what, when, to which upload or batch, from which address, with the outcome and the
reason given. It never holds a credential: every string goes through :func:`scrub`, which replaces
anything shaped like a SAS signature, a bearer token, a JWS or a valet API key with ``[redacted]`` (the
callers pass ids, never credentials; this is the second line).

Storage layout (see docs/design.md, "The audit trail"): one append blob per app instance per hour,
``<yyyy>/<mm>/<dd>/<hh>/<instance>.<seq>.jsonl``, one JSON object per line. An instance appends only to
its own blob (no contention, no lease), an hour holds at most 3,600 flusher appends (Azure allows 50,000
blocks per append blob; ``seq`` rolls over past that), and a time range is read with one listing per day.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from valet.auth.apikeys import SCANNER_REGEX
from valet.caller import Caller

VERSION = 1
REDACTED = "[redacted]"
MAX_TEXT = 512
MAX_LINE = 8 * 1024
_ACTION = re.compile(r"^[a-z][a-z0-9_.-]{0,39}$")
_DATA_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")

# Anything shaped like a credential: a SAS signature or delegation-key field, a JWS/JWT (grant tokens and
# bearer tokens), an Authorization value, a valet API key, an account key.
SECRET_PATTERNS = (
    r"(?i:(?:^|[?&;\s])(?:sig|skoid|sktid|skv|sks)=)",
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.?",
    r"(?i:\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,})",
    SCANNER_REGEX,
    r"(?i:accountkey=)",
)
_SECRET = re.compile("|".join(SECRET_PATTERNS))  # one search per value


def has_secret(text: str) -> bool:
    return _SECRET.search(text) is not None


def scrub(value: str, limit: int = MAX_TEXT) -> str:
    """``value`` capped at ``limit`` characters, or ``[redacted]`` if it looks like it carries a credential."""
    return REDACTED if has_secret(value) else value[:limit]


class Action:
    """The actions valet records. Other features add their own names (``[a-z][a-z0-9_.-]*``)."""

    GRANT = "grant"
    RENEW = "renew"
    CANCEL = "cancel"
    DOWNLOAD = "download"
    DECISION = "decision"
    QUOTA_REFUSED = "quota.refused"
    REVIEW_VIEW = "review.view"
    REVIEW_RELEASE = "review.release"
    REVIEW_PURGE = "review.purge"


def check_action(action: str) -> str:
    if not _ACTION.fullmatch(action):
        raise ValueError(f"not an audit action name: {action[:40]!r}")
    return action


@dataclass(frozen=True)
class Actor:
    """Who acted: a caller (its id, kind, tenant, token subject or API key id) and the client address the
    app saw, or the app itself (``valet:<part>``)."""

    caller: str
    kind: str = ""
    tenant: str = ""
    subject: str = ""
    key_id: str = ""
    client_ip: str = ""

    @classmethod
    def of(cls, caller: Caller, client_ip: str = "") -> Actor:
        return cls(caller=caller.id, kind=caller.kind, tenant=caller.tenant or "", subject=caller.subject,
                   key_id=caller.key_id or "", client_ip=client_ip)

    @classmethod
    def app(cls, part: str) -> Actor:
        return cls(caller=f"valet:{part}", kind="app")

    def to_json(self) -> dict[str, str]:
        doc = {"caller": self.caller, "kind": self.kind, "tenant": self.tenant, "subject": self.subject,
               "keyId": self.key_id, "clientIp": self.client_ip}
        return {k: scrub(v, 256) for k, v in doc.items() if v}


Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    action: str
    actor: Actor
    upload_id: str = ""
    batch_id: str = ""
    owner: str = ""  # the caller the upload was granted to, when the actor is someone else
    outcome: str = ""
    reason: str = ""  # a reason code, or the reason a reviewer wrote
    detail: str = ""
    data: Mapping[str, Scalar] = field(default_factory=dict)
    instance: str = ""  # which app instance wrote it, and its sequence number there: gaps show losses
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "v": VERSION,
            "at": self.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "action": check_action(self.action),
            "actor": self.actor.to_json(),
        }
        for key, value in (("uploadId", self.upload_id), ("batchId", self.batch_id), ("owner", self.owner),
                           ("outcome", self.outcome), ("reason", self.reason), ("detail", self.detail)):
            if value:
                doc[key] = scrub(value)
        data = {k: (scrub(v) if isinstance(v, str) else v) for k, v in self.data.items()
                if _DATA_KEY.fullmatch(k) and v is not None and v != ""}
        if data:
            doc["data"] = data
        if self.instance:
            doc["src"] = {"instance": self.instance, "seq": self.seq}
        return doc

    def line(self) -> bytes:
        """One JSON line (ASCII, at most :data:`MAX_LINE` bytes: an oversized ``data`` is dropped)."""
        doc = self.to_json()
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=True)
        if len(text) >= MAX_LINE:
            doc.pop("data", None)
            doc["truncated"] = True
            text = json.dumps(doc, separators=(",", ":"), ensure_ascii=True)
        return (text + "\n").encode("ascii")


def parse_line(line: bytes | str) -> dict[str, Any] | None:
    """A stored record as a JSON object, or ``None`` for a line that is not one (never raises)."""
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("at"), str) else None


def record_time(doc: Mapping[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(doc.get("at", "")).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def matches(doc: Mapping[str, Any], *, upload: str = "", caller: str = "", action: str = "") -> bool:
    """The query filters: the upload id; a caller as the actor or as the upload's owner; an action name
    (``review`` matches every ``review.*``)."""
    if upload and doc.get("uploadId") != upload:
        return False
    if caller:
        actor = doc.get("actor")
        acting = actor.get("caller") if isinstance(actor, dict) else None
        if caller not in (acting, doc.get("owner")):
            return False
    if action:
        name = str(doc.get("action", ""))
        if name != action and not name.startswith(action + "."):
            return False
    return True


# -- where records live ----------------------------------------------------------------------------------

def blob_name(at: datetime, instance: str, seq: int) -> str:
    return f"{at.astimezone(UTC):%Y/%m/%d/%H}/{instance}.{seq:04d}.jsonl"


def hour_of(name: str) -> datetime | None:
    """The hour a blob's records were written in, from its name."""
    parts = name.split("/")
    if len(parts) != 5:
        return None
    try:
        return datetime(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), tzinfo=UTC)
    except ValueError:
        return None


def day_prefixes(since: datetime, until: datetime) -> Iterator[str]:
    """The day prefixes that cover ``[since, until]``, newest first."""
    day = until.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day >= first:
        yield f"{day:%Y/%m/%d}/"
        day -= timedelta(days=1)


def hour_in_range(hour: datetime, since: datetime, until: datetime) -> bool:
    return hour + timedelta(hours=1) > since and hour <= until
