"""The default clock. Code that decides on time takes a ``clock`` argument defaulting to this, so tests
can pin time."""

from __future__ import annotations

from datetime import UTC, datetime

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"  # the one timestamp format of grants, downloads and decision records


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-12-06T20:10:08Z``: the one timestamp format of grants, downloads and decision records."""
    return moment.astimezone(UTC).strftime(RFC3339)
