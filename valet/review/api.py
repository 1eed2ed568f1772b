"""The ``/api/review/`` handlers: parse, call, audit, map. The route table admits the caller first
(:meth:`valet.review.service.Review.admit`): anyone without the review role (``VALET_REVIEW_ROLE``), or
without valid credentials, gets ``404`` for every one of them.

- ``GET  /api/review/quarantine?reason=&caller=&since=&until=&limit=&continuation=``
- ``GET  /api/review/quarantine/{uploadId}``          the record and a download-only read URL
- ``POST /api/review/quarantine/{uploadId}/release``  ``{"reason": "..."}``
- ``POST /api/review/quarantine/{uploadId}/purge``    ``{"reason": "..."}``
- ``GET  /api/review/audit?upload=&caller=&action=&since=&until=&limit=``
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import azure.functions as func
from azure.core.exceptions import AzureError

from valet.audit import Action, Actor
from valet.caller import Caller
from valet.errors import BadRequest, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType, ValetError
from valet.grants.naming import parse_upload_id
from valet.http import json_response
from valet.review import rules
from valet.review.quarantine import QuarantineItem
from valet.review.service import Review
from valet.validation import records

MAX_BODY = 4096
AUDIT_DEFAULT_WINDOW = timedelta(hours=24)
AUDIT_MAX_WINDOW = timedelta(days=366)
AUDIT_MAX_LIMIT = 500

def _actor(review: Review, caller: Caller, req: func.HttpRequest) -> Actor:
    return Actor.of(caller, review.authenticator.client_address(req))


def _reason(req: func.HttpRequest) -> str:
    declared = (req.headers.get("content-type") or "application/json").split(";", 1)[0].strip().lower()
    if declared != "application/json":
        raise UnsupportedMediaType("Send the request body as application/json.", code="unsupported_request_type")
    body = req.get_body() or b""
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"The request body exceeds {MAX_BODY} bytes.", code="request_too_large")
    return rules.parse_reason(body)


def _own(review: Review, caller: Caller, item: QuarantineItem, req: func.HttpRequest, action: str) -> None:
    """403 for a reviewer's own upload, with an audit record of the attempt."""
    if rules.uploaded_by(caller, item.decision, item.name):
        review.audit.record(action, actor=_actor(review, caller, req), upload_id=item.decision.upload_id,
                            owner=item.decision.caller, outcome="refused", reason="own_upload")
        rules.check_not_own(caller, item.decision, item.name)


def quarantine_list(review: Review, caller: Caller, req: func.HttpRequest) -> func.HttpResponse:
    items, token, truncated = review.reader.list(rules.parse_filters(req.params))
    body = {"items": [{**i.summary(), "own": rules.uploaded_by(caller, i.decision, i.name)} for i in items],
            "continuation": token, "truncated": truncated}
    return json_response(200, body)


def quarantine_record(review: Review, caller: Caller, req: func.HttpRequest) -> func.HttpResponse:
    item = review.reader.find(req.route_params.get("uploadId", ""))
    _own(review, caller, item, req, Action.REVIEW_VIEW)
    body = item.full()
    if item.kept != "none":
        url, expires = review.reader.read_url(item)
        body["readUrl"], body["readUrlExpiresOn"] = url, records.timestamp(expires)
        review.audit.record(Action.REVIEW_VIEW, actor=_actor(review, caller, req), upload_id=item.decision.upload_id,
                            owner=item.decision.caller, outcome="read_url",
                            data={"expiresOn": records.timestamp(expires), "kept": item.kept})
    return json_response(200, body, headers={"ETag": f'"{item.etag.strip(chr(34))}"'})


def quarantine_release(review: Review, caller: Caller, req: func.HttpRequest) -> func.HttpResponse:
    return _act(review, caller, req, Action.REVIEW_RELEASE)


def quarantine_purge(review: Review, caller: Caller, req: func.HttpRequest) -> func.HttpResponse:
    return _act(review, caller, req, Action.REVIEW_PURGE)


def _act(review: Review, caller: Caller, req: func.HttpRequest, action: str) -> func.HttpResponse:
    reason = _reason(req)
    item = review.reader.find(req.route_params.get("uploadId", ""))
    _own(review, caller, item, req, action)
    actor, d = _actor(review, caller, req), item.decision
    if_match = req.headers.get("if-match") or ""
    try:
        if action == Action.REVIEW_RELEASE:
            done = review.actions.release(item, caller, reason, if_match=if_match)
        else:
            done = review.actions.purge(item, caller, reason, if_match=if_match)
    except ValetError as error:
        if error.status < 500:  # refused: the attempt is recorded too
            review.audit.write(action, actor=actor, upload_id=d.upload_id, owner=d.caller, outcome="refused",
                               reason=reason, detail=error.code, data={"previousReason": d.reason})
        raise
    review.audit.write(action, actor=actor, upload_id=d.upload_id, owner=d.caller,
                       outcome="released" if action == Action.REVIEW_RELEASE else "purged", reason=reason,
                       data={"previousReason": d.reason, "sha256": done.sha256 or None, "etag": item.etag})
    state = rules.RELEASED if action == Action.REVIEW_RELEASE else rules.PURGED
    return json_response(200, {"uploadId": d.upload_id, "review": state,
                               "status": "accepted" if state == rules.RELEASED else "quarantined",
                               "reviewedBy": done.reviewed_by or caller.id,
                               "reviewedAt": records.timestamp(done.reviewed_at)})


def audit_query(review: Review, caller: Caller, req: func.HttpRequest) -> func.HttpResponse:
    reader = review.audit.reader()
    if reader is None:
        raise ServiceUnavailable("The audit trail is not stored (VALET_AUDIT_CONTAINER=none).",
                                 code="audit_disabled")
    params = req.params
    upload = params.get("upload") or ""
    now = datetime.now(UTC)
    until = rules.parse_time(params["until"], "until") if params.get("until") else now
    if params.get("since"):
        since = rules.parse_time(params["since"], "since")
    elif upload:
        since = parse_upload_id(upload) - timedelta(hours=1)  # an upload's records start at its grant
    else:
        since = until - AUDIT_DEFAULT_WINDOW
    if since > until or until - since > AUDIT_MAX_WINDOW:
        raise BadRequest("'since' must be before 'until', at most 366 days apart.", code="invalid_query")
    raw_limit = params.get("limit") or "100"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= AUDIT_MAX_LIMIT:
        raise BadRequest(f"'limit' must be 1 to {AUDIT_MAX_LIMIT}.", code="invalid_query")
    for key in ("caller", "action"):
        if len(params.get(key) or "") > 300:
            raise BadRequest(f"'{key}' is too long.", code="invalid_query")
    try:
        result = reader.query(since=since, until=until, upload=upload, caller=params.get("caller") or "",
                              action=params.get("action") or "", limit=int(raw_limit))
    except AzureError as exc:
        raise ServiceUnavailable("The audit trail cannot be read right now.", code="storage_unavailable") from exc
    return json_response(200, {"records": result.records, "truncated": result.truncated,
                               "since": records.timestamp(since), "until": records.timestamp(until)})
