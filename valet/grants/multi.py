"""Batch grants and idempotent grants: ``POST /api/uploads`` with ``files``, or with ``Idempotency-Key``.

A batch is all or nothing: every file is checked (type, size, the profile's rules) before anything is
reserved, and the files are reserved together (quota for the sum) with the batch row in one Table
transaction; any refusal grants nothing and answers ``batch_rejected`` naming every refused file. An
idempotent grant stores its plan (upload ids, blob names) under the key before reserving; the same
caller, key and body within 24 hours gets the same ids and a freshly signed SAS, and reserves nothing
twice; another body is ``422 idempotency_key_reused``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from valet.caller import Caller
from valet.errors import BadRequest, NotFound, ServiceUnavailable, ValetError
from valet.grants.issuer import Grant, GrantIssuer, Planned
from valet.grants.policy import Policy
from valet.grants.request import GrantRequest, parse_grant_request
from valet.quotas.batches import BatchLedger, BatchRow
from valet.quotas.idempotency import IdempotencyKeyReused, IdempotencyStore, fingerprint
from valet.quotas.rows import Account
from valet.quotas.rules import QuotaExceeded
from valet.quotas.service import Quotas

_BATCH_FIELDS = {"profile", "files"}
_BATCH_ID = "b-"  # batch ids: "b-" and a UUID4, so they never look like an upload id


@dataclass(frozen=True)
class BatchRequest:
    profile: str | None
    files: tuple[GrantRequest | ValetError, ...]  # a file whose fields are malformed keeps its error


class BatchRejected(ValetError):
    status = 400
    code = "batch_rejected"
    title = "The batch was refused; nothing was granted"


@dataclass(frozen=True)
class BatchGrant:
    batch_id: str
    grants: tuple[Grant, ...]


def parse_upload_request(body: bytes) -> GrantRequest | BatchRequest:
    """A single grant request, or a batch (a body with ``files``)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json") from None
    if not isinstance(doc, dict) or "files" not in doc:
        return parse_grant_request(body)
    unknown = sorted(set(doc) - _BATCH_FIELDS)
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(repr(u[:40]) for u in unknown[:5])}. "
                         "Known fields of a batch: files, profile.", code="unknown_field")
    files, profile = doc["files"], doc.get("profile")
    if not isinstance(files, list) or not files:
        raise BadRequest("'files' must be a non-empty list of files.", code="invalid_files")
    if profile is not None and (not isinstance(profile, str) or not profile or len(profile) > 64):
        raise BadRequest("'profile' must be a profile name.", code="unknown_profile")
    parsed: list[GrantRequest | ValetError] = []
    for item in files[:1000]:
        if not isinstance(item, dict) or "profile" in item:
            parsed.append(BadRequest("Each file must be an object with filename, contentType, size and sha256 "
                                     "(the profile is the batch's).", code="invalid_file"))
            continue
        try:
            parsed.append(parse_grant_request(json.dumps({**item, **({"profile": profile} if profile else {})})
                                              .encode()))
        except ValetError as error:
            parsed.append(error)
    if len(files) > len(parsed):
        raise BadRequest("A batch holds at most 1000 files.", code="invalid_files")
    return BatchRequest(profile, tuple(parsed))


def _fingerprint(request: GrantRequest | BatchRequest) -> str:
    if isinstance(request, GrantRequest):
        return fingerprint({"single": asdict(request)})
    files = [asdict(f) if isinstance(f, GrantRequest) else {"error": f.code} for f in request.files]
    return fingerprint({"batch": {"profile": request.profile, "files": files}})


def _status_for(statuses: Sequence[int]) -> int:
    """The most specific status that applies to every refusal (400, 413, 415, 429), else 400."""
    return statuses[0] if len(set(statuses)) == 1 and statuses[0] in (400, 413, 415, 429) else 400


class GrantBook:
    """Grants that need the quota table beyond a quota: batches and idempotent grants."""

    def __init__(self, issuer: GrantIssuer, policy: Policy, quotas: Quotas) -> None:
        self._issuer = issuer
        self._policy = policy
        self._quotas = quotas

    def _table_parts(self) -> tuple[IdempotencyStore, BatchLedger]:
        if self._quotas.store is None:
            raise ServiceUnavailable("The quota table is not configured.", code="quota_store_unavailable")
        return IdempotencyStore(self._quotas.store.table), BatchLedger(self._quotas.store.table)

    def single(self, caller: Caller, request: GrantRequest, key: str) -> Grant:
        """An idempotent single grant."""
        planned = self._issuer.plan(caller, request, record=True)
        keys, _ = self._table_parts()
        account = Account.of(caller)
        claim = keys.claim(account, key, _fingerprint(request), {"kind": "single", "uploads": [planned.to_json()]})
        if claim.fresh:
            try:
                self._quotas.reserve(caller, planned.profile, [planned.reservation()], record=True)
            except ValetError:
                keys.forget(account, key)
                raise
        else:
            if claim.document.get("kind") != "single":
                raise IdempotencyKeyReused("This Idempotency-Key was used for a batch; use a new key.")
            planned = Planned.from_json(claim.document["uploads"][0])
            self._quotas.reserve(caller, planned.profile, [planned.reservation()], record=True, repeat=True)
        return self._issuer.sign(caller, planned)

    def batch(self, caller: Caller, request: BatchRequest, key: str | None) -> BatchGrant:
        profile = self._policy.profile_for(request.profile, caller.roles | caller.scopes)  # 400/403 for all
        limit = self._quotas.max_files_per_batch(profile.name)
        if len(request.files) > limit:
            raise BadRequest(f"Profile '{profile.name}' takes at most {limit} files a batch.",
                             code="too_many_files", extra={"maxFilesPerBatch": limit})
        planned: list[Planned] = []
        errors: list[dict[str, Any]] = []
        statuses: list[int] = []
        for index, item in enumerate(request.files):
            try:
                if isinstance(item, ValetError):
                    raise item
                planned.append(self._issuer.plan(caller, item, record=True))
            except ValetError as error:
                errors.append({"index": index, "code": error.code, "detail": error.detail})
                statuses.append(error.status)
        if errors:
            raise self._rejected(errors, statuses)
        keys, _ = self._table_parts()
        account = Account.of(caller)
        batch_id = _BATCH_ID + str(uuid.uuid4())
        fresh = True
        if key is not None:
            claim = keys.claim(account, key, _fingerprint(request),
                               {"kind": "batch", "batchId": batch_id, "uploads": [p.to_json() for p in planned]})
            fresh = claim.fresh
            if claim.document.get("kind") != "batch":
                raise IdempotencyKeyReused("This Idempotency-Key was used for a single grant; use a new key.")
            batch_id = str(claim.document["batchId"])
            planned = [Planned.from_json(doc) for doc in claim.document["uploads"]]
        row = BatchRow(batch_id, caller.id, account.caller, tuple(p.upload_id for p in planned),
                       max(p.deadline for p in planned))
        try:
            self._quotas.reserve(caller, profile.name, [p.reservation() for p in planned], batch=row,
                                 repeat=not fresh)
        except QuotaExceeded as exceeded:
            if key is not None and fresh:
                keys.forget(account, key)
            rejected = BatchRejected(
                f"The batch would exceed a quota: {exceeded.detail}", headers=exceeded.headers,
                extra={"errors": [{"index": i, "code": exceeded.code, "detail": exceeded.detail}
                                  for i in range(len(planned))], "quota": exceeded.quota})
            rejected.status = 429  # every file is refused, for the sum
            raise rejected from exceeded
        return BatchGrant(batch_id, tuple(self._issuer.sign(caller, p) for p in planned))

    def batch_status(self, caller: Caller, batch_id: str) -> dict[str, Any]:
        """``GET /api/batches/{batchId}``: the batch of this caller, else ``404 batch_not_found``."""
        if not batch_id.startswith(_BATCH_ID) or len(batch_id) > 64:
            raise NotFound("No such batch.", code="batch_not_found")
        _, ledger = self._table_parts()
        found = ledger.find(Account.of(caller), batch_id)
        if found is None:
            raise NotFound("No such batch.", code="batch_not_found")
        return found[1].document()

    @staticmethod
    def _rejected(errors: list[dict[str, Any]], statuses: list[int]) -> BatchRejected:
        rejected = BatchRejected(f"{len(errors)} file(s) of the batch were refused; nothing was granted.",
                                 extra={"errors": errors})
        rejected.status = _status_for(statuses)
        return rejected
