"""Issuing upload grants: policy, naming, SAS and the signed grant header; renewals.

No storage call happens here in steady state: the user delegation key comes from the cache, the SAS and
the grant token are local HMACs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

from azure.storage.blob import BlobSasPermissions

from valet import telemetry
from valet.caller import Caller
from valet.clock import rfc3339, utcnow
from valet.errors import Conflict, NotFound, ServiceUnavailable
from valet.grants.delegation import UserDelegationKeyCache, blob_sas, key_expiry
from valet.grants.naming import (
    MAX_FILENAME_CHARS,
    NameFacts,
    bind_upload_id,
    granted_blob_name,
    granted_type,
    new_upload_id,
    parse_granted_name,
    parse_upload_id,
    sanitize_filename,
)
from valet.grants.policy import Policy, Profile
from valet.grants.request import GrantRequest
from valet.grants.state import DECIDED, UPLOADED, UploadState
from valet.grants.token import GRANT_HEADER, GrantClaims, GrantKeyRing
from valet.quotas.service import Quotas
from valet.quotas.store import Reservation

audit = logging.getLogger("valet.audit")



class GrantedName(NamedTuple):
    name: str
    facts: NameFacts
    profile: Profile
    content_type: str


@dataclass(frozen=True)
class Grant:
    upload_id: str
    blob_uri: str
    signature: str
    headers: Mapping[str, str]
    expires_on: datetime
    max_bytes: int
    profile: str
    container: str
    blob_name: str

    def __repr__(self) -> str:  # the signature and the grant token are credentials
        return f"Grant(upload_id={self.upload_id!r}, blob={self.container}/{self.blob_name})"

    def audit_data(self) -> dict[str, str | int]:
        """What the audit trail keeps of a grant: ids, never the signature or the grant header."""
        return {"blob": f"{self.container}/{self.blob_name}", "profile": self.profile, "maxBytes": self.max_bytes,
                "expiresOn": rfc3339(self.expires_on)}

    def to_json(self, status_url: str) -> dict[str, Any]:
        return {
            "uploadId": self.upload_id,
            "blobUri": self.blob_uri,
            "signature": self.signature,
            "uploadUrl": f"{self.blob_uri}?{self.signature}",
            "method": "PUT",
            "headers": dict(self.headers),
            "expiresOn": rfc3339(self.expires_on),
            "maxBytes": self.max_bytes,
            "profile": self.profile,
            "statusUrl": status_url,
        }


@dataclass(frozen=True)
class Planned:
    """A checked grant before signing: what an idempotent retry signs again, and a batch reserves at once."""

    upload_id: str
    name: str
    deadline: datetime
    size: int
    content_type: str
    sha256: str | None
    filename: str
    profile: str

    def reservation(self) -> Reservation:
        return Reservation(self.upload_id, self.size, self.deadline, self.name)

    def to_json(self) -> dict[str, Any]:
        return {"uploadId": self.upload_id, "name": self.name, "deadline": rfc3339(self.deadline),
                "size": self.size, "contentType": self.content_type, "sha256": self.sha256,
                "filename": self.filename, "profile": self.profile}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Planned:
        deadline = datetime.strptime(str(doc["deadline"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return cls(str(doc["uploadId"]), str(doc["name"]), deadline, int(doc["size"]), str(doc["contentType"]),
                   doc.get("sha256"), str(doc["filename"]), str(doc["profile"]))


class GrantIssuer:
    """Turns an authorized caller's request into a grant."""

    def __init__(
        self,
        *,
        account_url: str,
        account_name: str,
        container: str,
        keys: UserDelegationKeyCache,
        signer: GrantKeyRing,
        policy: Policy,
        sas_ttl: timedelta,
        sas_start_skew: timedelta,
        upload_window: timedelta = timedelta(0),
        clock: Callable[[], datetime] = utcnow,
        random_bytes: Callable[[int], bytes] = os.urandom,
        quotas: Quotas | None = None,
    ) -> None:
        self._account_url = account_url.rstrip("/")
        self._account_name = account_name
        self._container = container
        self._keys = keys
        self._signer = signer
        self._policy = policy
        self._ttl = sas_ttl
        self._skew = sas_start_skew
        self._window = upload_window
        self._clock = clock
        self._random = random_bytes
        self._quotas = quotas  # None, or a profile without a quota: no storage request

    def issue(self, caller: Caller, request: GrantRequest) -> Grant:
        now = self._clock().replace(microsecond=0)  # one reading of the clock for the whole grant
        planned = self.plan(caller, request, now)
        key = self._key(now)  # before reserving: no key, no reservation
        if self._quotas is not None:  # reserves until the window closes; 429 quota_exceeded when over a limit
            self._quotas.reserve(caller, planned.profile, [planned.reservation()])
        return self.sign(caller, planned, key, now)

    def plan(self, caller: Caller, request: GrantRequest, now: datetime | None = None, *,
             record: bool = False) -> Planned:
        """The checked grant (profile, roles, type, size) with its upload id and blob name; nothing signed.
        ``record``: the grant's row is stored whatever the profile (batch members, idempotent grants); a
        profile with a quota stores one anyway. The name says which, so the decision and a cancel touch the
        quota table only for grants that have a row."""
        profile = self._policy.profile_for(request.profile, caller.roles | caller.scopes)  # 403 without its roles
        telemetry.note_grant(profile=profile.name)
        profile.check(request.content_type, request.size, request.sha256)
        now = now or self._clock().replace(microsecond=0)
        deadline = now + max(self._ttl, self._window)  # no SAS for this name, renewed or not, expires later
        signing_key = self._signer.key(self._signer.active) or b""
        upload_id = bind_upload_id(  # so the status endpoint can tell this caller's ids from others'
            new_upload_id(now, self._random), signing_key, caller.partition
        )
        name = granted_blob_name(  # the grant itself, for clients that send nothing but the URL
            partition=caller.partition,
            upload_id=upload_id,
            profile=profile.name,
            size=request.size,
            deadline=deadline,
            sha256_declared=request.sha256 is not None,
            stored_row=record or (self._quotas is not None and self._quotas.enabled(profile.name)),
            content_type=request.content_type,
            extension=profile.extension_for(request.content_type),
            container=self._container,
            kid=self._signer.active,
            key=signing_key,
        )
        filename = sanitize_filename(request.filename)[:MAX_FILENAME_CHARS]
        return Planned(upload_id, name, deadline, request.size, request.content_type, request.sha256, filename,
                       profile.name)

    def _key(self, now: datetime) -> Any:
        key = self._keys.get(now + self._ttl)
        if key_expiry(key) <= now:
            raise ServiceUnavailable("No valid signing key is available.", code="storage_unavailable")
        return key

    def sign(self, caller: Caller, planned: Planned, key: Any | None = None, now: datetime | None = None) -> Grant:
        """A create-only SAS and the grant token for a planned grant (again, for an idempotent retry),
        until the SAS TTL or the upload window, whichever ends first."""
        now = now or self._clock().replace(microsecond=0)
        if now >= planned.deadline:
            raise Conflict("The upload's window has closed; request a new grant.", code="upload_window_closed")
        key = key if key is not None else self._key(now)
        expires = min(now + self._ttl, planned.deadline, key_expiry(key))
        profile = self._policy.profiles.get(planned.profile)
        if profile is None:
            raise NotFound("No such upload.", code="upload_not_found")
        signature = self._sas(planned.name, key, now, expires)
        token = self._signer.sign(
            GrantClaims(
                upload_id=planned.upload_id,
                container=self._container,
                blob=planned.name,
                size=planned.size,
                content_type=planned.content_type,
                sha256=planned.sha256,
                profile=planned.profile,
                caller=caller.id,
                filename=planned.filename,
                issued_at=now,
                expires_at=expires,
            )
        )
        grant = self._grant(planned.upload_id, planned.name, signature,
                            {"x-ms-blob-content-type": planned.content_type, GRANT_HEADER: token}, expires, profile)
        audit.info(
            "grant issued",
            extra={
                "event": "grant",
                "upload_id": planned.upload_id,
                "caller": caller.id,
                "blob": f"{self._container}/{planned.name}",
                "profile": planned.profile,
                "declared_type": planned.content_type,
                "declared_size": planned.size,
                "expires_on": rfc3339(expires),
            },
        )
        telemetry.note_grant(upload_id=planned.upload_id)  # the grant span starts the upload's trace
        return grant

    def _sas(self, name: str, key: Any, now: datetime, expires: datetime) -> str:
        return blob_sas(key, account=self._account_name, container=self._container, name=name,
                        permission=BlobSasPermissions(create=True), now=now, expires=expires, skew=self._skew)

    def _grant(self, upload_id: str, name: str, signature: str, headers: dict[str, str], expires: datetime,
               profile: Profile) -> Grant:
        return Grant(
            upload_id=upload_id,
            blob_uri=self.blob_uri(name),
            signature=signature,
            headers={"x-ms-blob-type": "BlockBlob", **headers},
            expires_on=expires,
            max_bytes=profile.max_bytes,
            profile=profile.name,
            container=self._container,
            blob_name=name,
        )

    def blob_uri(self, name: str) -> str:
        """The blobUri of a granted name (what a grant's ``blobUri`` says)."""
        return f"{self._account_url}/{self._container}/{quote(name, safe='/')}"

    def granted_name(self, caller: Caller, upload_id: str, blob_uri: str) -> GrantedName:
        """The blob name of a grant this app made to ``caller`` for ``upload_id``, checked: its MAC, its
        profile (still configured, still allowing the granted type and size, and the caller's roles).
        ``404`` for a name that is not ours, not this id's or another caller's: all look the same."""
        parse_upload_id(upload_id)  # 400 for anything that is not one of our ids, as the status route
        prefix = f"{self._account_url}/{self._container}/"
        name = unquote(blob_uri[len(prefix):]) if blob_uri.startswith(prefix) else ""
        facts = parse_granted_name(name)
        if facts is None or facts.upload_id != upload_id or facts.partition != caller.partition:
            raise NotFound("No such upload.", code="upload_not_found")
        signing_key = self._signer.key(facts.kid)
        profile = self._policy.profiles.get(facts.profile)
        content_type = (granted_type(facts, signing_key, self._container, profile.types)
                        if signing_key is not None and profile is not None else None)
        if profile is None or content_type is None:
            raise NotFound("No such upload.", code="upload_not_found")
        profile = self._policy.profile_for(profile.name, caller.roles | caller.scopes)  # 403 without its roles
        profile.check(content_type, facts.size, "declared" if facts.sha256_declared else None)
        return GrantedName(name, facts, profile, content_type)

    def renew(self, caller: Caller, upload_id: str, blob_uri: str, state: UploadState) -> Grant:
        """A fresh create-only SAS for the same blob of a grant made to ``caller``, while the upload is not
        complete and its window (the deadline bound into the name) is open. Same checks as a grant (the
        caller was admitted; the profile must still allow the granted type and size). ``state`` tells
        what storage holds at the name: the one storage request a renewal makes."""
        name, facts, profile, content_type = self.granted_name(caller, upload_id, blob_uri)
        now = self._clock().replace(microsecond=0)
        if now >= facts.deadline:
            raise Conflict("The upload's window has closed; request a new grant.", code="upload_window_closed")
        found = state(name)
        if found == DECIDED:
            raise Conflict("The upload has been decided; see its status.", code="upload_decided")
        if found == UPLOADED:
            raise Conflict("The upload is complete and awaits its decision.", code="upload_complete")
        key = self._keys.get(min(now + self._ttl, facts.deadline))
        expires = min(now + self._ttl, facts.deadline, key_expiry(key))
        if expires <= now:
            raise ServiceUnavailable("No valid signing key is available.", code="storage_unavailable")
        grant = self._grant(upload_id, name, self._sas(name, key, now, expires),
                            {"x-ms-blob-content-type": content_type}, expires, profile)
        audit.info(
            "grant renewed",
            extra={"event": "renew", "upload_id": upload_id, "caller": caller.id,
                   "blob": f"{self._container}/{name}", "expires_on": rfc3339(expires)},
        )
        return grant
