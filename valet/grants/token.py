"""The grant token: what was granted, signed by the app, carried by the upload itself.

Azure SAS cannot limit an upload's size or type, so the grant response tells the client to send one more
header with its upload, ``x-ms-meta-valetgrant: <token>``. Storage keeps it as blob metadata; the
validator verifies it and compares the blob with what was granted. The grant path writes nothing to
storage.

The token is a compact JWS (HS256 via pyjwt) with a ``kid`` header, so keys rotate: the active key signs,
every configured key verifies. Audience and issuer are fixed strings of this app, so no other token
(an Entra ID token, say) can pass for a grant, and a grant cannot pass for anything else.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from valet.auth.compact import is_compact_jws
from valet.errors import ConfigurationError

GRANT_METADATA_KEY = "valetgrant"
GRANT_HEADER = "x-ms-meta-" + GRANT_METADATA_KEY
_ISSUER = "valet"
_AUDIENCE = "valet-upload-grant"
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MIN_KEY_BYTES = 32


class GrantTokenError(Exception):
    """The grant token is missing, malformed, forged, or signed by an unknown key. ``reason`` is stable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class GrantClaims:
    upload_id: str
    container: str
    blob: str
    size: int
    content_type: str
    sha256: str | None
    profile: str
    caller: str
    filename: str
    issued_at: datetime
    expires_at: datetime

    def to_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": _ISSUER,
            "aud": _AUDIENCE,
            "uid": self.upload_id,
            "c": self.container,
            "b": self.blob,
            "size": self.size,
            "ct": self.content_type,
            "prof": self.profile,
            "sub": self.caller,
            "fn": self.filename,
            "iat": int(self.issued_at.timestamp()),
            "exp": int(self.expires_at.timestamp()),
        }
        if self.sha256 is not None:
            claims["sha256"] = self.sha256
        return claims


class GrantKeyRing:
    """Signing keys by id. The first key signs; all keys verify (rotation with overlap)."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if active not in keys:
            raise ConfigurationError("the active grant signing key id must be one of the configured keys")
        for kid, key in keys.items():
            if not _KID.fullmatch(kid) or len(key) < MIN_KEY_BYTES:
                raise ConfigurationError("grant signing keys need ids [A-Za-z0-9_-]{1,32} and >= 32 bytes")
        self._keys = dict(keys)
        self.active = active

    def __repr__(self) -> str:  # never show key material
        return f"GrantKeyRing(active={self.active!r}, ids={sorted(self._keys)!r})"

    @classmethod
    def parse(cls, value: str, *, setting: str) -> GrantKeyRing:
        """``kid1:<base64url key>,kid2:<base64url key>`` — the first entry is the active signing key."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for part in (p.strip() for p in value.split(",")):
            kid, sep, encoded = part.partition(":")
            if not sep or not _KID.fullmatch(kid) or kid in keys:
                raise ConfigurationError(f"{setting} must be 'keyId:base64urlKey[,keyId:base64urlKey...]'")
            try:
                key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError) as exc:
                raise ConfigurationError(f"{setting}: key '{kid}' is not base64url") from exc
            if len(key) < MIN_KEY_BYTES:
                raise ConfigurationError(f"{setting}: key '{kid}' must be at least {MIN_KEY_BYTES} bytes")
            keys[kid] = key
            order.append(kid)
        if not order:
            raise ConfigurationError(f"{setting} must hold at least one key")
        return cls(keys, order[0])

    def key(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def all_keys(self) -> list[bytes]:
        """Every configured key, the active one first (verifiers try them all during a rotation)."""
        return [self._keys[self.active], *(k for kid, k in self._keys.items() if kid != self.active)]

    def sign(self, claims: GrantClaims) -> str:
        return jwt.encode(
            claims.to_claims(), self._keys[self.active], algorithm="HS256", headers={"kid": self.active}
        )

    def verify(self, token: str | None, *, now: datetime | None = None, skew: float = 0) -> GrantClaims:
        """Check signature, key id, issuer, audience and that ``iat`` is not later than now plus ``skew``
        seconds (the granting instance's clock may run ahead of ours). Expiry is *not* enforced here: the
        validator decides with the blob's creation time, which may be well after the grant expired."""
        if not token:
            raise GrantTokenError("missing_grant", "The upload carries no grant token.")
        if not is_compact_jws(token):  # one spelling per token, before pyjwt's lenient decoding
            raise GrantTokenError("bad_grant", "The grant token is malformed.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise GrantTokenError("bad_grant", "The grant token is malformed.") from exc
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or header.get("alg") != "HS256":
            raise GrantTokenError("bad_grant", "The grant token was not signed by a known key.")
        try:
            raw = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                audience=_AUDIENCE,
                issuer=_ISSUER,
                options={"verify_exp": False, "require": ["exp", "iat", "iss", "aud", "uid", "c", "b"]},
                leeway=skew,
            )
        except jwt.PyJWTError as exc:
            raise GrantTokenError("bad_grant", "The grant token signature or claims are invalid.") from exc
        try:
            return GrantClaims(
                upload_id=_str(raw["uid"]),
                container=_str(raw["c"]),
                blob=_str(raw["b"]),
                size=_int(raw["size"]),
                content_type=_str(raw["ct"]),
                sha256=_str(raw["sha256"]) if "sha256" in raw else None,
                profile=_str(raw["prof"]),
                caller=_str(raw["sub"]),
                filename=_str(raw.get("fn", "upload")),
                issued_at=datetime.fromtimestamp(_int(raw["iat"]), tz=UTC),
                expires_at=datetime.fromtimestamp(_int(raw["exp"]), tz=UTC),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GrantTokenError("bad_grant", "The grant token lacks required claims.") from exc


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string claim")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer claim")
    return value

