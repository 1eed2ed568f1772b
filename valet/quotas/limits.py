"""Quota limits as upload profiles configure them (pure).

A profile of the profiles document (``VALET_PROFILES`` / ``VALET_PROFILES_FILE``, see
:mod:`valet.policy`) may carry::

    "quota":       {"bytesPerDay": N, "filesPerDay": N, "pendingFiles": N},   # per caller
    "tenantQuota": {"bytesPerDay": N, "filesPerDay": N, "pendingFiles": N},   # sum over a tenant's callers
    "maxFilesPerBatch": N                                                     # 1-97, default 20

Every field is optional: an absent field is no limit there; a profile with neither object has no quota
and its grants make no storage request. Days are UTC days; ``pendingFiles`` counts grants not yet
uploaded (nor cancelled, nor expired) at any moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from valet.errors import ConfigurationError

Scope = Literal["caller", "tenant"]
BYTES, FILES, PENDING = "bytesPerDay", "filesPerDay", "pendingFiles"
FIELDS = (BYTES, FILES, PENDING)
# An entity-group transaction holds at most 100 operations; a batch's holds its grant rows, the batch row
# and up to two counters (caller and tenant).
MAX_BATCH = 97
DEFAULT_BATCH = 20
_MAX_VALUE = 2**53 - 1  # what a Table Int64 and a JSON number both hold exactly


@dataclass(frozen=True)
class Limits:
    """One scope's limits; ``None`` is no limit."""

    bytes_per_day: int | None = None
    files_per_day: int | None = None
    pending_files: int | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.bytes_per_day, self.files_per_day, self.pending_files))

    def as_json(self) -> dict[str, int]:
        values = {BYTES: self.bytes_per_day, FILES: self.files_per_day, PENDING: self.pending_files}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class ProfileQuota:
    """What one profile limits: per caller, per tenant, and files per batch."""

    profile: str
    caller: Limits = Limits()
    tenant: Limits = Limits()
    max_files_per_batch: int = DEFAULT_BATCH

    @property
    def enabled(self) -> bool:
        """Does a grant of this profile touch the quota store at all?"""
        return self.caller.any() or self.tenant.any()

    def scopes(self) -> tuple[tuple[Scope, Limits], ...]:
        """The scopes that have limits, caller first."""
        both: tuple[tuple[Scope, Limits], ...] = (("caller", self.caller), ("tenant", self.tenant))
        return tuple((scope, limits) for scope, limits in both if limits.any())


def parse_quotas(doc: Any, *, setting: str) -> dict[str, ProfileQuota]:
    """The quota of every profile of a profiles document (profiles without one get an empty quota).

    Raises :class:`ConfigurationError` naming ``setting`` and the profile for anything malformed. The
    rest of the document is :class:`valet.policy.Policy`'s to check."""
    profiles = doc.get("profiles") if isinstance(doc, Mapping) else None
    if not isinstance(profiles, Mapping):
        raise ConfigurationError(f"{setting}: must be an object with a non-empty 'profiles' object")
    out: dict[str, ProfileQuota] = {}
    for name, raw in profiles.items():
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"{setting}: profile '{name}' must be an object")
        batch = raw.get("maxFilesPerBatch", DEFAULT_BATCH)
        if not _is_int(batch) or not 1 <= batch <= MAX_BATCH:
            raise ConfigurationError(
                f"{setting}: profile '{name}': maxFilesPerBatch must be an integer from 1 to {MAX_BATCH}")
        out[str(name)] = ProfileQuota(
            profile=str(name),
            caller=_limits(raw.get("quota"), f"{setting}: profile '{name}': quota"),
            tenant=_limits(raw.get("tenantQuota"), f"{setting}: profile '{name}': tenantQuota"),
            max_files_per_batch=batch,
        )
    return out


def _limits(raw: Any, where: str) -> Limits:
    if raw is None:
        return Limits()
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where} must be an object")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown field(s) {', '.join(map(str, unknown))}; known: {', '.join(FIELDS)}")
    for field_name in FIELDS:
        value = raw.get(field_name)
        if value is not None and (not _is_int(value) or not 1 <= value <= _MAX_VALUE):
            raise ConfigurationError(f"{where}: {field_name} must be a positive integer")
    return Limits(raw.get(BYTES), raw.get(FILES), raw.get(PENDING))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
