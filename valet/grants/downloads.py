"""Read URLs for accepted uploads: ``GET /api/uploads/{uploadId}/download``.

Only the caller the upload was granted to gets one, and only once the upload is ``accepted``: a
user-delegation SAS with read permission (``sp=r``) on the one accepted blob (``sr=b``), HTTPS only, for
``ttl`` (a few minutes), with the response headers fixed by the signature: ``Content-Disposition:
attachment`` with the sanitized original filename (``rscd``) and the type the validator verified
(``rsct``), so a browser saves the file instead of rendering it, whatever the blob's own properties say.

The SAS is signed with the same cached user delegation key as the upload grants (no key request in steady
state). Finding the accepted blob is one prefix listing of the accepted container, scoped to the caller's
partition and the id's date, as the status route does; only when that finds nothing does the status
route's lookup run, to tell ``409 upload_not_accepted`` from ``404``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient

from valet.caller import Caller
from valet.clock import rfc3339, utcnow
from valet.errors import Conflict, ServiceUnavailable
from valet.grants.delegation import UserDelegationKeyCache, blob_sas, key_expiry
from valet.grants.naming import parse_upload_id, sanitize_filename
from valet.validation.reasons import Outcome
from valet.validation.records import Decision
from valet.validation.status import StatusReader

audit = logging.getLogger("valet.audit")


@dataclass(frozen=True)
class Download:
    upload_id: str
    url: str
    expires_on: datetime

    def __repr__(self) -> str:  # the URL carries a signature
        return f"Download(upload_id={self.upload_id!r})"

    def to_json(self) -> dict[str, Any]:
        return {"uploadId": self.upload_id, "downloadUrl": self.url,
                "expiresOn": rfc3339(self.expires_on)}


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the RFC 6266 / 5987 UTF-8 name."""
    name = sanitize_filename(filename)
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%;' else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class DownloadIssuer:
    def __init__(
        self,
        *,
        blob_service: BlobServiceClient,
        account_url: str,
        account_name: str,
        accepted: str,
        keys: UserDelegationKeyCache,
        status: StatusReader,
        ttl: timedelta,
        start_skew: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._accepted = blob_service.get_container_client(accepted)
        self._account_url = account_url.rstrip("/")
        self._account_name = account_name
        self._container = accepted
        self._keys = keys
        self._status = status
        self._ttl = ttl
        self._skew = start_skew
        self._clock = clock

    def issue(self, caller: Caller, upload_id: str) -> Download:
        issued = parse_upload_id(upload_id)  # 400 for anything that is not one of our ids
        prefix = f"{caller.partition}/{issued:%Y/%m/%d}/{upload_id}."
        try:
            found = next(iter(self._accepted.list_blobs(name_starts_with=prefix, include=["metadata"],
                                                        results_per_page=2)), None)
        except AzureError as exc:
            raise ServiceUnavailable("Downloads are unavailable right now.", code="storage_unavailable") from exc
        if found is None:
            state = self._status.status(caller.partition, upload_id)  # 404 when not this caller's
            if state["status"] == "accepted":  # a later verdict is moving it right now
                raise ServiceUnavailable("The upload is being moved; ask again shortly.", code="storage_unavailable")
            raise Conflict(f"The upload is {state['status']}; only accepted uploads can be downloaded.",
                           code="upload_not_accepted", extra={"uploadStatus": state["status"]})
        record = Decision.from_metadata(found.metadata, fallback=Outcome.ACCEPTED)
        now = self._clock().replace(microsecond=0)
        key = self._keys.get(now + self._ttl)
        expires = min(now + self._ttl, key_expiry(key))
        name = found.name
        signature = blob_sas(
            key, account=self._account_name, container=self._container, name=name,
            permission=BlobSasPermissions(read=True), now=now, expires=expires, skew=self._skew,
            content_disposition=content_disposition(record.filename or f"{upload_id}.{name.rsplit('.', 1)[-1]}"),
            content_type=record.detected_type or "application/octet-stream",
        )
        audit.info("download issued", extra={
            "event": "download", "upload_id": upload_id, "caller": caller.id, "blob": f"{self._container}/{name}",
            "expires_on": rfc3339(expires),
        })
        return Download(upload_id, f"{self._account_url}/{self._container}/{quote(name, safe='/')}?{signature}",
                        expires)
