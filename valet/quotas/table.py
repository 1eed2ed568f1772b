"""The Table primitives the quota store is made of: point reads in one partition, the pending grants of a
partition, one transaction, and what this process knows of each partition (counters and their ETags).

Every SDK error becomes ``503 quota_store_unavailable`` here; a transaction that lost a race (409 or 412:
nothing of it was applied) is an answer, returned as its status, and drops what was known of the partition.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from valet.errors import ServiceUnavailable
from valet.quotas.rows import RESERVED, GrantRow, counter_entity, counter_from, etag_of, grant_from
from valet.quotas.rules import Counter

Known = dict[str, tuple[Counter, str | None]]  # row key -> (counter, ETag; None: the row does not exist)
MAX_PARTITIONS = 10_000
_CONFLICT = (409, 412)
_ROWS_PER_READ = 14  # the Table service allows 15 comparisons in a filter; one is the partition key


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The quota store is unavailable right now.", code="quota_store_unavailable",
                              retry_after=2)


def busy() -> ServiceUnavailable:
    return ServiceUnavailable("The quota store is busy; try again.", code="quota_store_busy", retry_after=1)


class QuotaTable:
    def __init__(self, table: TableClient) -> None:
        self.client = table
        self._known: dict[str, Known] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, pk: str) -> threading.Lock:
        """The in-process lock of a partition: its grants take turns instead of making each other stale."""
        with self._guard:
            if len(self._locks) > MAX_PARTITIONS:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
                self._known.clear()
            return self._locks.setdefault(pk, threading.Lock())

    def known(self, pk: str) -> Known | None:
        return self._known.get(pk)

    def remember(self, pk: str, known: Known) -> None:
        self._known[pk] = known

    def forget(self, pk: str) -> None:
        self._known.pop(pk, None)

    def read(self, pk: str, rows: list[str]) -> dict[str, Any]:
        """The entities of ``rows`` in partition ``pk`` (absent rows are left out), one query per 14 rows."""
        found: dict[str, Any] = {}
        for start in range(0, len(rows), _ROWS_PER_READ):
            names = {f"r{i}": row for i, row in enumerate(rows[start:start + _ROWS_PER_READ])}
            clause = " or ".join(f"RowKey eq @{name}" for name in names)
            try:
                for entity in self.client.query_entities(f"PartitionKey eq @pk and ( {clause} )",
                                                         parameters={"pk": pk, **names}):
                    found[str(entity["RowKey"])] = entity
            except AzureError as exc:
                raise unavailable() from exc
        return found

    def read_counters(self, pk: str, rows: list[str]) -> Known:
        entities = self.read(pk, rows)
        known: Known = {row: (Counter(), None) for row in rows}
        known.update({row: (counter_from(e), etag_of(e)) for row, e in entities.items()})
        return known

    def pending(self, pk: str) -> list[GrantRow]:
        """The grants of a partition that still hold a reservation."""
        try:
            return [grant_from(e) for e in self.client.query_entities(
                "PartitionKey eq @pk and State eq @s", parameters={"pk": pk, "s": RESERVED})]
        except AzureError as exc:
            raise unavailable() from exc

    def query(self, query: str, parameters: Mapping[str, str], **kwargs: Any) -> Iterator[Any]:
        """A cross-partition query (the sweep's); SDK errors become 503 as they surface."""
        try:
            yield from self.client.query_entities(query, parameters=dict(parameters), **kwargs)
        except AzureError as exc:
            raise unavailable() from exc

    def delete(self, pk: str, row: str) -> None:
        try:
            self.client.delete_entity(pk, row)
        except AzureError as exc:
            raise unavailable() from exc

    def submit(self, pk: str, operations: list[Any]) -> list[Any] | int:
        """The transaction's per-operation results, or the status (409/412) when it lost a race."""
        try:
            return list(self.client.submit_transaction(operations))
        except TableTransactionError as exc:
            if exc.status_code in _CONFLICT:
                self.forget(pk)
                return int(exc.status_code or 409)
            raise unavailable() from exc
        except ResourceExistsError:
            self.forget(pk)
            return 409
        except AzureError as exc:
            raise unavailable() from exc


def write_counter(pk: str, row: str, state: tuple[Counter, str | None]) -> Any:
    """The transaction operation that writes a counter: create it, or replace it if its ETag still holds."""
    counter, etag = state
    entity = counter_entity(pk, row, counter)
    return ("create", entity) if etag is None else replace_if_unchanged(entity, etag)


def replace_if_unchanged(entity: dict[str, Any], etag: str | None) -> Any:
    """The transaction operation that replaces an entity only if its ETag still holds (412 otherwise)."""
    return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag,
                               "match_condition": MatchConditions.IfNotModified})


def jitter(attempt: int) -> float:
    return random.uniform(0, min(0.05, 0.002 * (attempt + 1)))  # noqa: S311 - backoff jitter, not a secret
