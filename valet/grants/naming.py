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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


# -- the granted blob name: what was granted, bound into the name with an HMAC ----------------------------
#
#     <partition>/<yyyy>/<mm>/<dd>/<uploadId>.<profile>.<size>.<deadline>.<h|n>.<kid>.<mac>.<ext>
#
# The SAS is scoped to exactly this name, so an upload made with nothing but the grant URL still tells the
# validator what was granted: the caller's partition, the profile, the declared size, the last moment any
# SAS for the name may expire (the deadline, unix seconds), whether a sha256 was declared (``h``: then the
# grant header, which carries it, is required) and, through the MAC only, the declared content type (the
# extension is the profile's canonical one for it; the validator tries the profile's types with that
# extension). The MAC is HMAC-SHA-256 with the grant signing key ``kid`` (so it rotates with the grant
# token), truncated to 128 bits, over the container, the name without the MAC and the content type.

NAME_MAC_HEX = 32
_NAME_FIELD = {
    "profile": re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$"),
    "size": re.compile(r"^(?:0|[1-9][0-9]{0,17})$"),
    "deadline": re.compile(r"^[1-9][0-9]{0,11}$"),
    "flag": re.compile(r"^[hn]$"),
    "kid": re.compile(r"^[A-Za-z0-9_-]{1,32}$"),
    "mac": re.compile(rf"^[0-9a-f]{{{NAME_MAC_HEX}}}$"),
    "ext": re.compile(r"^[a-z0-9]{1,10}$"),
}
_PARTITION = re.compile(r"^[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_-]{1,67}$")


@dataclass(frozen=True)
class NameFacts:
    """What a granted blob name says (before its MAC is checked, nothing here is trusted)."""

    partition: str
    upload_id: str
    profile: str
    size: int
    deadline: datetime
    sha256_declared: bool
    kid: str
    mac: str
    extension: str
    unsigned: str  # the name without its MAC segment: what the MAC covers


def _name_mac(key: bytes, container: str, unsigned: str, content_type: str) -> str:
    message = f"valet-blob-name|v1|{container}|{unsigned}|{content_type}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:NAME_MAC_HEX]


def granted_blob_name(
    *,
    partition: str,
    upload_id: str,
    profile: str,
    size: int,
    deadline: datetime,
    sha256_declared: bool,
    content_type: str,
    extension: str,
    container: str,
    kid: str,
    key: bytes,
) -> str:
    issued = parse_upload_id(upload_id)
    flag = "h" if sha256_declared else "n"
    unsigned = (
        f"{partition}/{issued:%Y/%m/%d}/{upload_id}.{profile}.{size}.{int(deadline.timestamp())}.{flag}.{kid}"
    )
    return f"{unsigned}.{_name_mac(key, container, unsigned, content_type)}.{extension}"


def parse_granted_name(name: str) -> NameFacts | None:
    """The fields of a granted blob name, or ``None`` if ``name`` does not have that shape (a name from an
    older release, or one this app never chose)."""
    directory, slash, leaf = name.rpartition("/")
    parts = leaf.split(".")
    if not slash or len(parts) != 8 or len(name) > 1024:
        return None
    upload_id, profile, size, deadline, flag, kid, mac, ext = parts
    fields = {"profile": profile, "size": size, "deadline": deadline, "flag": flag, "kid": kid, "mac": mac,
              "ext": ext}
    if not all(_NAME_FIELD[k].fullmatch(v) for k, v in fields.items()):
        return None
    try:
        issued = parse_upload_id(upload_id)
    except BadRequest:
        return None
    segments = directory.split("/")
    partition, date = "/".join(segments[:2]), "/".join(segments[2:])
    if len(segments) != 5 or not _PARTITION.fullmatch(partition) or date != f"{issued:%Y/%m/%d}":
        return None
    try:
        deadline_at = datetime.fromtimestamp(int(deadline), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return NameFacts(
        partition=partition, upload_id=upload_id, profile=profile, size=int(size), deadline=deadline_at,
        sha256_declared=flag == "h", kid=kid, mac=mac, extension=ext, unsigned=name[: -len(mac) - len(ext) - 2],
    )


def name_mac_matches(facts: NameFacts, key: bytes, container: str, content_type: str) -> bool:
    return hmac.compare_digest(_name_mac(key, container, facts.unsigned, content_type), facts.mac)


def granted_type(facts: NameFacts, key: bytes, container: str, types: Mapping[str, Sequence[str]]) -> str | None:
    """The declared content type a granted name was made for: the one among ``types`` (a profile's types
    and their extensions) whose canonical extension is the name's and whose MAC matches; else ``None``."""
    candidates = [t for t, extensions in types.items() if extensions and extensions[0] == facts.extension]
    return next((t for t in candidates if name_mac_matches(facts, key, container, t)), None)
