"""Errors with RFC 6750 ``WWW-Authenticate`` challenges (details never carry credentials)."""

from __future__ import annotations

from valet.errors import Forbidden, Unauthenticated

REALM = "valet"


def _challenge(
    error: str | None, description: str | None = None, scope: str | None = None, scheme: str = "Bearer"
) -> str:
    parts = [f'{scheme} realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'").replace("\\", "/")))
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)


def unauthenticated(
    detail: str, code: str, *, error: str | None = "invalid_token", scheme: str = "Bearer"
) -> Unauthenticated:
    """A 401. ``error`` is the RFC 6750 error code (``None`` when no credentials were sent).

    API key failures use the ``ApiKey`` scheme in the challenge (``ApiKey realm="valet", error=...``).
    """
    challenge = _challenge(error, detail if error else None, scheme=scheme)
    return Unauthenticated(detail, code=code, headers={"WWW-Authenticate": challenge})


def insufficient_scope(detail: str, required: frozenset[str]) -> Forbidden:
    return Forbidden(
        detail,
        code="insufficient_scope",
        headers={
            "WWW-Authenticate": _challenge("insufficient_scope", detail, " ".join(sorted(required)))
        },
    )
