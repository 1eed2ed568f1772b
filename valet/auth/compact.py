"""The one spelling of a token: compact JWS syntax, checked before pyjwt sees a bearer or grant token.

pyjwt decodes base64url leniently (``=`` padding, and the unused low bits of a segment's last character
are ignored), so one token has many spellings; caches and logs keyed by the token would see them as
different tokens. :func:`is_compact_jws` accepts exactly three base64url segments (RFC 7515 section 7.1:
``A-Z a-z 0-9 - _``, no padding, no whitespace, nothing else), each of a length base64url can have and
with its unused bits zero, so only the canonical encoding of the bytes passes.
"""

from __future__ import annotations

import re

_SEGMENT = r"[A-Za-z0-9_-]+"
_COMPACT = re.compile(rf"{_SEGMENT}\.{_SEGMENT}\.{_SEGMENT}")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _canonical(segment: str) -> bool:
    rest = len(segment) % 4
    if rest == 1:
        return False  # no byte string encodes to this length
    if rest == 0:
        return True
    unused = 0b1111 if rest == 2 else 0b11  # 2 chars carry 1 byte (4 spare bits); 3 chars carry 2 (2 spare)
    return _ALPHABET.index(segment[-1]) & unused == 0


def is_compact_jws(token: str) -> bool:
    """Three non-empty, canonical, unpadded base64url segments separated by dots, and nothing else."""
    return _COMPACT.fullmatch(token) is not None and all(_canonical(part) for part in token.split("."))
