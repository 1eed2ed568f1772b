"""The quarantine container, as a reviewer sees it: list, find one record, a download-only read URL.

Quarantine names begin with the uploader's partition, not the time, so the list is one listing of the
container with metadata (bounded by ``scan_limit``; the answer says ``truncated`` past it), filtered and
ordered newest first here; the continuation is the ``(decidedAt, name)`` of the last item. Finding one
upload is one name-only listing plus one properties read. Quarantines are meant to stay small (a few
thousand records); see docs/validation.md, "Quarantine review".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, BlobSasPermissions, BlobServiceClient

from valet.clock import utcnow
from valet.errors import Conflict, NotFound, ServiceUnavailable
from valet.grants.delegation import UserDelegationKeyCache, blob_sas, key_expiry
from valet.grants.naming import parse_upload_id
from valet.review import rules
from valet.review.rules import ListFilters
from valet.validation import records
from valet.validation.reasons import Outcome, public_reason
from valet.validation.records import Decision

OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class QuarantineItem:
    name: str
    decision: Decision
    etag: str
    stored_bytes: int

    @property
    def kept(self) -> str:
        """What the record keeps: the upload's ``bytes``, bounded ``evidence``, or ``none`` (purged)."""
        if self.decision.review == rules.PURGED:
            return "none"
        return "evidence" if self.decision.evidence else "bytes"

    def summary(self) -> dict[str, Any]:
        d = self.decision
        body: dict[str, Any] = {
            "uploadId": d.upload_id, "caller": d.caller, "profile": d.profile or None,
            "reason": d.reason, "publicReason": public_reason(d.reason), "detail": d.detail,
            "declaredType": d.declared_type or None, "detectedType": d.detected_type or None,
            "size": d.size, "sha256": d.sha256 or None, "decidedAt": records.timestamp(d.decided_at) or None,
            "kept": self.kept, "review": {"state": d.review or "open"},
        }
        if d.review:
            body["review"].update({"by": d.reviewed_by, "at": records.timestamp(d.reviewed_at),
                                   "reason": d.review_reason})
        return body

    def full(self) -> dict[str, Any]:
        d = self.decision
        return {**self.summary(), "blob": self.name, "etag": self.etag, "storedBytes": self.stored_bytes,
                "filename": d.filename or None, "scan": d.scan or None, "evidence": d.evidence or None,
                "previousStatus": d.previous or None, "grantedAt": records.timestamp(d.granted_at) or None,
                "grantExpires": records.timestamp(d.grant_expires) or None,
                "createdAt": records.timestamp(d.created_at) or None}


def item_of(props: BlobProperties) -> QuarantineItem:
    return QuarantineItem(props.name, Decision.from_metadata(props.metadata or {}, fallback=Outcome.QUARANTINED),
                          str(props.etag), int(props.size or 0))


class QuarantineReader:
    def __init__(self, *, blob_service: BlobServiceClient, quarantine: str, account_url: str, account_name: str,
                 keys: UserDelegationKeyCache, read_ttl: timedelta, start_skew: timedelta,
                 clock: Callable[[], datetime] = utcnow, scan_limit: int = 10_000) -> None:
        self._container = blob_service.get_container_client(quarantine)
        self.container = quarantine
        self._account_url = account_url.rstrip("/")
        self._account_name = account_name
        self._keys = keys
        self._ttl = read_ttl
        self._skew = start_skew
        self._clock = clock
        self._scan_limit = scan_limit

    def list(self, filters: ListFilters) -> tuple[list[QuarantineItem], str | None, bool]:
        """One page, newest first; the continuation for the next page (or ``None``); whether the scan
        stopped at ``scan_limit``."""
        found: list[QuarantineItem] = []
        truncated = False
        try:
            for count, props in enumerate(self._container.list_blobs(include=["metadata"])):
                if count >= self._scan_limit:
                    truncated = True
                    break
                item = item_of(props)
                if filters.admits(item.decision):
                    found.append(item)
        except AzureError as exc:
            raise ServiceUnavailable("The quarantine cannot be read right now.", code="storage_unavailable") from exc
        found.sort(key=lambda i: (records.timestamp(i.decision.decided_at), i.name), reverse=True)
        if filters.after is not None:
            found = [i for i in found if (records.timestamp(i.decision.decided_at), i.name) < filters.after]
        page = found[: filters.limit]
        more = len(found) > filters.limit
        last = page[-1] if page else None
        token = rules.continuation(records.timestamp(last.decision.decided_at), last.name) if more and last else None
        return page, token, truncated

    def find(self, upload_id: str) -> QuarantineItem:
        """The quarantine record of ``upload_id`` (404 ``review_not_found`` when there is none)."""
        issued = parse_upload_id(upload_id)  # 400 for anything that is not one of our ids
        marker = f"/{issued:%Y/%m/%d}/{upload_id}."
        try:
            for count, blob in enumerate(self._container.list_blobs()):
                if count >= self._scan_limit:
                    break
                if marker in blob.name:
                    return item_of(self._container.get_blob_client(blob.name).get_blob_properties())
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise ServiceUnavailable("The quarantine cannot be read right now.", code="storage_unavailable") from exc
        raise NotFound("No quarantined upload with this id.", code="review_not_found")

    def read_url(self, item: QuarantineItem) -> tuple[str, datetime]:
        """A read-only SAS for the kept bytes or evidence that can only download: ``attachment`` and
        ``application/octet-stream`` are fixed by the signature, whatever the blob's properties say."""
        if item.kept == "none":
            raise Conflict("The upload was purged: nothing is kept.", code="upload_purged")
        now = self._clock().astimezone(UTC).replace(microsecond=0)
        key = self._keys.get(now + self._ttl)
        expires = min(now + self._ttl, key_expiry(key))
        suffix = "evidence.bin" if item.kept == "evidence" else "bin"
        signature = blob_sas(key, account=self._account_name, container=self.container, name=item.name,
                             permission=BlobSasPermissions(read=True), now=now, expires=expires, skew=self._skew,
                             content_disposition=f'attachment; filename="{item.decision.upload_id}.{suffix}"',
                             content_type=OCTET_STREAM)
        return f"{self._account_url}/{self.container}/{quote(item.name, safe='/')}?{signature}", expires
