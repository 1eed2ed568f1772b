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


def safe_segment(value: str) -> str:
    """A blob-path segment for an identifier: the value itself when it is short and plain, else a hash.

    Identifiers come from token claims or key records; a hash keeps odd characters, path separators and
    overlong values out of blob names while staying stable for the same identifier.
    """
    if _SAFE_SEGMENT.fullmatch(value) and value not in {".", ".."}:
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


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
        """The blob-path prefix that holds this caller's uploads: ``<tenant>/<caller>``."""
        tenant = safe_segment(self.tenant) if self.tenant else safe_segment(self.issuer)
        prefix = "u-" if self.kind == "bearer" else "k-"
        return f"{tenant}/{prefix}{safe_segment(self.subject)}"


class Authenticator(Protocol):
    """Turns a request into a :class:`Caller` or raises a 401/403/429/503 :class:`~valet.errors.ValetError`.

    ``authenticate`` checks credentials and required roles; ``admit`` also applies the per-caller rate
    limit (the grant path uses it); ``admit_read`` applies the read budget instead (status and profiles);
    ``identify`` checks credentials only (routes with a role of their own: review); ``client_address`` is
    the address audit records name.
    :class:`valet.auth.Authenticator` is the implementation.
    """

    def authenticate(self, request: HttpRequest) -> Caller: ...

    def admit(self, request: HttpRequest) -> Caller: ...

    def admit_read(self, request: HttpRequest) -> Caller: ...

    def identify(self, request: HttpRequest) -> Caller: ...

    def client_address(self, request: HttpRequest) -> str: ...
