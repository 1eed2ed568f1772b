"""Who is asking: the caller identity the grant path receives.

Authentication (:mod:`valet.auth`) turns a request into a :class:`Caller`; everything downstream (the
blob partition, the per-caller rate limit, the status endpoint's "same caller only" rule, audit records)
works from this object and never from raw headers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from azure.functions import HttpRequest

CallerKind = Literal["bearer", "apikey"]

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HASHED = "h-"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Microsoft Entra ID token issuers: ``https://<host>/<tenant GUID>/`` (v1) or ``.../<tenant GUID>/v2.0``
# (v2), for the public and the national clouds. Only Microsoft issues tokens for these tenants.
ENTRA_HOSTS = frozenset({"login.microsoftonline.com", "sts.windows.net", "login.microsoftonline.us",
                         "login.chinacloudapi.cn", "sts.chinacloudapi.cn", "login.partner.microsoftonline.cn"})
_ENTRA_ISSUER = re.compile(r"^https://(?P<host>[a-z0-9.-]+)/(?P<tid>[0-9a-f-]{36})/(?:v2\.0)?$")


def safe_segment(value: str) -> str:
    """A blob-path segment for an identifier: the value itself when it is short and plain, else a hash.

    Identifiers come from token claims or key records; a hash keeps odd characters, path separators and
    overlong values out of blob names while staying stable for the same identifier. Injective: a plain
    value never starts with ``h-`` (such a value is hashed too), so no identifier can spell the segment
    of another's hash.
    """
    if _SAFE_SEGMENT.fullmatch(value) and value not in {".", ".."} and not value.startswith(_HASHED):
        return value
    return _HASHED + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def entra_tenant(issuer: str) -> str | None:
    """The tenant GUID an Entra ID issuer names (its path), or ``None`` for any other issuer."""
    match = _ENTRA_ISSUER.fullmatch(issuer)
    if match is None or match.group("host") not in ENTRA_HOSTS or not _GUID.fullmatch(match.group("tid")):
        return None
    return match.group("tid")


def issuer_segment(issuer: str, tenant: str | None) -> str:
    """The first partition segment of a bearer caller: the tenant GUID when the issuer is that tenant's
    Entra ID issuer (so v1 and v2 tokens of one directory share it, as they always did), otherwise the
    issuer itself (hashed: issuers are URLs). A function of the issuer alone, never of a claim."""
    if tenant is not None and entra_tenant(issuer) == tenant:
        return tenant
    segment = safe_segment(issuer)
    return segment if not _GUID.fullmatch(segment) else _HASHED + hashlib.sha256(issuer.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    ``subject`` is the stable id of the principal (``oid`` for Entra ID users and apps, else ``sub``; the
    owner of an API key). ``tenant`` is the directory (Entra ``tid``) or the API key's owner tenant, when
    there is one. ``issuer`` is the token issuer, or ``"apikey"`` for API keys.
    """

    kind: CallerKind
    issuer: str
    subject: str
    tenant: str | None = None
    client_id: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    key_id: str | None = None

    @property
    def id(self) -> str:
        """A stable, log-safe identifier of this caller (no credential material)."""
        if self.kind == "apikey":
            return f"apikey:{self.tenant or '-'}:{self.subject}"
        return f"{self.issuer}#{self.subject}"

    @property
    def partition(self) -> str:
        """The blob-path prefix that holds this caller's uploads: ``<tenant>/<caller>``, injective over
        (kind, issuer, tenant, subject): a bearer caller's first segment comes from its issuer (see
        :func:`issuer_segment`), an API key's from its owner tenant; ``u-``/``k-`` keep the two kinds apart,
        and :func:`safe_segment` never maps two values to one segment."""
        if self.kind == "bearer":
            return f"{issuer_segment(self.issuer, self.tenant)}/u-{safe_segment(self.subject)}"
        tenant = safe_segment(self.tenant) if self.tenant else safe_segment(self.issuer)
        return f"{tenant}/k-{safe_segment(self.subject)}"


class Admission(Protocol):
    """What the route table admits a request with: turns it into a :class:`Caller` or raises a
    401/403/429/503 :class:`~valet.errors.ValetError`.

    ``authenticate`` checks credentials and required roles; ``admit`` also applies the per-caller rate
    limit (the grant path uses it); ``admit_read`` applies the read budget instead (status and profiles);
    ``identify`` checks credentials only (routes with a role of their own: review); ``client_address`` is
    the address audit records name.
    :class:`valet.auth.Authenticator` is the implementation; tests pass a fixed caller.
    """

    def authenticate(self, request: HttpRequest) -> Caller: ...

    def admit(self, request: HttpRequest) -> Caller: ...

    def admit_read(self, request: HttpRequest) -> Caller: ...

    def identify(self, request: HttpRequest) -> Caller: ...

    def client_address(self, request: HttpRequest) -> str: ...
