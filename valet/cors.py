"""CORS for browser uploads, on both sides of the valet key (the valet key pattern: a page can use a valet
key against storage on another origin only if storage allows that origin).

* **Storage**: the rules the account needs so a page on an allowed origin can ``PUT`` with a grant
  (:func:`storage_cors_rules`, applied to Azurite by ``valet dev`` and to Azure by the templates).
* **The app**: the grant and status endpoints answer preflights and add ``Access-Control-Allow-Origin``
  for allowed origins only (:func:`preflight`, :func:`add_cors_headers`). Callers authenticate with a
  header, never a cookie, so credentials mode is not allowed and a foreign page cannot ride on a session.

Origins come from ``VALET_CORS_ORIGINS`` (comma separated, exact ``scheme://host[:port]``); ``*`` is
refused: an upload URL is a credential, and only the app's own pages should drive it from a browser.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from urllib.parse import urlsplit

from azure.storage.blob import BlobServiceClient, CorsRule

from valet.errors import ConfigurationError, Forbidden

ALLOWED_METHODS = ["PUT", "OPTIONS"]
# What an upload sends: the grant's headers (x-ms-blob-type, x-ms-blob-content-type, x-ms-meta-valetgrant),
# x-ms-version for block uploads, and the body's content headers.
ALLOWED_HEADERS = ["x-ms-blob-type", "x-ms-blob-content-type", "x-ms-meta-*", "x-ms-version", "content-type",
                   "content-length"]
EXPOSED_HEADERS = ["x-ms-request-id", "x-ms-error-code", "etag", "last-modified"]
MAX_AGE_SECONDS = 3600

# The app's own endpoints: what a page sends to ask for a grant or a status, and what it may read back.
APP_ALLOWED_HEADERS = ("authorization", "content-type", "x-api-key")
APP_EXPOSED_HEADERS = ("location", "retry-after", "www-authenticate")
APP_MAX_AGE_SECONDS = 600


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


def arm_cors_rules(origins: tuple[str, ...]) -> dict[str, list[dict[str, object]]]:
    """The same rules in the management-plane shape (``blobServices/default`` ``properties.cors``), as
    Bicep/ARM and ``az rest`` take them: the form to use when shared key access is disabled."""
    if not origins:
        return {"corsRules": []}
    return {"corsRules": [{"allowedOrigins": list(origins), "allowedMethods": ALLOWED_METHODS,
                           "allowedHeaders": ALLOWED_HEADERS, "exposedHeaders": EXPOSED_HEADERS,
                           "maxAgeInSeconds": MAX_AGE_SECONDS}]}


def apply_storage_cors(service: BlobServiceClient, origins: tuple[str, ...]) -> None:
    """Replace the account's blob CORS rules with valet's (an empty list removes them)."""
    service.set_service_properties(cors=storage_cors_rules(origins))


def _origin_allowed(origins: tuple[str, ...], origin: str | None) -> bool:
    return origin is not None and origin in origins


def add_cors_headers(headers: MutableMapping[str, str], origins: tuple[str, ...], origin: str | None) -> None:
    """Mark an actual (non-preflight) response readable by ``origin`` if it is allowed; other origins get
    nothing, so the browser keeps the response from the page. ``Vary: Origin`` keeps caches honest."""
    if not origins:
        return
    headers["Vary"] = "Origin"
    if _origin_allowed(origins, origin):
        assert origin is not None
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = ", ".join(APP_EXPOSED_HEADERS)


def preflight(origins: tuple[str, ...], origin: str | None, methods: Iterable[str]) -> dict[str, str]:
    """Headers for a ``204`` answer to an ``OPTIONS`` preflight from ``origin``, or :class:`Forbidden`
    (``origin_not_allowed``) for an origin not in ``VALET_CORS_ORIGINS``."""
    if not _origin_allowed(origins, origin):
        raise Forbidden("This origin may not call the API from a browser; add it to VALET_CORS_ORIGINS.",
                        code="origin_not_allowed")
    assert origin is not None
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ", ".join(sorted({*methods, "OPTIONS"})),
        "Access-Control-Allow-Headers": ", ".join(APP_ALLOWED_HEADERS),
        "Access-Control-Max-Age": str(APP_MAX_AGE_SECONDS),
        "Vary": "Origin",
    }
