"""CORS for browser uploads: the rules the storage account needs so a page on an allowed origin can PUT
with a valet key (seed 002: browsers need CORS to use a valet key against another origin).

Origins come from ``VALET_CORS_ORIGINS`` (comma separated, exact ``scheme://host[:port]``); ``*`` is
refused: an upload URL is a credential, and only the app's own pages should drive it from a browser.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from azure.storage.blob import BlobServiceClient, CorsRule

from valet.errors import ConfigurationError

ALLOWED_METHODS = ["PUT", "OPTIONS"]
# What an upload sends: the grant's headers (x-ms-blob-type, x-ms-blob-content-type, x-ms-meta-valetgrant),
# x-ms-version for block uploads, and the body's content headers.
ALLOWED_HEADERS = ["x-ms-blob-type", "x-ms-blob-content-type", "x-ms-meta-*", "x-ms-version", "content-type",
                   "content-length"]
EXPOSED_HEADERS = ["x-ms-request-id", "x-ms-error-code", "etag", "last-modified"]
MAX_AGE_SECONDS = 3600


def parse_origins(value: str | None, *, setting: str) -> tuple[str, ...]:
    origins: list[str] = []
    for raw in (value or "").split(","):
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        parts = urlsplit(origin)
        if origin == "*" or "*" in origin:
            raise ConfigurationError(f"{setting} must list exact origins; '*' is not allowed")
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query:
            raise ConfigurationError(f"{setting} must hold origins like https://app.example.com")
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(dict.fromkeys(origins))


def storage_cors_rules(origins: tuple[str, ...]) -> list[CorsRule]:
    if not origins:
        return []
    return [CorsRule(list(origins), ALLOWED_METHODS, allowed_headers=ALLOWED_HEADERS,
                     exposed_headers=EXPOSED_HEADERS, max_age_in_seconds=MAX_AGE_SECONDS)]


def apply_storage_cors(service: BlobServiceClient, origins: tuple[str, ...]) -> None:
    """Replace the account's blob CORS rules with valet's (an empty list removes them)."""
    service.set_service_properties(cors=storage_cors_rules(origins))
