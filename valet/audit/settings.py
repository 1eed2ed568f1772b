"""The audit trail's settings, read once from the environment (names: docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from valet.envreader import EnvReader

AUDIT_CONTAINER = "VALET_AUDIT_CONTAINER"
AUDIT_FLUSH_SECONDS = "VALET_AUDIT_FLUSH_SECONDS"
AUDIT_BUFFER_RECORDS = "VALET_AUDIT_BUFFER_RECORDS"
NO_AUDIT = "none"  # VALET_AUDIT_CONTAINER=none: records go to the log only


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
        env = EnvReader(environ)
        container = env.text(AUDIT_CONTAINER, "audit") or "audit"
        return cls(container=container if container == NO_AUDIT else env.container(AUDIT_CONTAINER, "audit"),
                   flush_seconds=env.number(AUDIT_FLUSH_SECONDS, 1.0, 1.0, 60.0),
                   buffer_records=int(env.number(AUDIT_BUFFER_RECORDS, 10_000, 100, 1_000_000, integer=True)))
