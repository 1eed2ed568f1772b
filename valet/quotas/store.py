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

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableClient

from valet.clock import utcnow
from valet.quotas.batches import CANCELLED, EXPIRED, PENDING, BatchRow, batch_entity, batch_from, batch_row
from valet.quotas.limits import Limits, ProfileQuota, Scope
from valet.quotas.memory import RefusalMemory
from valet.quotas.rows import (
    CONSUMED,
    RELEASED,
    RESERVED,
    TENANT_ROW,
    Account,
    GrantRow,
    counter_from,
    etag_of,
    grant_entity,
    grant_from,
    grant_row,
    stamp,
)
from valet.quotas.rules import Ask, Counter, QuotaExceeded, binding, day_of, retry_after, view
from valet.quotas.table import Known, QuotaTable, busy, jitter, replace_if_unchanged, write_counter

MAX_ATTEMPTS = 60
MAX_BUSY_SECONDS = 15.0
_SETTLE_CHUNK = 6  # grants per settling read: with their callers and the tenant row, within one filter


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
    batches: list[BatchRow] = field(default_factory=list)  # completed by this sweep: their event is owed


@dataclass(frozen=True)
class Outcome:
    """How a grant leaves: ``consumed`` (an upload arrived) or not, and the status its batch records
    (``None``: none yet, its decision will say)."""

    consumed: bool
    status: str | None = None
    reason: str | None = None
    size: int | None = None  # the bytes that arrived, when known: consumed as max(declared, size)


_Over = tuple[Scope, Limits, str, tuple[str, ...]]


class QuotaStore:
    def __init__(self, table: TableClient, *, clock: Callable[[], datetime] = utcnow,
                 uploaded: Callable[[str], bool] | None = None, memory: RefusalMemory | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``uploaded(blob)`` says whether an upload arrived at a blob name (an expired grant is then
        consumed, else released); without it an expired grant is consumed (never frees what may be used)."""
        self.table = QuotaTable(table)
        self._clock = clock
        self._uploaded = uploaded
        self.memory = memory or RefusalMemory()
        self._sleep = sleep

    def reserve(self, account: Account, quota: ProfileQuota, files: Sequence[Reservation], *,
                repeat: bool = False, batch: BatchRow | None = None, record: bool = False) -> None:
        """Reserve every file of a grant (or batch) in every scope with limits, all or nothing; raises
        :class:`QuotaExceeded` (nothing reserved) or ``503``. ``repeat``: the same upload ids may have been
        reserved before (an idempotent retry): if they were, nothing is reserved twice (one read).
        ``batch`` is written in the same transaction; ``record`` stores the grant rows even without a
        quota (batches and idempotent grants: so ``DELETE`` needs no ``blobUri``)."""
        if not files or not (quota.enabled or batch is not None or record):
            return
        now = self._clock()
        day = day_of(now)
        ask = Ask(sum(f.size for f in files), len(files))
        pk = account.partition_key(quota.profile)
        scopes = _scopes(account, quota)
        if repeat and self._already_reserved(pk, files):
            return
        for _, _, row in scopes:
            remembered = self.memory.recall((pk, row), ask, now)
            if remembered is not None:
                raise remembered
        started, settled_expired = time.monotonic(), False
        with self.table.lock(pk):
            for attempt in range(MAX_ATTEMPTS):
                if time.monotonic() - started > MAX_BUSY_SECONDS:
                    break
                known = self.table.known(pk) or (self.table.read_counters(pk, [row for _, _, row in scopes])
                                                 if scopes else {})
                over = _first_over(scopes, known, ask, day)
                if over is not None:
                    pending = self.table.pending(pk)
                    expired = [g for g in pending if g.expires <= now]
                    if expired and not settled_expired:
                        settled_expired = True
                        self._settle_expired(pk, expired)
                        continue
                    raise self._refuse(pk, quota.profile, account, over, known, pending, now, day)
                conflict = self._commit(pk, account, scopes, known, ask, files, day, batch)
                if conflict is None:
                    return
                if conflict == 409 and self._already_reserved(pk, files):
                    return  # a retry of a grant whose reservation committed (same upload ids)
                self._sleep(jitter(attempt))
        raise busy()

    def settle(self, account: Account, profile: str, upload_id: str, *, consumed: bool) -> bool:
        """An upload arrived (``consumed``) or its grant was cancelled: its reservation leaves the counts.
        ``False`` when there is none to settle (no quota, or settled already): safe to repeat."""
        status = None if consumed else CANCELLED
        return self.decide(account, profile, upload_id, Outcome(consumed, status))[0] > 0

    def decide(self, account: Account, profile: str, upload_id: str,
               outcome: Outcome) -> tuple[int, list[BatchRow]]:
        """Settle one grant with ``outcome`` (and record its status in its batch): how many grants it
        settled, and the batches this completed (their event is owed: send it, then :meth:`event_sent`)."""
        pk = account.partition_key(profile)
        with self.table.lock(pk):
            return self._settle(pk, [upload_id], {account.caller}, lambda _: outcome)

    def observe_staged(self, account: Account, profile: str, upload_id: str, staged: int) -> bool:
        """The app saw ``staged`` bytes staged (uncommitted) for a grant: while its window is open and it is
        reserved, it holds max(declared, staged) bytes in its counters. One read; one transaction only when
        that grows (an upload staging no more than it declared costs the read only). ``True`` if it grew."""
        pk = account.partition_key(profile)
        key = grant_row(upload_id)
        with self.table.lock(pk):
            for attempt in range(MAX_ATTEMPTS):
                entities = self.table.read(pk, [key, account.caller_row, TENANT_ROW])
                if key not in entities:
                    return False
                grant = grant_from(entities[key])
                now = self._clock()
                more = max(grant.size, staged) - grant.charge
                if grant.state != RESERVED or now >= grant.expires or more <= 0:
                    return False  # settled, or its window closed (the sweep settles it), or nothing new
                day = day_of(now)
                operations: list[Any] = [replace_if_unchanged(grant_entity(pk, replace(grant, staged=staged)),
                                                              grant.etag)]
                for row in (TENANT_ROW if tag == "t" else f"c.{grant.caller}" for tag in grant.scopes):
                    if row in entities:
                        counter = counter_from(entities[row]).restage(more, grant.granted_day, day)
                        operations.append(write_counter(pk, row, (counter, etag_of(entities[row]))))
                if not isinstance(self.table.submit(pk, operations), int):
                    self.table.forget(pk)  # the next grant reads the counters this wrote
                    return True
                self._sleep(jitter(attempt))
        raise busy()

    def grant(self, account: Account, profile: str, upload_id: str) -> GrantRow | None:
        """The stored row of a grant that reserved quota (any state), or ``None``."""
        entity = self.table.read(account.partition_key(profile), [grant_row(upload_id)]).get(grant_row(upload_id))
        return grant_from(entity) if entity is not None else None

    def usage(self, account: Account, quota: ProfileQuota) -> list[dict[str, Any]]:
        """The ``quota`` object of each scope of ``quota`` that has limits (``GET /api/quota``)."""
        scopes = _scopes(account, quota)
        if not scopes:
            return []
        known = self.table.read_counters(account.partition_key(quota.profile), [row for _, _, row in scopes])
        day = day_of(self._clock())
        return [view(scope, quota.profile, limits, known[row][0], day) for scope, limits, row in scopes]

    def sweep(self, *, limit: int = 500, retention: timedelta = timedelta(days=2)) -> SweepReport:
        """Settle grants whose upload window has closed (consumed when their upload arrived, else
        released), and delete settled grant rows older than ``retention``. At most ``limit`` of each."""
        now = self._clock()
        report = SweepReport()
        by_partition: dict[str, list[GrantRow]] = {}
        for count, entity in enumerate(self.table.query("State eq @s and Expires le @now",
                                                        {"s": RESERVED, "now": stamp(now)})):
            if count >= limit:
                break
            by_partition.setdefault(str(entity["PartitionKey"]), []).append(grant_from(entity))
        for pk, grants in by_partition.items():
            with self.table.lock(pk):
                consumed, released, completed = self._settle_expired(pk, grants)
            report.consumed += consumed
            report.released += released
            report.batches.extend(completed)
        old = self.table.query("State ne @s and Expires le @old and RowKey ge @lo and RowKey lt @hi",
                               {"s": RESERVED, "old": stamp(now - retention), "lo": "g.", "hi": "g/"},
                               select=["PartitionKey", "RowKey"])
        for entity in old:
            if report.deleted >= limit:
                break
            self.table.delete(str(entity["PartitionKey"]), str(entity["RowKey"]))
            report.deleted += 1
        return report

    # -- inside ------------------------------------------------------------------------------------

    def _refuse(self, pk: str, profile: str, account: Account, over: _Over, known: Known, pending: list[GrantRow],
                now: datetime, day: str) -> QuotaExceeded:
        scope, limits, row, names = over
        held = [g.expires for g in pending if scope == "tenant" or g.caller == account.caller]
        quota = view(scope, profile, limits, known.get(row, (Counter(), None))[0], day)
        error = QuotaExceeded(quota, retry_after(names, now, min(held, default=None)), names)
        self.memory.remember((pk, row), error, now)
        return error

    def _already_reserved(self, pk: str, files: Sequence[Reservation]) -> bool:
        rows = [grant_row(f.upload_id) for f in files]
        return set(self.table.read(pk, rows)) == set(rows)

    def _commit(self, pk: str, account: Account, scopes: list[tuple[Scope, Limits, str]], known: Known, ask: Ask,
                files: Sequence[Reservation], day: str, batch: BatchRow | None) -> int | None:
        """One transaction: the counters and a grant row per file. ``None`` when committed, else the
        status of the lost race (409 or 412)."""
        updated: Known = {}
        operations: list[Any] = []
        for _, _, row in scopes:
            counter, etag = known.get(row, (Counter(), None))
            updated[row] = (counter.reserve(ask, day), etag)
            operations.append(write_counter(pk, row, updated[row]))
        tags = "".join(sorted("t" if row == TENANT_ROW else "c" for _, _, row in scopes))
        batch_id = batch.batch_id if batch is not None else ""
        operations.extend(("create", grant_entity(pk, GrantRow(f.upload_id, account.caller, f.size, day, f.expires,
                                                                f.blob, tags, batch=batch_id))) for f in files)
        if batch is not None:
            operations.append(("create", batch_entity(pk, batch)))
        results = self.table.submit(pk, operations)
        if isinstance(results, int):
            return results
        self.table.remember(pk, {**known, **{row: (state[0], str(results[i].get("etag")))
                                             for i, (row, state) in enumerate(updated.items())}})
        return None

    def _settle_expired(self, pk: str, grants: list[GrantRow]) -> tuple[int, int, list[BatchRow]]:
        """Settle grants whose window closed: consumed when their upload arrived, else released."""
        outcomes: dict[str, bool] = {}
        completed: list[BatchRow] = []

        def arrived(grant: GrantRow) -> Outcome:
            outcomes[grant.upload_id] = True if self._uploaded is None else self._uploaded(grant.blob)
            # arrived: its decision records its status in the batch; nothing arrived: the batch says why
            return Outcome(outcomes[grant.upload_id], None if outcomes[grant.upload_id] else EXPIRED)

        for start in range(0, len(grants), _SETTLE_CHUNK):
            chunk = grants[start:start + _SETTLE_CHUNK]
            completed.extend(self._settle(pk, [g.upload_id for g in chunk], {g.caller for g in chunk}, arrived)[1])
        self.memory.forget(pk)
        consumed = sum(outcomes.values())
        return consumed, len(outcomes) - consumed, completed

    def _settle(self, pk: str, upload_ids: list[str], callers: set[str],
                outcome: Callable[[GrantRow], Outcome]) -> tuple[int, list[BatchRow]]:
        """Settle the still-reserved grants among ``upload_ids``, and record each one's status in its batch,
        in one transaction (the caller holds the partition's lock); retried on fresh rows after a lost race.
        Returns how many grants it settled and the batches it completed."""
        rows = [grant_row(u) for u in upload_ids] + [f"c.{c}" for c in sorted(callers)] + [TENANT_ROW]
        decided: dict[str, Outcome] = {}  # asked once per grant, whatever the retries
        for attempt in range(MAX_ATTEMPTS):
            entities = self.table.read(pk, rows)
            grants = [grant_from(e) for r, e in entities.items() if r.startswith("g.")]
            batch_rows = sorted({batch_row(g.batch) for g in grants if g.batch})
            batches = {str(e["RowKey"]): batch_from(e) for e in self.table.read(pk, batch_rows).values()} \
                if batch_rows else {}
            original = dict(batches)
            now = self._clock()
            day = day_of(now)
            counters: Known = {r: (counter_from(e), etag_of(e)) for r, e in entities.items() if not r.startswith("g.")}
            changed: set[str] = set()
            operations: list[Any] = []
            settled = 0
            for grant in grants:
                if grant.upload_id not in decided and (grant.state == RESERVED or grant.batch):
                    decided[grant.upload_id] = outcome(grant)
                result = decided.get(grant.upload_id)
                if result is None:
                    continue
                if grant.state == RESERVED:
                    settled += 1
                    for row in (TENANT_ROW if tag == "t" else f"c.{grant.caller}" for tag in grant.scopes):
                        if row in counters:
                            counter, etag = counters[row]
                            used = max(grant.size, result.size or 0)  # more than declared arrived: all of it
                            counters[row] = (counter.settle(used, grant.granted_day, day,
                                                            consumed=result.consumed, held=grant.charge), etag)
                            changed.add(row)
                    done = replace(grant, state=CONSUMED if result.consumed else RELEASED)
                    operations.append(replace_if_unchanged(grant_entity(pk, done), grant.etag))
                key = batch_row(grant.batch)
                if grant.batch and result.status is not None and key in batches:
                    batches[key] = batches[key].decided(grant.upload_id, result.status, result.reason, now)
            touched = [b for k, b in batches.items() if b is not original[k]]
            operations.extend(write_counter(pk, row, counters[row]) for row in sorted(changed))
            operations.extend(replace_if_unchanged(batch_entity(pk, b), b.etag) for b in touched)
            if not operations:
                return 0, []
            if not isinstance(self.table.submit(pk, operations), int):
                self.table.forget(pk)  # the next grant reads the counters this wrote
                self.memory.forget(pk)
                newly = [b for b in touched if b.event == PENDING and original[batch_row(b.batch_id)].event != PENDING]
                return settled, newly
            self._sleep(jitter(attempt))
        raise busy()


def _scopes(account: Account, quota: ProfileQuota) -> list[tuple[Scope, Limits, str]]:
    rows = {"caller": account.caller_row, "tenant": TENANT_ROW}
    return [(scope, limits, rows[scope]) for scope, limits in quota.scopes()]


def _first_over(scopes: Iterable[tuple[Scope, Limits, str]], known: Known, ask: Ask, day: str) -> _Over | None:
    for scope, limits, row in scopes:
        names = binding(known.get(row, (Counter(), None))[0], limits, ask, day)
        if names:
            return scope, limits, row, names
    return None
