"""The rules of quarantine review (pure): who may review what, which records can be released, what a
request must say. The storage side is :mod:`valet.review.quarantine`; the routes :mod:`valet.review.api`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from valet.caller import Caller
from valet.envreader import EnvReader
from valet.errors import BadRequest, ConfigurationError, Conflict, Forbidden, NotFound
from valet.validation.reasons import Reason
from valet.validation.records import Decision

REVIEW_ROLE = "VALET_REVIEW_ROLE"
DEFAULT_ROLE = "Uploads.Review"
REASON_MIN, REASON_MAX = 3, 500
PAGE_DEFAULT, PAGE_MAX = 50, 200
RELEASED, PURGED = "released", "purged"
_ROLE = re.compile(r"^[A-Za-z0-9_.:/-]{1,120}$")
_FILTER = re.compile(r"^[\x21-\x7e]{1,300}$")


@dataclass(frozen=True)
class ReviewSettings:
    role: str = DEFAULT_ROLE

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReviewSettings:
        role = EnvReader(environ).text(REVIEW_ROLE, DEFAULT_ROLE) or DEFAULT_ROLE
        if not _ROLE.fullmatch(role):
            raise ConfigurationError(f"{REVIEW_ROLE} must be one role or scope name")
        return cls(role=role)


def hidden() -> NotFound:
    """What anyone without the review role gets for every /api/review/ route: the route does not exist."""
    return NotFound("Not found.", code="not_found")


def require_reviewer(caller: Caller, settings: ReviewSettings) -> None:
    if settings.role not in caller.roles | caller.scopes:
        raise hidden()


def uploaded_by(caller: Caller, decision: Decision, name: str) -> bool:
    """Whether ``caller`` is the one the upload was granted to: the recorded caller id, or the blob's
    partition (which holds the caller's own uploads whatever the record says)."""
    return decision.caller == caller.id or name.startswith(caller.partition + "/")


def check_not_own(caller: Caller, decision: Decision, name: str) -> None:
    if uploaded_by(caller, decision, name):
        raise Forbidden("A reviewer never reviews their own uploads.", code="own_upload")


def is_malware(decision: Decision) -> bool:
    return decision.reason == Reason.MALWARE.value


def check_releasable(decision: Decision) -> None:
    """A malware verdict is never released; a purged record or one that kept only evidence has no bytes."""
    if is_malware(decision):
        raise Conflict("A malware verdict can never be released.", code="malware_verdict")
    if decision.review == PURGED:
        raise Conflict("The upload was purged: there is nothing to release.", code="upload_purged")
    if decision.evidence:
        raise Conflict("Only bounded evidence was kept for this upload: there is nothing to release.",
                       code="evidence_only")


def parse_reason(body: bytes) -> str:
    """``{"reason": "..."}``: required, 3 to 500 characters after trimming, no control characters."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("The body must be a JSON object.", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    reason = doc.get("reason")
    if not isinstance(reason, str):
        raise BadRequest("'reason' is required: why you take this action.", code="reason_required")
    reason = unicodedata.normalize("NFC", reason).strip()
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in reason):
        raise BadRequest("'reason' must not contain control or format characters.", code="invalid_reason")
    if not REASON_MIN <= len(reason) <= REASON_MAX:
        raise BadRequest(f"'reason' must be {REASON_MIN} to {REASON_MAX} characters.", code="invalid_reason")
    return reason


@dataclass(frozen=True)
class ListFilters:
    reason: str = ""
    caller: str = ""
    since: datetime | None = None
    until: datetime | None = None
    limit: int = PAGE_DEFAULT
    after: tuple[str, str] | None = None  # continuation: (decidedAt, name) of the last item returned

    def admits(self, decision: Decision) -> bool:
        if self.reason and decision.reason != self.reason:
            return False
        if self.caller and decision.caller != self.caller:
            return False
        if self.since is not None and decision.decided_at < self.since:
            return False
        return self.until is None or decision.decided_at <= self.until


def parse_time(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'{name}' must be an RFC 3339 date-time, e.g. 2026-12-01T00:00:00Z.",
                         code="invalid_query") from None
    if moment.tzinfo is None:
        raise BadRequest(f"'{name}' must carry a time zone (Z or an offset).", code="invalid_query")
    return moment.astimezone(UTC)


def parse_filters(params: Mapping[str, str]) -> ListFilters:
    for key in ("reason", "caller", "continuation"):
        value = params.get(key)
        if value is not None and value != "" and not _FILTER.fullmatch(value):
            raise BadRequest(f"'{key}' is not a valid filter value.", code="invalid_query")
    since = parse_time(params["since"], "since") if params.get("since") else None
    until = parse_time(params["until"], "until") if params.get("until") else None
    if since and until and since > until:
        raise BadRequest("'since' is after 'until'.", code="invalid_query")
    raw_limit = params.get("limit") or str(PAGE_DEFAULT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= PAGE_MAX:
        raise BadRequest(f"'limit' must be 1 to {PAGE_MAX}.", code="invalid_query")
    after = None
    if params.get("continuation"):
        at, sep, name = params["continuation"].partition("~")
        if not sep or not name:
            raise BadRequest("'continuation' is not one this service returned.", code="invalid_continuation")
        after = (at, name)
    return ListFilters(reason=params.get("reason") or "", caller=params.get("caller") or "", since=since,
                       until=until, limit=int(raw_limit), after=after)


def continuation(at: str, name: str) -> str:
    return f"{at}~{name}"
