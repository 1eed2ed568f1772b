"""Issuing upload grants: request parsing, policy, naming, SAS and the signed grant header.

No storage call happens here in steady state: the user delegation key comes from the cache, the SAS and
the grant token are local HMACs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient

from valet.caller import Caller
from valet.clock import utcnow
from valet.delegation import UserDelegationKeyCache, blob_sas, key_expiry
from valet.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from valet.grant_token import GRANT_HEADER, GrantClaims, GrantKeyRing
from valet.naming import (
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
from valet.policy import Policy, Profile, normalize_content_type

audit = logging.getLogger("valet.audit")

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_FIELDS = {"filename", "contentType", "size", "sha256", "profile"}
_REQUIRED = {"filename": "invalid_filename", "contentType": "invalid_content_type", "size": "invalid_size"}
MAX_RAW_FILENAME_CHARS = 1024


@dataclass(frozen=True)
class GrantRequest:
    filename: str
    content_type: str
    size: int
    sha256: str | None = None
    profile: str | None = None


def parse_grant_request(body: bytes) -> GrantRequest:
    """The JSON body of ``POST /api/uploads``, or :class:`BadRequest` naming what is wrong."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deeply nested arrays/objects
        raise BadRequest("The request body must be a JSON object.", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise BadRequest(
            f"Unknown field(s): {', '.join(repr(u[:40]) for u in unknown[:5])}. "
            f"Known fields: {', '.join(sorted(_FIELDS))}.",
            code="unknown_field",
        )

    missing = [name for name in _REQUIRED if doc.get(name) is None]
    if missing:  # every one named, in the detail and in "missing"; the code is the first one's
        names = [f"'{name}'" for name in missing]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        raise BadRequest(f"{listed} {'is' if len(names) == 1 else 'are'} required. Required fields: "
                         f"{', '.join(_REQUIRED)}.", code=_REQUIRED[missing[0]], extra={"missing": missing})

    filename = doc.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        raise BadRequest("'filename' is required and must be a non-empty string.", code="invalid_filename")
    if len(filename) > MAX_RAW_FILENAME_CHARS:
        raise BadRequest(
            f"'filename' must be at most {MAX_RAW_FILENAME_CHARS} characters.", code="invalid_filename"
        )

    content_type = doc.get("contentType")
    if not isinstance(content_type, str) or not content_type.strip():
        raise BadRequest("'contentType' is required and must be a string.", code="invalid_content_type")
    if len(content_type) > 255:
        raise BadRequest("'contentType' is too long.", code="invalid_content_type")

    size = doc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest("'size' is required and must be a whole number of bytes >= 0.", code="invalid_size")

    sha256 = doc.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256)):
        raise BadRequest("'sha256' must be 64 hexadecimal characters.", code="invalid_sha256")

    profile = doc.get("profile")
    if profile is not None and (not isinstance(profile, str) or not profile or len(profile) > 64):
        raise BadRequest("'profile' must be a profile name.", code="unknown_profile")

    return GrantRequest(
        filename=filename,
        content_type=normalize_content_type(content_type),
        size=size,
        sha256=sha256.lower() if sha256 else None,
        profile=profile,
    )


def parse_renew_request(body: bytes) -> str:
    """The JSON body of ``POST /api/uploads/{uploadId}/renew``: ``{"blobUri": <the grant's blobUri>}``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    unknown = sorted(set(doc) - {"blobUri"})
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(repr(u[:40]) for u in unknown[:5])}. Known fields: blobUri.",
                         code="unknown_field")
    uri = doc.get("blobUri")
    if not isinstance(uri, str) or not uri or len(uri) > 4096:
        raise BadRequest("'blobUri' is required: the blobUri of the grant to renew.", code="invalid_blob_uri")
    return uri


# What storage holds at an upload's name, as far as renewing its SAS goes (see GrantIssuer.renew).
ABSENT, UPLOADED, DECIDED = "absent", "uploaded", "decided"
UploadState = Callable[[str], str]


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

    def to_json(self, status_url: str) -> dict[str, Any]:
        return {
            "uploadId": self.upload_id,
            "blobUri": self.blob_uri,
            "signature": self.signature,
            "uploadUrl": f"{self.blob_uri}?{self.signature}",
            "method": "PUT",
            "headers": dict(self.headers),
            "expiresOn": _rfc3339(self.expires_on),
            "maxBytes": self.max_bytes,
            "profile": self.profile,
            "statusUrl": status_url,
        }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



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

    def issue(self, caller: Caller, request: GrantRequest) -> Grant:
        profile = self._policy.profile_for(request.profile, caller.roles | caller.scopes)  # 403 without its roles
        profile.check(request.content_type, request.size, request.sha256)

        now = self._clock().replace(microsecond=0)
        expires = now + self._ttl
        key = self._keys.get(expires)
        expires = min(expires, key_expiry(key))  # the cache guarantees >=; this keeps the rule local
        if expires <= now:
            raise ServiceUnavailable("No valid signing key is available.", code="storage_unavailable")
        deadline = max(expires, now + self._window)  # no SAS for this name, renewed or not, expires later

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
            content_type=request.content_type,
            extension=profile.extension_for(request.content_type),
            container=self._container,
            kid=self._signer.active,
            key=signing_key,
        )
        signature = self._sas(name, key, now, expires)
        filename = sanitize_filename(request.filename)[:MAX_FILENAME_CHARS]
        token = self._signer.sign(
            GrantClaims(
                upload_id=upload_id,
                container=self._container,
                blob=name,
                size=request.size,
                content_type=request.content_type,
                sha256=request.sha256,
                profile=profile.name,
                caller=caller.id,
                filename=filename,
                issued_at=now,
                expires_at=expires,
            )
        )
        grant = self._grant(upload_id, name, signature,
                            {"x-ms-blob-content-type": request.content_type, GRANT_HEADER: token}, expires, profile)
        audit.info(
            "grant issued",
            extra={
                "event": "grant",
                "upload_id": upload_id,
                "caller": caller.id,
                "blob": f"{self._container}/{name}",
                "profile": profile.name,
                "declared_type": request.content_type,
                "declared_size": request.size,
                "expires_on": _rfc3339(expires),
            },
        )
        return grant

    def _sas(self, name: str, key: Any, now: datetime, expires: datetime) -> str:
        return blob_sas(key, account=self._account_name, container=self._container, name=name,
                        permission=BlobSasPermissions(create=True), now=now, expires=expires, skew=self._skew)

    def _grant(self, upload_id: str, name: str, signature: str, headers: dict[str, str], expires: datetime,
               profile: Profile) -> Grant:
        return Grant(
            upload_id=upload_id,
            blob_uri=f"{self._account_url}/{self._container}/{quote(name, safe='/')}",
            signature=signature,
            headers={"x-ms-blob-type": "BlockBlob", **headers},
            expires_on=expires,
            max_bytes=profile.max_bytes,
            profile=profile.name,
            container=self._container,
            blob_name=name,
        )

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
                   "blob": f"{self._container}/{name}", "expires_on": _rfc3339(expires)},
        )
        return grant


class BlobUploadState:
    """:data:`UploadState` from storage: one Get Blob Properties on the uploads container (404: nothing
    committed yet, blocks may be staged; a tombstone: decided; anything else: uploaded, not yet decided)."""

    def __init__(self, blob_service: BlobServiceClient, container: str,
                 is_decided: Callable[[str, dict[str, str] | None], bool]) -> None:
        self._container = blob_service.get_container_client(container)
        self._is_decided = is_decided  # the validator's sealed-tombstone check: client metadata proves nothing

    def __call__(self, name: str) -> str:
        try:
            props = self._container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return ABSENT
        except AzureError as exc:
            raise ServiceUnavailable("Storage is unavailable right now.", code="storage_unavailable") from exc
        return DECIDED if self._is_decided(name, props.metadata) else UPLOADED
