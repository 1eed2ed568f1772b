"""The quota store against Azurite's Table service: one transaction per uncontended grant, the stale-ETag
path, caller and tenant counted together, consume / release / expiry, the sweep, and races between
stores that share nothing but the table."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from tests.conftest import StorageEndpoint
from tests.support.quota import Clock, new_table_name, table_client
from valet.quotas import Account, Limits, ProfileQuota, QuotaExceeded, QuotaStore, Reservation
from valet.quotas.rows import CONSUMED, RELEASED, RESERVED
from valet.storage import RequestCounter

pytestmark = pytest.mark.azurite

ALICE = Account("tenant-a", "u-alice")
BOB = Account("tenant-a", "u-bob")
CAROL = Account("tenant-b", "u-carol")


@pytest.fixture
def table(storage_endpoint: StorageEndpoint) -> Iterator[tuple[StorageEndpoint, str]]:
    name = new_table_name()
    client = table_client(storage_endpoint.blob_url, storage_endpoint.table_url, storage_endpoint.ca_bundle, name)
    client.create_table()
    yield storage_endpoint, name
    client.delete_table()
    client.close()


def store(table: tuple[StorageEndpoint, str], clock: Clock, counter: RequestCounter | None = None,
          uploaded: set[str] | None = None) -> QuotaStore:
    endpoint, name = table
    client = table_client(endpoint.blob_url, endpoint.table_url, endpoint.ca_bundle, name, counter)
    return QuotaStore(client, clock=clock, uploaded=None if uploaded is None else uploaded.__contains__)


def files(clock: Clock, *sizes: int, window: timedelta = timedelta(minutes=10), prefix: str = "u") -> list[Reservation]:
    import uuid
    out = []
    for size in sizes:
        upload_id = f"{prefix}{uuid.uuid4()}"
        out.append(Reservation(upload_id, size, clock() + window, f"tenant-a/u-x/{upload_id}.png"))
    return out


QUOTA = ProfileQuota("images", caller=Limits(bytes_per_day=1000, files_per_day=5, pending_files=3),
                     tenant=Limits(files_per_day=8))


def test_azurite_honours_etags_transactions_and_duplicate_inserts(table: tuple[StorageEndpoint, str]) -> None:
    """The three facts the store stands on (platform facts, re-checked here on every run)."""
    endpoint, name = table
    client: TableClient = table_client(endpoint.blob_url, endpoint.table_url, endpoint.ca_bundle, name)
    client.create_entity({"PartitionKey": "p", "RowKey": "a", "N": 1})
    stale = client.get_entity("p", "a").metadata["etag"]
    client.update_entity({"PartitionKey": "p", "RowKey": "a", "N": 2}, mode=UpdateMode.REPLACE)
    with pytest.raises(HttpResponseError) as single:
        client.update_entity({"PartitionKey": "p", "RowKey": "a", "N": 3}, mode=UpdateMode.REPLACE, etag=stale,
                             match_condition=MatchConditions.IfNotModified)
    assert single.value.status_code == 412
    with pytest.raises(TableTransactionError) as whole:
        client.submit_transaction([("create", {"PartitionKey": "p", "RowKey": "b"}),
                                   ("update", {"PartitionKey": "p", "RowKey": "a", "N": 4},
                                    {"mode": UpdateMode.REPLACE, "etag": stale,
                                     "match_condition": MatchConditions.IfNotModified})])
    assert whole.value.status_code == 412
    assert [e["RowKey"] for e in client.list_entities()] == ["a"]  # nothing of it was applied: no "b"
    assert client.get_entity("p", "a")["N"] == 2
    with pytest.raises(ResourceExistsError):
        client.create_entity({"PartitionKey": "p", "RowKey": "a"})
    client.close()


def test_an_uncontended_grant_is_one_transaction(table: tuple[StorageEndpoint, str]) -> None:
    clock, counter = Clock(), RequestCounter()
    s = store(table, clock, counter)
    s.reserve(ALICE, QUOTA, files(clock, 10))
    assert counter.count == 2  # first grant of the partition in this process: one read, one transaction
    for _ in range(2):
        before = counter.count
        s.reserve(ALICE, QUOTA, files(clock, 10))
        assert counter.count - before == 1
    usage = {q["scope"]: q for q in s.usage(ALICE, QUOTA)}
    assert usage["caller"]["reserved"] == {"bytesPerDay": 30, "filesPerDay": 3, "pendingFiles": 3}
    assert usage["tenant"]["reserved"] == {"filesPerDay": 3} and usage["tenant"]["remaining"] == {"filesPerDay": 5}


def test_a_stale_etag_is_refused_and_the_grant_decides_again_on_fresh_rows(table: tuple[StorageEndpoint, str]) -> None:
    clock, counter = Clock(), RequestCounter()
    quota = ProfileQuota("images", caller=Limits(files_per_day=2))
    a, b = store(table, clock, counter), store(table, clock)
    a.reserve(ALICE, quota, files(clock, 1))   # a caches the counter and its ETag
    b.reserve(ALICE, quota, files(clock, 1))   # another instance: a's ETag is stale now
    before = counter.count
    with pytest.raises(QuotaExceeded) as refused:
        a.reserve(ALICE, quota, files(clock, 1))
    # the stale transaction (412), a fresh read, then the refusal's read of the pending grants
    assert counter.count - before == 3
    assert refused.value.quota["used"] == {"filesPerDay": 0}
    assert refused.value.quota["reserved"] == {"filesPerDay": 2} and refused.value.over == ("filesPerDay",)
    assert int(refused.value.headers["Retry-After"]) == 4 * 3600  # 20:00 -> midnight UTC


def test_caller_and_tenant_counters_change_together(table: tuple[StorageEndpoint, str]) -> None:
    clock = Clock()
    quota = ProfileQuota("images", caller=Limits(files_per_day=3), tenant=Limits(files_per_day=4))
    s = store(table, clock)
    s.reserve(ALICE, quota, files(clock, 1, 1, 1))
    with pytest.raises(QuotaExceeded) as caller_full:
        s.reserve(ALICE, quota, files(clock, 1))
    assert caller_full.value.quota["scope"] == "caller"
    s.reserve(BOB, quota, files(clock, 1))
    with pytest.raises(QuotaExceeded) as tenant_full:
        store(table, clock).reserve(BOB, quota, files(clock, 1))  # another instance, fresh rows
    assert tenant_full.value.quota["scope"] == "tenant" and tenant_full.value.quota["reserved"] == {"filesPerDay": 4}
    s.reserve(CAROL, quota, files(clock, 1))  # another tenant is its own partition
    bob = {q["scope"]: q["remaining"] for q in s.usage(BOB, quota)}
    assert bob == {"caller": {"filesPerDay": 2}, "tenant": {"filesPerDay": 0}}


def test_a_batch_is_reserved_all_or_nothing(table: tuple[StorageEndpoint, str]) -> None:
    clock = Clock()
    s = store(table, clock)
    with pytest.raises(QuotaExceeded):
        s.reserve(ALICE, QUOTA, files(clock, 400, 400, 400))  # 1,200 bytes > 1,000
    assert s.usage(ALICE, QUOTA)[0]["reserved"] == {"bytesPerDay": 0, "filesPerDay": 0, "pendingFiles": 0}
    batch = files(clock, 400, 400, 200)
    s.reserve(ALICE, QUOTA, batch)
    assert all(s.grant(ALICE, "images", f.upload_id) is not None for f in batch)
    assert s.usage(ALICE, QUOTA)[0]["remaining"] == {"bytesPerDay": 0, "filesPerDay": 2, "pendingFiles": 0}


def test_consume_and_release_settle_once(table: tuple[StorageEndpoint, str]) -> None:
    clock = Clock()
    s = store(table, clock)
    uploaded, cancelled = files(clock, 300, 200)
    s.reserve(ALICE, QUOTA, [uploaded])
    s.reserve(ALICE, QUOTA, [cancelled])
    assert s.settle(ALICE, "images", uploaded.upload_id, consumed=True)
    assert not s.settle(ALICE, "images", uploaded.upload_id, consumed=True)  # a duplicate delivery
    assert s.settle(ALICE, "images", cancelled.upload_id, consumed=False)
    assert not s.settle(ALICE, "images", cancelled.upload_id, consumed=True)
    assert not s.settle(ALICE, "images", "no-such-upload", consumed=True)
    caller = s.usage(ALICE, QUOTA)[0]
    assert caller["used"] == {"bytesPerDay": 300, "filesPerDay": 1}
    assert caller["reserved"] == {"bytesPerDay": 0, "filesPerDay": 0, "pendingFiles": 0}
    assert s.usage(ALICE, QUOTA)[1]["used"] == {"filesPerDay": 1}
    row = s.grant(ALICE, "images", uploaded.upload_id)
    assert row is not None and row.state == CONSUMED and row.size == 300 and row.blob == uploaded.blob
    assert (s.grant(ALICE, "images", cancelled.upload_id) or row).state == RELEASED


def test_a_crash_between_reservation_and_response_is_freed_after_the_window(table: tuple[StorageEndpoint, str]) -> None:
    clock = Clock()
    quota = ProfileQuota("images", caller=Limits(pending_files=1))
    s = store(table, clock, uploaded=set())
    s.reserve(ALICE, quota, files(clock, 5, window=timedelta(minutes=30)))  # ... and the instance dies here
    restarted = store(table, clock, uploaded=set())
    with pytest.raises(QuotaExceeded) as refused:
        restarted.reserve(ALICE, quota, files(clock, 5))
    assert refused.value.over == ("pendingFiles",) and refused.value.headers["Retry-After"] == "1800"
    clock.advance(minutes=30)
    other = store(table, clock, uploaded=set())  # no memory of the refusal
    other.reserve(ALICE, quota, files(clock, 5))  # the expired reservation was released on the way
    assert other.usage(ALICE, quota)[0]["reserved"] == {"pendingFiles": 1}


def test_an_expired_grant_whose_upload_arrived_is_consumed_not_released(table: tuple[StorageEndpoint, str]) -> None:
    clock = Clock()
    quota = ProfileQuota("images", caller=Limits(bytes_per_day=100, pending_files=1))
    arrived: set[str] = set()
    s = store(table, clock, uploaded=arrived)
    first = files(clock, 60, window=timedelta(minutes=5))
    s.reserve(ALICE, quota, first)
    arrived.add(first[0].blob)  # uploaded in time, not decided yet when the window closed
    clock.advance(minutes=6)
    with pytest.raises(QuotaExceeded) as refused:
        s.reserve(ALICE, quota, files(clock, 60))
    assert refused.value.over == ("bytesPerDay",)  # pending was freed; the 60 bytes stay used
    assert s.usage(ALICE, quota)[0]["used"] == {"bytesPerDay": 60}
    assert not s.settle(ALICE, "images", first[0].upload_id, consumed=True)  # the late decision: nothing twice


def test_the_sweep_settles_expired_grants_and_deletes_old_rows(table: tuple[StorageEndpoint, str]) -> None:
    clock = Clock()
    arrived: set[str] = set()
    s = store(table, clock, uploaded=arrived)
    kept, gone, live = files(clock, 10, 20, 30, window=timedelta(minutes=1))
    s.reserve(ALICE, QUOTA, [kept])
    s.reserve(BOB, QUOTA, [gone])
    s.reserve(ALICE, QUOTA, [Reservation(live.upload_id, 30, clock() + timedelta(hours=1), live.blob)])
    arrived.add(kept.blob)
    clock.advance(minutes=2)
    report = s.sweep()
    assert (report.consumed, report.released, report.deleted) == (1, 1, 0)
    assert (s.grant(ALICE, "images", kept.upload_id) or kept).state == CONSUMED  # type: ignore[union-attr]
    assert (s.grant(BOB, "images", gone.upload_id) or gone).state == RELEASED  # type: ignore[union-attr]
    assert (s.grant(ALICE, "images", live.upload_id) or live).state == RESERVED  # type: ignore[union-attr]
    assert s.usage(BOB, QUOTA)[0]["reserved"] == {"bytesPerDay": 0, "filesPerDay": 0, "pendingFiles": 0}
    assert s.usage(ALICE, QUOTA)[0]["used"] == {"bytesPerDay": 10, "filesPerDay": 1}
    assert s.sweep().consumed == 0  # settled once
    clock.advance(days=3)
    report = s.sweep()
    # live expired meanwhile and is released; then all three rows are older than the retention and go
    assert report.released == 1 and report.deleted == 3
    assert all(s.grant(who, "images", f.upload_id) is None for who, f in ((ALICE, kept), (BOB, gone), (ALICE, live)))


def test_a_flood_of_refusals_costs_no_storage_request(table: tuple[StorageEndpoint, str]) -> None:
    clock, counter = Clock(), RequestCounter()
    quota = ProfileQuota("images", caller=Limits(files_per_day=1))
    s = store(table, clock, counter)
    s.reserve(ALICE, quota, files(clock, 1))
    with pytest.raises(QuotaExceeded):
        s.reserve(ALICE, quota, files(clock, 1))
    before = counter.count
    for _ in range(200):
        with pytest.raises(QuotaExceeded) as again:
            s.reserve(ALICE, quota, files(clock, 1))
    assert counter.count == before and again.value.quota["remaining"] == {"filesPerDay": 0}
    clock.advance(hours=4)  # past Retry-After (midnight): the store decides again, on a new day
    s.reserve(ALICE, quota, files(clock, 1))
    assert counter.count > before


def test_stores_racing_on_one_table_never_grant_one_file_over(table: tuple[StorageEndpoint, str]) -> None:
    """Three stores (as three instances: no shared memory) and 24 threads race 150 grants at a limit of 20."""
    clock = Clock()
    quota = ProfileQuota("images", caller=Limits(files_per_day=20, bytes_per_day=10**6), tenant=Limits(pending_files=30))
    stores = [store(table, clock) for _ in range(3)]
    granted, refused, failed = [], [], []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            stores[i % 3].reserve(ALICE, quota, files(clock, 7))
            outcome = granted
        except QuotaExceeded:
            outcome = refused
        except Exception as exc:  # noqa: BLE001 - counted, and the assertion below shows them
            outcome = failed
            exc_text = repr(exc)
            with lock:
                failed.append(exc_text)
            return
        with lock:
            outcome.append(i)

    with ThreadPoolExecutor(24) as pool:
        list(pool.map(one, range(150)))
    assert failed == [] and len(granted) == 20 and len(refused) == 130
    usage = {q["scope"]: q for q in stores[0].usage(ALICE, quota)}
    assert usage["caller"]["reserved"] == {"bytesPerDay": 140, "filesPerDay": 20}
    assert usage["tenant"]["reserved"] == {"pendingFiles": 20}


def test_processes_racing_on_one_table_never_grant_one_file_or_byte_over(table: tuple[StorageEndpoint, str]) -> None:
    """Four processes (separate interpreters, as separate instances), 8 threads each, 300 grants at a
    caller limit of 23 files and a tenant limit of 230 bytes (10 bytes a grant): exactly 23 granted."""
    import json
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    endpoint, name = table
    args = {"blob_url": endpoint.blob_url, "table_url": endpoint.table_url, "ca": endpoint.ca_bundle, "table": name,
            "caller": {"files_per_day": 23}, "tenant": {"bytes_per_day": 235}, "account": ["tenant-r", "u-racer"],
            "size": 10, "threads": 8, "grants": 75, "start": time.time() + 4}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.support.quota_racer", json.dumps(args)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["failed"] for r in results) == 0, results
    assert sum(r["granted"] for r in results) == 23 and sum(r["refused"] for r in results) == 300 - 23, results
    from datetime import UTC, datetime

    check = store(table, Clock(datetime.now(UTC)))  # the racers used the real clock
    usage = {q["scope"]: q for q in check.usage(Account("tenant-r", "u-racer"),
                                                ProfileQuota("images", caller=Limits(files_per_day=23),
                                                             tenant=Limits(bytes_per_day=235)))}
    assert usage["caller"]["reserved"] == {"filesPerDay": 23} and usage["tenant"]["reserved"] == {"bytesPerDay": 230}


def test_repeating_a_committed_reservation_reserves_nothing_twice(table: tuple[StorageEndpoint, str]) -> None:
    """A grant retried with the same upload ids (an idempotent retry, or a crash after the commit)."""
    half = files(Clock(), 1)
    s0 = store(table, Clock())
    s0.reserve(BOB, QUOTA, half, repeat=True)  # never reserved before: reserved now
    assert s0.usage(BOB, QUOTA)[0]["reserved"]["pendingFiles"] == 1
    clock = Clock()
    s = store(table, clock)
    batch = files(clock, 100, 200)
    s.reserve(ALICE, QUOTA, batch)
    counter = RequestCounter()
    store(table, clock, counter).reserve(ALICE, QUOTA, batch, repeat=True)  # another instance: one read
    assert counter.count == 1
    s.reserve(ALICE, QUOTA, batch, repeat=True)
    with pytest.raises(QuotaExceeded):  # the same files as new grants would be over pendingFiles (3)
        s.reserve(ALICE, QUOTA, batch)
    assert s.usage(ALICE, QUOTA)[0]["reserved"] == {"bytesPerDay": 300, "filesPerDay": 2, "pendingFiles": 2}
