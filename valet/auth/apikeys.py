"""API key format, hashing and verification.

Format (69 characters)::

    valet_<kid:12 base62>_<secret:43 base64url = 32 random bytes>_<crc:6 base62>

``crc`` is CRC32 (zlib) of ``valet_<kid>_<secret>`` in base62. Secret scanners can match
``\\bvalet_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}_[A-Za-z0-9]{6}\\b`` (:data:`SCANNER_REGEX`) and check the
CRC offline. Keys with a bad shape or checksum are refused before any store lookup.

Only ``HMAC-SHA-256(pepper, "<kid>.<secret>")`` (hex) is stored; binding the kid keeps a hash from being
valid under another record. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass

PREFIX = "valet_"
KID_LENGTH = 12
SECRET_LENGTH = 43
CRC_LENGTH = 6
KEY_LENGTH = len(PREFIX) + KID_LENGTH + 1 + SECRET_LENGTH + 1 + CRC_LENGTH
SCANNER_REGEX = r"\bvalet_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}_[A-Za-z0-9]{6}\b"
_KEY = re.compile(r"^valet_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})_([A-Za-z0-9]{6})$")
_KID = re.compile(r"^[A-Za-z0-9]{12}$")
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


class MalformedKey(ValueError):
    """The presented value is not a valet API key (shape or checksum)."""


@dataclass(frozen=True)
class ParsedKey:
    kid: str
    secret: str

    def __repr__(self) -> str:
        return f"ParsedKey(kid={self.kid!r}, secret=***)"


def _base62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        out.append(_BASE62[digit])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CRC_LENGTH)


def is_key_id(value: str) -> bool:
    return bool(_KID.fullmatch(value))


def new_key_id() -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(KID_LENGTH))


def generate(kid: str | None = None) -> tuple[str, ParsedKey]:
    """A new key: ``(full key string, parsed parts)``. The string is shown once and never stored."""
    kid = kid or new_key_id()
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    body = f"{PREFIX}{kid}_{secret}"
    return f"{body}_{_checksum(body)}", ParsedKey(kid, secret)


def parse(presented: str) -> ParsedKey:
    """Check shape, base64url canonical form and checksum; no I/O."""
    if len(presented) != KEY_LENGTH:
        raise MalformedKey("length")
    match = _KEY.fullmatch(presented)
    if not match:
        raise MalformedKey("charset")
    kid, secret, crc = match.groups()
    if not hmac.compare_digest(_checksum(presented[: -CRC_LENGTH - 1]), crc):
        raise MalformedKey("checksum")
    try:
        raw = base64.urlsafe_b64decode(secret + "=")
    except (binascii.Error, ValueError):
        raise MalformedKey("secret") from None
    if len(raw) != 32 or base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != secret:
        raise MalformedKey("secret")
    return ParsedKey(kid, secret)


def hash_secret(pepper: bytes, key: ParsedKey) -> str:
    return hmac.new(pepper, f"{key.kid}.{key.secret}".encode("ascii"), hashlib.sha256).hexdigest()


def matches(pepper: bytes, key: ParsedKey, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(pepper, key), stored_hash)
