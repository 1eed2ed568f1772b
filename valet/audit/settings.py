"""The audit trail's settings, read once from the environment (names: docs/configuration.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from valet.errors import ConfigurationError

AUDIT_CONTAINER = "VALET_AUDIT_CONTAINER"
AUDIT_FLUSH_SECONDS = "VALET_AUDIT_FLUSH_SECONDS"
AUDIT_BUFFER_RECORDS = "VALET_AUDIT_BUFFER_RECORDS"
NO_AUDIT = "none"  # VALET_AUDIT_CONTAINER=none: records go to the log only
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


@dataclass(frozen=True)
class AuditSettings:
    container: str = "audit"
    flush_seconds: float = 1.0
    buffer_records: int = 10_000

    @property
    def enabled(self) -> bool:
        return self.container != NO_AUDIT

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AuditSettings:
        container = environ.get(AUDIT_CONTAINER, "audit").strip() or "audit"
        if container != NO_AUDIT and not _CONTAINER.fullmatch(container):
            raise ConfigurationError(f"{AUDIT_CONTAINER} must be a container name or 'none'")
        return cls(container=container,
                   flush_seconds=_number(environ, AUDIT_FLUSH_SECONDS, 1.0, 1.0, 60.0),
                   buffer_records=int(_number(environ, AUDIT_BUFFER_RECORDS, 10_000, 100, 1_000_000)))


def _number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g}")
    return value
