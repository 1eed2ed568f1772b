"""Upload ids, blob names and the sanitized display filename. Pure functions; clock and randomness are
passed in so tests can pin them.

The server picks every part of the blob name::

    <tenant>/<caller>/<yyyy>/<mm>/<dd>/<uploadId>.<ext>

The client's ``filename`` never reaches the path: the extension is the profile's canonical one for the
declared content type, and the filename only travels, sanitized, as signed metadata.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from valet.errors import BadRequest

MAX_FILENAME_CHARS = 255
_UPLOAD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\..*)?$", re.I)


def new_upload_id(now: datetime, random_bytes: Callable[[int], bytes]) -> str:
    """A UUIDv7 (RFC 9562): 48-bit millisecond timestamp and 74 random bits from ``random_bytes``.

    The timestamp lets the status endpoint find the upload's dated blob path from the id alone, with no
    lookup table; the random part keeps ids unguessable (and the status endpoint answers only the caller
    the upload was granted to).
    """
    ms = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(random_bytes(10), "big")
    rand_a = (rand >> 68) & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def parse_upload_id(value: str) -> datetime:
    """The issue time embedded in an upload id; :class:`BadRequest` if ``value`` is not one of ours."""
    if not isinstance(value, str) or not _UPLOAD_ID.fullmatch(value):
        raise BadRequest("'uploadId' is not a valid upload id.", code="invalid_upload_id")
    ms = uuid.UUID(value).int >> 80
    try:  # 48 bits of milliseconds reach the year 10889; datetime (and valet) stop at 9999
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise BadRequest("'uploadId' is not a valid upload id.", code="invalid_upload_id") from None


def blob_name(partition: str, upload_id: str, extension: str) -> str:
    issued = parse_upload_id(upload_id)
    return f"{partition}/{issued:%Y/%m/%d}/{upload_id}.{extension}"


def sanitize_filename(raw: str) -> str:
    """A display-safe version of the client's filename, for metadata only.

    Drops any directory part (``/`` and ``\\``), control and format characters (including bidi overrides
    such as U+202E), normalizes to NFC, collapses whitespace, trims leading/trailing dots and spaces,
    defuses Windows reserved device names and caps the length. Never empty.
    """
    text = unicodedata.normalize("NFC", raw)
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} or ch.isspace()
    )
    text = re.sub(r"\s+", " ", text).strip(" .")
    if _WINDOWS_RESERVED.fullmatch(text):
        text = "_" + text
    if len(text) > MAX_FILENAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            text = stem[: MAX_FILENAME_CHARS - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            text = text[:MAX_FILENAME_CHARS].rstrip(" .")
    return text or "upload"


_OWNER_BITS = 40


def _owner_mac(key: bytes, partition: str, upload_id: str) -> int:
    body = uuid.UUID(upload_id).int >> _OWNER_BITS
    digest = hmac.new(key, f"valet-upload-id|{partition}|{body:x}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:5], "big")


def bind_upload_id(upload_id: str, key: bytes, partition: str) -> str:
    """The same UUIDv7 with its last 40 random bits replaced by a MAC of the caller's partition.

    The status endpoint answers "pending" or "expired" for uploads that left nothing in storage; the MAC
    lets it tell an id granted to *this* caller from one granted to someone else (or made up), which
    then gets 404 like any unknown id. 34 random bits per millisecond remain.
    """
    value = (uuid.UUID(upload_id).int >> _OWNER_BITS << _OWNER_BITS) | _owner_mac(key, partition, upload_id)
    return str(uuid.UUID(int=value))


def upload_id_belongs_to(upload_id: str, key: bytes, partition: str) -> bool:
    expected = _owner_mac(key, partition, upload_id).to_bytes(5, "big")
    actual = (uuid.UUID(upload_id).int & ((1 << _OWNER_BITS) - 1)).to_bytes(5, "big")
    return hmac.compare_digest(expected, actual)
