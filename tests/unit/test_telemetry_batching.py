"""A grant's span and duration are made off the request thread (valet/telemetry/batching.py): nothing is
lost, times stay true, a reading never misses a finished grant, and a full queue never holds a request."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from tests.support.telemetry import recorded
from valet.grants.naming import new_upload_id
from valet.telemetry import instruments
from valet.telemetry.batching import Batcher

UPLOAD_ID = new_upload_id(datetime(2026, 12, 6, 23, 0, tzinfo=UTC), lambda n: bytes(range(7, n + 7)))


def test_the_request_thread_only_queues_the_span_and_the_duration() -> None:
    rec = recorded()
    t = rec.telemetry
    with t.grant() as grant:
        grant.upload_id, grant.profile = UPLOAD_ID, "images"
        time.sleep(0.02)
    assert list(rec.exporter.get_finished_spans()) == []  # not made on the request thread
    assert t._granted_batch.pending == 1
    spans = rec.spans()  # flushes first
    assert [s.name for s in spans] == ["valet.grant"]
    assert spans[0].end_time - spans[0].start_time >= 20_000_000  # its true start and end, not the flush's
    (duration,) = [p for name, _, p in rec.points() if name == "valet.grant.duration"]
    assert duration.count == 1 and duration.sum >= 0.02
    t.close()


def test_a_metric_collection_includes_every_grant_finished_before_it() -> None:
    rec = recorded()
    t = rec.telemetry
    for n in range(30):
        with t.grant() as grant:
            grant.upload_id, grant.profile = new_upload_id(datetime.now(UTC), lambda k, n=n: bytes([n + 1] * k)), "docs"
    assert rec.total("valet.grants", valet__profile="docs", valet__outcome="granted") == 30  # no flush by hand
    assert rec.total("valet.grant.duration", valet__outcome="granted") == 30
    t.close()


def test_the_background_thread_makes_them_within_its_interval() -> None:
    rec = recorded()
    t = rec.telemetry
    with t.grant() as grant:
        grant.upload_id = UPLOAD_ID
    deadline = time.monotonic() + 5
    while not rec.exporter.get_finished_spans() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [s.name for s in rec.exporter.get_finished_spans()] == ["valet.grant"]
    t.close()


def test_a_full_queue_drops_spans_but_still_counts_every_grant() -> None:
    rec = recorded()
    t = rec.telemetry
    t._granted_batch = Batcher(t._emit_granted, batch=2, capacity=2, interval=60)
    for _ in range(5):
        with t.grant() as grant:
            grant.profile = "images"
    assert t._granted_batch.dropped == 3
    assert rec.total("valet.grants", valet__profile="images", valet__outcome="granted") == 5  # exact
    assert rec.total("valet.grant.duration", valet__outcome="granted") == 2  # what was queued
    t.close()


def test_a_flush_waits_for_the_one_in_progress_and_a_bad_item_stops_nothing() -> None:
    seen: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def sink(item: int) -> None:
        if item == 0:
            entered.set()
            release.wait(5)
        if item == 1:
            raise ValueError("one bad item")
        seen.append(item)

    batcher: Batcher[int] = Batcher(sink, interval=60)
    for item in range(4):
        assert batcher.put(item)
    worker = threading.Thread(target=batcher.flush)
    worker.start()
    assert entered.wait(5)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (batcher.flush(), done.set()))
    waiter.start()
    assert not done.wait(0.2)  # the second flush waits for the first
    release.set()
    worker.join(5)
    waiter.join(5)
    assert done.is_set() and seen == [0, 2, 3] and batcher.pending == 0
    batcher.close()
    assert not batcher.put(9)  # closed: refused, counted
    assert batcher.dropped == 1


def test_failures_are_logged_once_per_flush(caplog: pytest.LogCaptureFixture) -> None:
    def sink(item: int) -> None:
        raise RuntimeError("exporter gone")

    batcher: Batcher[int] = Batcher(sink, interval=60)
    for item in range(50):
        batcher.put(item)
    with caplog.at_level("WARNING", logger="valet.telemetry"):
        assert batcher.flush() == 50
    assert [r.getMessage() for r in caplog.records] == ["telemetry: 50 of 50 items not recorded (RuntimeError)"]
    batcher.close()


def test_close_hands_the_sink_what_is_left() -> None:
    seen: list[str] = []
    batcher: Batcher[str] = Batcher(seen.append, interval=60)
    batcher.put("a")
    batcher.put("b")
    batcher.close()
    assert seen == ["a", "b"]


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"batch": 0}, {"capacity": 1, "batch": 2}])
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Batcher(lambda item: None, **kwargs)  # type: ignore[arg-type]


def test_telemetry_off_queues_nothing() -> None:
    off = instruments.Telemetry()
    with off.grant() as grant:
        grant.upload_id = UPLOAD_ID
    assert off._granted_batch.pending == 0


def test_a_sampler_that_adds_to_the_attributes_it_is_given_changes_no_later_span() -> None:
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class Adding(Sampler):  # as the distro's fixed-percentage sampler does with its sample rate
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,  # type: ignore[no-untyped-def]
                          trace_state=None):
            if attributes is not None:
                attributes["added"] = len(attributes)  # type: ignore[index]
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "Adding"

    rec = recorded(Adding())
    t = rec.telemetry
    for _ in range(3):
        with t.grant() as grant:
            grant.upload_id, grant.profile = new_upload_id(datetime.now(UTC), lambda k: bytes([9] * k)), "images"
    assert [dict(s.attributes or {}) for s in rec.spans()] == [
        {"valet.profile": "images", "valet.outcome": "granted", "added": 2}] * 3
    t.close()
