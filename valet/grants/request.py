"""The HTTP request bodies of the grant routes, parsed and checked: a clear ``400`` naming the field,
never a 500, whatever the body holds."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from valet.errors import BadRequest
from valet.grants.policy import normalize_content_type

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
