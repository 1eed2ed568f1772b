"""The default clock. Code that decides on time takes a ``clock`` argument defaulting to this, so tests
can pin time."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
