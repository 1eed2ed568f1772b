"""How quota state is laid out in the Table (pure: keys, entities, and back).

One partition per tenant and profile (``<tenant>.<profile>``) holds everything a grant must change at
once, because an entity-group transaction reaches one partition only:

* ``t``: the tenant's :class:`~valet.quotas.rules.Counter` (only when the profile has a ``tenantQuota``);
* ``c.<caller>``: each caller's counter (only when the profile has a ``quota``);
* ``g.<uploadId>``: one row per grant that reserved something: its caller, declared size, the day it
  was granted, the end of its upload window, its blob name, which scopes it counted in, the most bytes
  the app saw staged for it (``Staged``: it holds max(declared, staged) while reserved), and its state
  (``reserved`` until it is consumed or released; then kept, so settling twice changes nothing).

``<tenant>`` and ``<caller>`` are the two segments of the caller's blob partition
(:attr:`valet.caller.Caller.partition`): plain or hashed, never a character the Table service forbids in
keys. Times are stored as ``YYYY-MM-DDTHH:MM:SSZ`` strings, which sort as they compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import EdmType, EntityProperty

from valet.caller import Caller
from valet.quotas.rules import Counter

TENANT_ROW = "t"
RESERVED, CONSUMED, RELEASED = "reserved", "consumed", "released"
_COUNTER_FIELDS = ("Bytes", "Files", "ResBytes", "ResFiles", "Pending")


@dataclass(frozen=True)
class Account:
    """Whose counters: the tenant and caller segments of a caller's blob partition."""

    tenant: str
    caller: str

    @classmethod
    def of(cls, caller: Caller) -> Account:
        tenant, who = caller.partition.split("/", 1)
        return cls(tenant, who)

    @classmethod
    def from_partition(cls, partition: str) -> Account:
        """From a blob name's ``<tenant>/<caller>`` prefix (the validator knows nothing else)."""
        tenant, who = partition.split("/", 1)
        return cls(tenant, who)

    def partition_key(self, profile: str) -> str:
        return f"{self.tenant}.{profile}"

    @property
    def caller_row(self) -> str:
        return f"c.{self.caller}"


@dataclass(frozen=True)
class GrantRow:
    """A grant that reserved quota."""

    upload_id: str
    caller: str
    size: int
    granted_day: str
    expires: datetime
    blob: str
    scopes: str  # "c", "t" or "ct": the counters it counted in
    state: str = RESERVED
    etag: str | None = None
    batch: str = ""  # the batch it belongs to, if any
    staged: int = 0  # the most bytes the app saw staged for it (Get Block List), while its window was open

    @property
    def row_key(self) -> str:
        return grant_row(self.upload_id)

    @property
    def charge(self) -> int:
        """The bytes it holds in its counters while reserved: its declared size, or what it staged if more."""
        return max(self.size, self.staged)


def grant_row(upload_id: str) -> str:
    return f"g.{upload_id}"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unstamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _int(value: Any) -> int:
    raw = value.value if isinstance(value, EntityProperty) else value
    return int(raw) if isinstance(raw, int | str) and str(raw).lstrip("-").isdigit() else 0


def _i64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def counter_entity(partition: str, row: str, counter: Counter) -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": row, "Day": counter.day, "Bytes": _i64(counter.bytes),
            "Files": _i64(counter.files), "ResBytes": _i64(counter.reserved_bytes),
            "ResFiles": _i64(counter.reserved_files), "Pending": _i64(counter.pending)}


def counter_from(entity: Mapping[str, Any]) -> Counter:
    day = entity.get("Day")
    return Counter(str(day) if isinstance(day, str) else "", *(max(0, _int(entity.get(f))) for f in _COUNTER_FIELDS))


def grant_entity(partition: str, grant: GrantRow) -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": grant.row_key, "Caller": grant.caller, "Size": _i64(grant.size),
            "Day": grant.granted_day, "Expires": stamp(grant.expires), "Blob": grant.blob, "Scopes": grant.scopes,
            "State": grant.state, "Batch": grant.batch, "Staged": _i64(grant.staged)}


def grant_from(entity: Mapping[str, Any]) -> GrantRow:
    return GrantRow(
        upload_id=str(entity["RowKey"])[2:], caller=str(entity.get("Caller", "")), size=_int(entity.get("Size")),
        granted_day=str(entity.get("Day", "")), expires=unstamp(str(entity["Expires"])),
        blob=str(entity.get("Blob", "")), scopes=str(entity.get("Scopes", "")), state=str(entity.get("State", "")),
        etag=_etag(entity), batch=str(entity.get("Batch", "")), staged=max(0, _int(entity.get("Staged"))),
    )


def _etag(entity: Any) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    etag = metadata.get("etag")
    return str(etag) if etag else None


def etag_of(entity: Any) -> str | None:
    return _etag(entity)
