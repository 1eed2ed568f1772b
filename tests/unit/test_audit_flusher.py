"""The flusher's bounds, with an in-memory appender (the Azurite side: tests/integration/test_audit_store.py)."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from valet.audit.flusher import Flusher, _running, close_all


class Appends:
    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.times: list[float] = []
        self.fail = False

    def append(self, data: bytes) -> str:
        if self.fail:
            raise OSError("storage down")
        self.blocks.append(data)
        self.times.append(time.monotonic())
        return "blob"


def test_put_does_no_io_and_one_flush_appends_everything_as_one_block() -> None:
    store = Appends()
    flusher = Flusher(store, interval=60)
    for i in range(100):
        assert flusher.put(b"%d\n" % i)
    assert store.blocks == []
    assert flusher.flush() == 100 and len(store.blocks) == 1 and store.blocks[0].count(b"\n") == 100
    flusher.close()


def test_a_block_never_exceeds_the_batch_size() -> None:
    store = Appends()
    flusher = Flusher(store, interval=60, max_batch=100)
    for _ in range(25):
        flusher.put(b"x" * 9 + b"\n")
    assert [flusher.flush() for _ in range(4)] == [10, 10, 5, 0]
    assert all(len(block) <= 100 for block in store.blocks)
    flusher.close()


def test_a_failed_append_keeps_the_records_in_order_and_the_buffer_bounded() -> None:
    store = Appends()
    flusher = Flusher(store, interval=60, max_records=5)
    for i in range(7):
        flusher.put(b"%d\n" % i)
    assert flusher.dropped == 2
    store.fail = True
    with pytest.raises(OSError):
        flusher.flush()
    assert flusher.pending == 5 and flusher.failures == 1
    store.fail = False
    flusher.flush()
    assert store.blocks == [b"0\n1\n2\n3\n4\n"]
    flusher.close()


def test_the_thread_appends_at_most_once_per_interval() -> None:
    store = Appends()
    flusher = Flusher(store, interval=0.2)
    stop = time.monotonic() + 1.3
    while time.monotonic() < stop:
        flusher.put(b"r\n")
        time.sleep(0.005)
    flusher.close()
    gaps = [b - a for a, b in zip(store.times, store.times[1:-1], strict=False)]  # the last one is close()'s
    assert len(store.blocks) >= 4 and all(gap >= 0.15 for gap in gaps)
    assert sum(block.count(b"\n") for block in store.blocks) > 100


def flusher_threads() -> int:
    return sum(t.name == "valet-audit-flusher" and t.is_alive() for t in threading.enumerate())


def test_close_appends_what_is_left_and_stops_the_thread() -> None:
    before = flusher_threads()  # other tests' runtimes may have theirs
    store = Appends()
    flusher = Flusher(store, interval=30)
    flusher.put(b"last\n")
    assert flusher_threads() == before + 1
    flusher.close()
    assert store.blocks == [b"last\n"]
    assert flusher_threads() == before


def test_a_failing_store_is_tried_less_and_less_often_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    store = Appends()
    store.fail = True
    flusher = Flusher(store, interval=0.05)
    tries: list[float] = []
    original = store.append

    def counting(data: bytes) -> str:
        tries.append(time.monotonic())
        return original(data)

    store.append = counting  # type: ignore[method-assign]
    flusher.put(b"r\n")
    time.sleep(1.2)
    store.fail = False
    time.sleep(1.8)  # the next try after the backoff succeeds
    flusher.close()
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert len(tries) >= 3 and gaps[1] > gaps[0] * 1.5  # the wait grows
    assert store.blocks == [b"r\n"]
    failed = [r for r in caplog.records if "audit append failed" in r.getMessage()]
    assert len(failed) == 1


def test_close_all_closes_every_running_flusher_before_storage_goes_away() -> None:
    stores = [Appends(), Appends()]
    flushers = [Flusher(store, interval=30) for store in stores]
    for n, flusher in enumerate(flushers):
        flusher.put(b"record %d\n" % n)
    close_all()
    assert [store.blocks for store in stores] == [[b"record 0\n"], [b"record 1\n"]]
    assert not any(f in _running for f in flushers)  # closed: interpreter exit has nothing left to try
