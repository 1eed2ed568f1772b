"""Batches in the quota table (Azurite): one transaction for the batch, its grant rows and the counters;
each file's outcome recorded with its settlement; the batch completes once, whatever the duplicate
deliveries; an event its sender never marked sent is owed after a grace period; lookups by caller."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.conftest import StorageEndpoint
from tests.support.quota import Clock, new_table_name, table_client
from valet.quotas import Account, Limits, ProfileQuota, QuotaStore, Reservation
from valet.quotas.batches import BatchLedger, BatchRow
from valet.quotas.store import Outcome

pytestmark = pytest.mark.azurite

ALICE = Account("tenant-a", "u-alice")
MALLORY = Account("tenant-a", "u-mallory")
QUOTA = ProfileQuota("images", caller=Limits(files_per_day=10, pending_files=5))


@pytest.fixture
def store(storage_endpoint: StorageEndpoint) -> Iterator[tuple[QuotaStore, Clock, set[str]]]:
    client = table_client(storage_endpoint.blob_url, storage_endpoint.table_url, storage_endpoint.ca_bundle,
                          new_table_name())
    client.create_table()
    clock, arrived = Clock(), set()
    yield QuotaStore(client, clock=clock, uploaded=arrived.__contains__), clock, arrived
    client.delete_table()
    client.close()


def batch_of(clock: Clock, n: int, window: timedelta = timedelta(minutes=10)) -> tuple[BatchRow, list[Reservation]]:
    files = [Reservation(str(uuid.uuid4()), 10 * (i + 1), clock() + window, f"tenant-a/u-alice/f{i}.png")
             for i in range(n)]
    row = BatchRow(str(uuid.uuid4()), "caller:alice", ALICE.caller, tuple(f.upload_id for f in files),
                   clock() + window)
    return row, files


def test_a_batch_completes_once_whatever_the_duplicate_deliveries(store: tuple[QuotaStore, Clock, set[str]]) -> None:
    s, clock, _ = store
    ledger = BatchLedger(s.table, clock=clock)
    row, files = batch_of(clock, 3)
    s.reserve(ALICE, QUOTA, files, batch=row)
    assert s.usage(ALICE, QUOTA)[0]["reserved"] == {"filesPerDay": 3, "pendingFiles": 3}
    found = ledger.find(ALICE, row.batch_id)
    assert found is not None and found[1].document()["status"] == "pending"
    assert ledger.find(MALLORY, row.batch_id) is None  # another caller's batch looks like none

    assert s.decide(ALICE, "images", files[0].upload_id, Outcome(True, "accepted")) == (1, [])
    assert s.decide(ALICE, "images", files[1].upload_id, Outcome(True, "quarantined", "size_mismatch")) == (1, [])
    settled, completed = s.decide(ALICE, "images", files[2].upload_id, Outcome(True, "accepted"))
    assert settled == 1 and [b.batch_id for b in completed] == [row.batch_id]
    assert completed[0].event_message() == {
        "type": "batch", "batchId": row.batch_id, "caller": "caller:alice", "completedAt": "2026-12-06T20:00:00Z",
        "uploads": [{"uploadId": files[0].upload_id, "status": "accepted"},
                    {"uploadId": files[1].upload_id, "status": "quarantined"},
                    {"uploadId": files[2].upload_id, "status": "accepted"}]}
    for f in files:  # duplicate deliveries of every decision: nothing settles, nothing completes again
        assert s.decide(ALICE, "images", f.upload_id, Outcome(True, "accepted")) == (0, [])
    pk, stored = ledger.find(ALICE, row.batch_id) or ("", row)
    assert stored.document() == {"batchId": row.batch_id, "status": "complete", "uploads": [
        {"uploadId": files[0].upload_id, "status": "accepted"},
        {"uploadId": files[1].upload_id, "status": "quarantined", "reason": "size_mismatch"},
        {"uploadId": files[2].upload_id, "status": "accepted"}]}
    clock.advance(minutes=5)
    assert [b.batch_id for _, b in ledger.owed(timedelta(minutes=1))] == [row.batch_id]  # never marked sent
    ledger.event_sent(pk, stored)
    assert ledger.owed(timedelta(minutes=1)) == []
    assert s.usage(ALICE, QUOTA)[0]["used"] == {"filesPerDay": 3}


def test_cancelled_and_expired_files_complete_a_batch_too(store: tuple[QuotaStore, Clock, set[str]]) -> None:
    s, clock, arrived = store
    row, files = batch_of(clock, 3, window=timedelta(minutes=5))
    s.reserve(ALICE, QUOTA, files, batch=row)
    assert s.settle(ALICE, "images", files[0].upload_id, consumed=False)  # cancelled
    arrived.add(files[1].blob)  # uploaded in time, decided after the window closed
    clock.advance(minutes=6)
    report = s.sweep()
    assert (report.consumed, report.released, report.batches) == (1, 1, [])  # files[1] awaits its decision
    settled, completed = s.decide(ALICE, "images", files[1].upload_id, Outcome(True, "accepted"))
    assert settled == 0 and [b.batch_id for b in completed] == [row.batch_id]  # consumed already; status now
    statuses = [u["status"] for u in completed[0].document()["uploads"]]
    assert statuses == ["cancelled", "accepted", "expired"]


def test_a_batch_without_quota_stores_its_rows_but_no_counters(store: tuple[QuotaStore, Clock, set[str]]) -> None:
    s, clock, _ = store
    row, files = batch_of(clock, 2)
    free = ProfileQuota("documents")
    s.reserve(ALICE, free, files, batch=row)
    assert s.usage(ALICE, free) == []
    ledger = BatchLedger(s.table, clock=clock)
    grant = ledger.find_grant(ALICE, files[1].upload_id)
    assert grant is not None and grant.blob == files[1].blob and grant.batch == row.batch_id and grant.scopes == ""
    assert ledger.find_grant(MALLORY, files[1].upload_id) is None
    assert not any(str(e["RowKey"]).startswith("c.") for e in s.table.client.list_entities())


def test_a_refused_batch_writes_nothing(store: tuple[QuotaStore, Clock, set[str]]) -> None:
    from valet.quotas import QuotaExceeded

    s, clock, _ = store
    row, files = batch_of(clock, 6)  # pendingFiles is 5
    with pytest.raises(QuotaExceeded):
        s.reserve(ALICE, QUOTA, files, batch=row)
    assert list(s.table.client.list_entities()) == []


def test_the_largest_batch_fits_one_transaction_with_both_counters(store: tuple[QuotaStore, Clock, set[str]]) -> None:
    from valet.quotas.limits import MAX_BATCH

    s, clock, _ = store
    both = ProfileQuota("images", caller=Limits(files_per_day=500), tenant=Limits(files_per_day=500))
    row, files = batch_of(clock, MAX_BATCH)
    s.reserve(ALICE, both, files, batch=row)
    assert [q["reserved"] for q in s.usage(ALICE, both)] == [{"filesPerDay": MAX_BATCH}] * 2
