"""``GET /api/uploads/{uploadId}``: where an upload stands, for the caller it was granted to.

The blob path comes from the caller's own partition and the date embedded in the id, so another caller's
lookup finds nothing. When storage holds nothing, the id's owner MAC (see
:func:`valet.grants.naming.bind_upload_id`) tells "granted to you, not uploaded" (``pending`` or ``expired``)
from "not yours or not ours" (404). Reads: one prefix listing of the uploads container, and of the
destination containers when the source has no tombstone (both) or an ``accepted`` one (quarantine only:
a later malware verdict wins even if the tombstone was not updated yet).

Nothing the client wrote decides the answer: a tombstone counts only with a valid seal
(:class:`valet.validation.trusted.Sealer`), and the destination containers are written by the app alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobProperties, BlobServiceClient

from valet.clock import utcnow
from valet.errors import NotFound, ServiceUnavailable
from valet.grants.naming import parse_upload_id, upload_id_belongs_to
from valet.grants.token import GrantKeyRing
from valet.validation import records
from valet.validation.reasons import Outcome, public_reason
from valet.validation.reconcile import attempts, attention
from valet.validation.records import Decision
from valet.validation.tombstones import sealed_error_tags
from valet.validation.trusted import Sealer

CLOCK_SKEW = timedelta(minutes=1)
RELEASED = "released"  # Decision.review of a quarantine record a reviewer released (valet.review)



class StatusReader:
    def __init__(
        self,
        *,
        blob_service: BlobServiceClient,
        uploads: str,
        accepted: str,
        quarantine: str,
        keys: GrantKeyRing,
        sas_ttl: timedelta,
        max_attempts: int = 8,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._service = blob_service
        self._uploads, self._accepted, self._quarantine = uploads, accepted, quarantine
        self._keys = keys
        self._sealer = Sealer(keys)
        self._ttl = sas_ttl
        self._max_attempts = max_attempts
        self._clock = clock

    def status(self, partition: str, upload_id: str) -> dict[str, Any]:
        issued = parse_upload_id(upload_id)  # 400 for anything that is not one of our ids
        prefix = f"{partition}/{issued:%Y/%m/%d}/{upload_id}."
        try:
            source = self._first(self._uploads, prefix)
            if source is not None and records.is_tombstone(source.metadata) and self._sealer.verify(
                    self._uploads, source.name, source.metadata):
                decision = Decision.from_metadata(source.metadata, fallback=Outcome.QUARANTINED)
                if decision.outcome is Outcome.ACCEPTED:
                    later = self._first(self._quarantine, prefix)
                    if later is not None:
                        decision = Decision.from_metadata(later.metadata, fallback=Outcome.QUARANTINED)
                    if decision.review == RELEASED:  # released by a reviewer: the accepted copy's record
                        released = self._first(self._accepted, prefix)
                        if released is not None:
                            decision = Decision.from_metadata(released.metadata, fallback=Outcome.ACCEPTED)
                return _body(upload_id, decision)
            for container, outcome in ((self._quarantine, Outcome.QUARANTINED), (self._accepted, Outcome.ACCEPTED)):
                found = self._first(container, prefix)
                if found is not None:
                    decision = Decision.from_metadata(found.metadata, fallback=outcome)
                    if decision.review == RELEASED and container == self._quarantine:
                        continue  # a reviewer released it: the accepted copy answers
                    return _body(upload_id, decision)
        except AzureError as exc:
            raise ServiceUnavailable("Upload status is unavailable right now.", code="storage_unavailable") from exc
        if source is not None:
            tags = sealed_error_tags(self._sealer, self._uploads, source.name, source.tags)
            state = attention(tags, self._max_attempts)  # only the sealed record of failed attempts counts
            if state is None:
                return {"uploadId": upload_id, "status": "pending"}
            return {"uploadId": upload_id, "status": state, "attempts": attempts(tags)}
        owned = any(upload_id_belongs_to(upload_id, key, partition) for key in self._keys.all_keys())
        if not owned or issued > self._clock() + CLOCK_SKEW:
            raise NotFound("No such upload.", code="upload_not_found")
        expires = issued + self._ttl
        if self._clock() <= expires + CLOCK_SKEW:
            return {"uploadId": upload_id, "status": "pending", "expiresOn": records.timestamp(expires)}
        return {"uploadId": upload_id, "status": "expired", "expiresOn": records.timestamp(expires)}

    def _first(self, container: str, prefix: str) -> BlobProperties | None:
        include = ["metadata", "tags"] if container == self._uploads else ["metadata"]  # tags: failed attempts
        blobs = self._service.get_container_client(container).list_blobs(
            name_starts_with=prefix, include=include, results_per_page=2
        )
        return next(iter(blobs), None)


def _body(upload_id: str, decision: Decision) -> dict[str, Any]:
    body: dict[str, Any] = {"uploadId": upload_id, "status": decision.outcome.value}
    if decision.outcome is Outcome.QUARANTINED:
        body["reason"] = public_reason(decision.reason)
    if decision.decided_at.year > 1:
        body["decidedAt"] = records.timestamp(decision.decided_at)
    if decision.outcome is Outcome.ACCEPTED and decision.review == RELEASED:
        body["reviewed"] = {"previousStatus": decision.previous or "quarantined",
                            "reviewedAt": records.timestamp(decision.reviewed_at)}
    return body
