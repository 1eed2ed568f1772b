"""The one error hierarchy of valet.

Every error a caller can see is a :class:`ValetError` with a stable ``code``, an HTTP ``status`` and a
``detail`` written for the caller. Messages never carry secrets, SDK text or stack traces: code that
catches a library exception raises one of these ``from`` it, and only :mod:`valet.http` turns them into
responses (``application/problem+json``).
"""

from __future__ import annotations

from collections.abc import Mapping


class ValetError(Exception):
    """Base class: an error with a stable public code and HTTP status."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, object] = dict(extra or {})
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status})"


class ConfigurationError(ValetError):
    """A setting is missing or invalid. Raised at start-up; names the setting, never its value."""

    status = 500
    code = "configuration_error"
    title = "The service is misconfigured"


class BadRequest(ValetError):
    status = 400
    code = "bad_request"
    title = "The request is malformed"


class Unauthenticated(ValetError):
    status = 401
    code = "unauthenticated"
    title = "Authentication is required"


class Forbidden(ValetError):
    status = 403
    code = "forbidden"
    title = "The caller may not do this"


class NotFound(ValetError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(ValetError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(ValetError):
    status = 409
    code = "conflict"
    title = "The resource is not in a state that allows this"


class PayloadTooLarge(ValetError):
    status = 413
    code = "too_large"
    title = "Too large"


class UnsupportedMediaType(ValetError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class TooManyRequests(ValetError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class ServiceUnavailable(ValetError):
    """A dependency (storage, identity provider) cannot be reached now; the caller may retry."""

    status = 503
    code = "unavailable"
    title = "Temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5, code: str | None = None) -> None:
        super().__init__(detail, code=code, headers={"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = max(1, int(retry_after))
