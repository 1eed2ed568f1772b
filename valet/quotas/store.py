"""The quota store: the rules of :mod:`valet.quotas.rules` applied to rows of one Azure Table.

Exact across instances by optimistic concurrency: every change is one entity-group transaction over
one partition (see :mod:`valet.quotas.rows`) conditioned on the ETags of the rows it read, so two
instances that decided on the same counts cannot both commit; the loser gets 412 (or 409 when both
created a row) and decides again on fresh rows. Nothing is ever written that the rules did not check.

Requests: a process keeps the counters (and their ETags) its last transaction wrote, so an uncontended
grant is ONE transaction; a stale cache costs a 412 and one read. Grants of the same partition in one
process take turns on a lock, so they do not make each other stale. A would-be refusal reads the
partition's pending grants once: expired ones are settled first (uploaded: consumed, else released), and
the earliest expiry sets ``Retry-After`` when ``pendingFiles`` binds. Refusals are remembered in-process
(:mod:`valet.quotas.memory`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from valet.clock import utcnow
from valet.errors import ServiceUnavailable
from valet.quotas.limits import Limits, ProfileQuota, Scope
from valet.quotas.memory import RefusalMemory
from valet.quotas.rows import (
    CONSUMED,
    RELEASED,
    RESERVED,
    TENANT_ROW,
    Account,
    GrantRow,
    counter_entity,
    counter_from,
    etag_of,
    grant_entity,
    grant_from,
    grant_row,
    stamp,
)
from valet.quotas.rules import Ask, Counter, QuotaExceeded, binding, day_of, retry_after, view

log = logging.getLogger("valet.quotas")

MAX_ATTEMPTS = 60
MAX_BUSY_SECONDS = 15.0
_READ_CHUNK = 6  # grants per settle: with their callers and the tenant row, under the 15 comparisons per filter
_CONFLICT = (409, 412)


@dataclass(frozen=True)
class Reservation:
    """One file of a grant: its upload id, declared size, the end of its upload window, its blob name."""

    upload_id: str
    size: int
    expires: datetime
    blob: str


@dataclass
class SweepReport:
    consumed: int = 0
    released: int = 0
    deleted: int = 0


_Known = dict[str, tuple[Counter, str | None]]  # row key -> (counter, ETag; None: the row does not exist)


def _unavailable(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable("The quota store is unavailable right now.", code="quota_store_unavailable",
                              retry_after=2)


class QuotaStore:
    def __init__(self, table: TableClient, *, clock: Callable[[], datetime] = utcnow,
                 uploaded: Callable[[str], bool] | None = None, memory: RefusalMemory | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``uploaded(blob)`` says whether an upload arrived at a blob name (an expired grant is then
        consumed, else released); without it an expired grant is consumed (never frees what may be used)."""
        self._table = table
        self._clock = clock
        self._uploaded = uploaded
        self.memory = memory or RefusalMemory()
        self._sleep = sleep
        self._known: dict[str, _Known] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- grants ------------------------------------------------------------------------------------

    def reserve(self, account: Account, quota: ProfileQuota, files: Sequence[Reservation]) -> None:
        """Reserve every file of a grant (or batch) in every scope with limits, all or nothing; raises
        :class:`QuotaExceeded` (nothing reserved) or ``503 quota_store_unavailable``."""
        if not quota.enabled or not files:
            return
        now = self._clock()
        day = day_of(now)
        ask = Ask(sum(f.size for f in files), len(files))
        pk = account.partition_key(quota.profile)
        scopes = self._scopes(account, quota)
        for _, _, row in scopes:
            remembered = self.memory.check((pk, row), ask, now)
            if remembered is not None:
                raise remembered
        started, settled_expired = time.monotonic(), False
        with self._lock(pk):
            for attempt in range(MAX_ATTEMPTS):
                if time.monotonic() - started > MAX_BUSY_SECONDS:
                    break
                known = self._known.get(pk)
                if known is None:
                    known = self._read_counters(pk, [row for _, _, row in scopes])
                refusal = self._first_over(scopes, known, ask, day)
                if refusal is not None:
                    pending = self._pending(pk)
                    if not settled_expired and any(g.expires <= now for g in pending):
                        settled_expired = True
                        self._settle_expired(pk, [g for g in pending if g.expires <= now])
                        continue
                    raise self._refuse(pk, quota.profile, account, refusal, known, pending, now, day)
                if self._commit_reservation(pk, account, scopes, known, ask, files, day):
                    return
                self._backoff(attempt)
        raise ServiceUnavailable("The quota store is busy; try again.", code="quota_store_busy", retry_after=1)

    def settle(self, account: Account, profile: str, upload_id: str, *, consumed: bool) -> bool:
        """An upload arrived (``consumed``) or its grant was cancelled: its reservation leaves the counts.
        ``False`` when there is none to settle (no quota, or settled already): safe to repeat."""
        pk = account.partition_key(profile)
        with self._lock(pk):
            done = self._settle(pk, [upload_id], {account.caller}, lambda _: consumed)
        return done > 0

    def grant(self, account: Account, profile: str, upload_id: str) -> GrantRow | None:
        """The stored row of a grant that reserved quota (any state), or ``None``."""
        rows = self._read(account.partition_key(profile), [grant_row(upload_id)])
        entity = rows.get(grant_row(upload_id))
        return grant_from(entity) if entity is not None else None

    def usage(self, account: Account, quota: ProfileQuota) -> list[dict[str, Any]]:
        """The ``quota`` object of each scope of ``quota`` that has limits (``GET /api/quota``)."""
        scopes = self._scopes(account, quota)
        if not scopes:
            return []
        pk = account.partition_key(quota.profile)
        known = self._read_counters(pk, [row for _, _, row in scopes])
        day = day_of(self._clock())
        return [view(scope, quota.profile, limits, known[row][0], day) for scope, limits, row in scopes]

    # -- the reconciler's sweep --------------------------------------------------------------------

    def sweep(self, *, limit: int = 500, retention: timedelta = timedelta(days=2)) -> SweepReport:
        """Settle grants whose upload window has closed (consumed when their upload arrived, else
        released), and delete settled grant rows older than ``retention``. At most ``limit`` of each."""
        now = self._clock()
        report = SweepReport()
        try:
            expired = [(str(e["PartitionKey"]), grant_from(e)) for e in self._table.query_entities(
                "State eq @s and Expires le @now", parameters={"s": RESERVED, "now": stamp(now)},
                results_per_page=min(limit, 1000))][:limit]
        except AzureError as exc:
            raise _unavailable(exc) from exc
        by_partition: dict[str, list[GrantRow]] = {}
        for pk, grant in expired:
            by_partition.setdefault(pk, []).append(grant)
        for pk, grants in by_partition.items():
            with self._lock(pk):
                for kind, count in self._settle_expired(pk, grants).items():
                    setattr(report, kind, getattr(report, kind) + count)
        old = stamp(now - retention)
        try:
            settled = self._table.query_entities(
                "State ne @s and Expires le @old and RowKey ge @lo and RowKey lt @hi",
                parameters={"s": RESERVED, "old": old, "lo": "g.", "hi": "g/"}, select=["PartitionKey", "RowKey"])
            for entity in settled:
                if report.deleted >= limit:
                    break
                self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                report.deleted += 1
        except AzureError as exc:
            raise _unavailable(exc) from exc
        return report

    # -- inside ------------------------------------------------------------------------------------

    @staticmethod
    def _scopes(account: Account, quota: ProfileQuota) -> list[tuple[Scope, Limits, str]]:
        rows = {"caller": account.caller_row, "tenant": TENANT_ROW}
        return [(scope, limits, rows[scope]) for scope, limits in quota.scopes()]

    @staticmethod
    def _first_over(scopes: Iterable[tuple[Scope, Limits, str]], known: _Known, ask: Ask,
                    day: str) -> tuple[Scope, Limits, str, tuple[str, ...]] | None:
        for scope, limits, row in scopes:
            over = binding(known.get(row, (Counter(), None))[0], limits, ask, day)
            if over:
                return scope, limits, row, over
        return None

    def _refuse(self, pk: str, profile: str, account: Account, refusal: tuple[Scope, Limits, str, tuple[str, ...]],
                known: _Known, pending: list[GrantRow], now: datetime, day: str) -> QuotaExceeded:
        scope, limits, row, over = refusal
        held = [g.expires for g in pending if g.state == RESERVED and (scope == "tenant" or g.caller == account.caller)]
        quota = view(scope, profile, limits, known.get(row, (Counter(), None))[0], day)
        error = QuotaExceeded(quota, retry_after(over, now, min(held, default=None)), over)
        self.memory.remember((pk, row), error, now)
        return error

    def _commit_reservation(self, pk: str, account: Account, scopes: list[tuple[Scope, Limits, str]], known: _Known,
                            ask: Ask, files: Sequence[Reservation], day: str) -> bool:
        updated: _Known = {}
        operations: list[Any] = []
        for _, _, row in scopes:
            counter, etag = known.get(row, (Counter(), None))
            updated[row] = (counter.reserve(ask, day), etag)
            operations.append(self._write_counter(pk, row, updated[row]))
        tags = "".join(sorted("t" if row == TENANT_ROW else "c" for _, _, row in scopes))
        for f in files:
            operations.append(("create", grant_entity(pk, GrantRow(f.upload_id, account.caller, f.size, day,
                                                                  f.expires, f.blob, tags))))
        results = self._submit(pk, operations)
        if results is None:
            return False
        cache = dict(known)
        for index, row in enumerate(updated):
            cache[row] = (updated[row][0], str(results[index].get("etag")))
        self._known[pk] = cache
        return True

    @staticmethod
    def _write_counter(pk: str, row: str, state: tuple[Counter, str | None]) -> Any:
        counter, etag = state
        entity = counter_entity(pk, row, counter)
        if etag is None:
            return ("create", entity)
        return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag,
                                   "match_condition": MatchConditions.IfNotModified})

    def _submit(self, pk: str, operations: list[Any]) -> list[Any] | None:
        """The transaction's per-operation results, or ``None`` when it lost a race (409/412): nothing of
        it was applied, and what this process knew of the partition is dropped."""
        try:
            return list(self._table.submit_transaction(operations))
        except TableTransactionError as exc:
            if exc.status_code in _CONFLICT:
                self._known.pop(pk, None)
                return None
            raise _unavailable(exc) from exc
        except ResourceExistsError:
            self._known.pop(pk, None)
            return None
        except AzureError as exc:
            raise _unavailable(exc) from exc

    def _settle_expired(self, pk: str, grants: list[GrantRow]) -> dict[str, int]:
        counts = {"consumed": 0, "released": 0}

        def outcome(grant: GrantRow) -> bool:
            consumed = True if self._uploaded is None else self._uploaded(grant.blob)
            counts["consumed" if consumed else "released"] += 1
            return consumed

        for start in range(0, len(grants), _READ_CHUNK):
            chunk = grants[start:start + _READ_CHUNK]
            self._settle(pk, [g.upload_id for g in chunk], {g.caller for g in chunk}, outcome)
        self.memory.forget(pk)
        return counts

    def _settle(self, pk: str, upload_ids: list[str], callers: set[str], consumed: Callable[[GrantRow], bool]) -> int:
        """Settle the still-reserved grants among ``upload_ids`` in one transaction (the caller holds the
        partition's lock); retried on fresh rows after a lost race. Returns how many it settled."""
        rows = [grant_row(u) for u in upload_ids] + [f"c.{c}" for c in sorted(callers)] + [TENANT_ROW]
        decided: dict[str, bool] = {}  # asked once per grant, whatever the retries
        for attempt in range(MAX_ATTEMPTS):
            entities = self._read(pk, rows)
            grants = [grant_from(entities[r]) for r in rows if r.startswith("g.") and r in entities]
            grants = [g for g in grants if g.state == RESERVED]
            if not grants:
                return 0
            day = day_of(self._clock())
            counters: _Known = {r: (counter_from(e), etag_of(e)) for r, e in entities.items() if not r.startswith("g.")}
            changed: set[str] = set()
            operations: list[Any] = []
            for grant in grants:
                if grant.upload_id not in decided:
                    decided[grant.upload_id] = consumed(grant)
                used = decided[grant.upload_id]
                for tag in grant.scopes:
                    row = TENANT_ROW if tag == "t" else f"c.{grant.caller}"
                    if row in counters:
                        counter, etag = counters[row]
                        counters[row] = (counter.settle(grant.size, grant.granted_day, day, consumed=used), etag)
                        changed.add(row)
                done = GrantRow(grant.upload_id, grant.caller, grant.size, grant.granted_day, grant.expires,
                                grant.blob, grant.scopes, CONSUMED if used else RELEASED)
                operations.append(("update", grant_entity(pk, done), {
                    "mode": UpdateMode.REPLACE, "etag": grant.etag, "match_condition": MatchConditions.IfNotModified}))
            operations.extend(self._write_counter(pk, row, counters[row]) for row in sorted(changed))
            if self._submit(pk, operations) is not None:
                self._known.pop(pk, None)  # the next grant reads the counters this wrote
                self.memory.forget(pk)
                return len(grants)
            self._backoff(attempt)
        raise ServiceUnavailable("The quota store is busy; try again.", code="quota_store_busy", retry_after=1)

    def _pending(self, pk: str) -> list[GrantRow]:
        try:
            return [grant_from(e) for e in self._table.query_entities(
                "PartitionKey eq @pk and State eq @s", parameters={"pk": pk, "s": RESERVED})]
        except AzureError as exc:
            raise _unavailable(exc) from exc

    def _read_counters(self, pk: str, rows: list[str]) -> _Known:
        entities = self._read(pk, rows)
        known: _Known = {row: (Counter(), None) for row in rows}
        known.update({row: (counter_from(e), etag_of(e)) for row, e in entities.items()})
        return known

    def _read(self, pk: str, rows: list[str]) -> dict[str, Any]:
        """The entities of ``rows`` in partition ``pk`` (absent rows are left out), in one query."""
        names = {f"r{i}": row for i, row in enumerate(rows)}
        clause = " or ".join(f"RowKey eq @{name}" for name in names)
        try:
            found = self._table.query_entities(f"PartitionKey eq @pk and ( {clause} )",
                                               parameters={"pk": pk, **names})
            return {str(e["RowKey"]): e for e in found}
        except AzureError as exc:
            raise _unavailable(exc) from exc

    def _lock(self, pk: str) -> threading.Lock:
        with self._guard:
            if len(self._locks) > 10_000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
                self._known.clear()
            return self._locks.setdefault(pk, threading.Lock())

    def _backoff(self, attempt: int) -> None:
        self._sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))  # noqa: S311 - jitter, not a secret
