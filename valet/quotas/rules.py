"""The quota rules (pure): counters, what a grant asks, when it fits, what a refusal says.

One :class:`Counter` per scope (a caller, or a tenant) and profile. Its per-day fields belong to one UTC
``day``; a counter read on a later day counts from zero again (:meth:`Counter.on`), except ``pending``,
which holds grants of any day that are neither uploaded nor released yet.

* A grant **reserves** its declared bytes and one file per file: ``reserved_*`` and ``pending`` grow.
* An upload that arrives **consumes** its reservation, whatever its verdict: the bytes and the file move
  from ``reserved_*`` to ``bytes``/``files`` when the grant was made today; an older grant's day has
  already reset, so only ``pending`` shrinks.
* A cancelled or expired grant **releases** its reservation: as consuming, without the move.
* Bytes **staged** for a grant beyond its declared size, once the app sees them, are reserved too
  (:meth:`Counter.restage`): a reservation holds max(declared, staged) bytes until it is settled.

A grant fits when, for every configured limit, ``used + reserved + asked <= limit`` (per-day limits)
and ``pending + asked files <= pendingFiles``. Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from valet.errors import TooManyRequests
from valet.quotas.limits import BYTES, FILES, PENDING, Limits, Scope

NO_EXPIRY_KNOWN = 60  # Retry-After when pendingFiles binds and no pending grant's expiry is known


def day_of(moment: datetime) -> str:
    """The UTC day of ``moment`` as the counters store it (``YYYY-MM-DD``; sorts as it compares)."""
    return moment.astimezone(UTC).date().isoformat()


def resets_at(day: str) -> datetime:
    """The moment the per-day counts of ``day`` reset: the next UTC midnight."""
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1), time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Ask:
    """What a grant (or a whole batch) asks of every scope: its declared bytes and its number of files."""

    bytes: int
    files: int = 1


@dataclass(frozen=True)
class Counter:
    day: str = ""
    bytes: int = 0
    files: int = 0
    reserved_bytes: int = 0
    reserved_files: int = 0
    pending: int = 0

    def on(self, day: str) -> Counter:
        """This counter as seen on ``day``: the per-day counts start again on a later day. A counter
        already on a later day (written by an instance whose clock runs ahead) is kept as it is, so
        instances never reset each other's counts back and forth."""
        if day <= self.day:
            return self
        return Counter(day=day, pending=self.pending)

    def reserve(self, ask: Ask, day: str) -> Counter:
        c = self.on(day)
        return replace(c, reserved_bytes=c.reserved_bytes + ask.bytes, reserved_files=c.reserved_files + ask.files,
                       pending=c.pending + ask.files)

    def restage(self, more: int, granted_day: str, day: str) -> Counter:
        """A reservation made on ``granted_day`` was seen holding ``more`` staged bytes beyond what it held:
        they are reserved too, until it is settled. A reservation whose day has reset holds nothing here."""
        c = self.on(day)
        if granted_day != c.day or more <= 0:
            return c
        return replace(c, reserved_bytes=c.reserved_bytes + more)

    def settle(self, size: int, granted_day: str, day: str, *, consumed: bool, held: int | None = None) -> Counter:
        """One reservation of ``size`` bytes made on ``granted_day`` leaves: uploaded (``consumed``) or
        released. ``held``: the bytes it reserved (its size, or more once staged bytes were seen: see
        :meth:`restage`); an upload consumes its size only. Counts never go below zero (a counter rebuilt
        by hand cannot make them negative)."""
        c = self.on(day)
        pending = max(0, c.pending - 1)
        if granted_day != c.day:  # its day has reset already: only the pending count holds it
            return replace(c, pending=pending)
        held = size if held is None else held
        c = replace(c, pending=pending, reserved_bytes=max(0, c.reserved_bytes - held),
                    reserved_files=max(0, c.reserved_files - 1))
        if consumed:
            c = replace(c, bytes=c.bytes + size, files=c.files + 1)
        return c


def binding(counter: Counter, limits: Limits, ask: Ask, day: str) -> tuple[str, ...]:
    """The limits ``ask`` would exceed, by name (empty: it fits)."""
    c = counter.on(day)
    over = []
    if limits.bytes_per_day is not None and c.bytes + c.reserved_bytes + ask.bytes > limits.bytes_per_day:
        over.append(BYTES)
    if limits.files_per_day is not None and c.files + c.reserved_files + ask.files > limits.files_per_day:
        over.append(FILES)
    if limits.pending_files is not None and c.pending + ask.files > limits.pending_files:
        over.append(PENDING)
    return tuple(over)


def retry_after(over: tuple[str, ...], now: datetime, earliest_free: datetime | None) -> int:
    """Seconds until the refused ask could fit at the earliest: the day's reset for a per-day limit, the
    earliest pending grant's expiry for ``pendingFiles``; the later of the two when both bind."""
    waits = []
    if BYTES in over or FILES in over:
        waits.append((resets_at(day_of(now)) - now).total_seconds())
    if PENDING in over:
        waits.append((earliest_free - now).total_seconds() if earliest_free is not None else NO_EXPIRY_KNOWN)
    return max(1, math.ceil(max(waits, default=1)))


def view(scope: Scope, profile: str, limits: Limits, counter: Counter, day: str) -> dict[str, Any]:
    """The ``quota`` object of a refusal and of ``GET /api/quota``: only the configured limits appear;
    ``used`` has the per-day ones (consumed today), ``reserved`` what pending grants hold."""
    c = counter.on(day)
    used: dict[str, int] = {}
    reserved: dict[str, int] = {}
    remaining: dict[str, int] = {}
    if limits.bytes_per_day is not None:
        used[BYTES], reserved[BYTES] = c.bytes, c.reserved_bytes
        remaining[BYTES] = max(0, limits.bytes_per_day - c.bytes - c.reserved_bytes)
    if limits.files_per_day is not None:
        used[FILES], reserved[FILES] = c.files, c.reserved_files
        remaining[FILES] = max(0, limits.files_per_day - c.files - c.reserved_files)
    if limits.pending_files is not None:
        reserved[PENDING] = c.pending
        remaining[PENDING] = max(0, limits.pending_files - c.pending)
    return {"scope": scope, "profile": profile, "limit": limits.as_json(), "used": used, "reserved": reserved,
            "remaining": remaining, "resetsAt": resets_at(c.day).strftime("%Y-%m-%dT%H:%M:%SZ")}


def fits_remaining(remaining: dict[str, int], ask: Ask) -> bool:
    """Would ``ask`` fit what a ``view`` showed as remaining (the in-process memory of a refusal)?"""
    return (remaining.get(BYTES, ask.bytes) >= ask.bytes and remaining.get(FILES, ask.files) >= ask.files
            and remaining.get(PENDING, ask.files) >= ask.files)


class QuotaExceeded(TooManyRequests):
    """``429 quota_exceeded``: the grant would take a scope over a limit; nothing was reserved."""

    code = "quota_exceeded"
    title = "Quota exceeded"

    def __init__(self, quota: dict[str, Any], retry_after_seconds: int, over: tuple[str, ...]) -> None:
        scope = "this caller's" if quota["scope"] == "caller" else "the tenant's"
        super().__init__(
            f"The grant would exceed {scope} {', '.join(over)} quota of profile '{quota['profile']}'.",
            headers={"Retry-After": str(retry_after_seconds)},
            extra={"quota": quota},
        )
        self.quota = quota
        self.retry_after = retry_after_seconds
        self.over = over
