"""Telemetry made in batches, off the request thread.

A grant's span and its duration in the histogram cost the OpenTelemetry SDK tens of microseconds when they
are made on the request thread, between the grant's own work, with the SDK's code and data out of the CPU's
caches (``bench/grants.py --telemetry`` measures it). The request thread instead appends one record to a
bounded queue (:meth:`Batcher.put`, no lock, no I/O); a background thread hands what waits to the sink every
``interval`` seconds, or as soon as ``batch`` items wait, one after another while the SDK's code is warm.

What it changes, and what it does not:

* Spans keep their true start and end times (the sink passes both), and their parents and links: the
  request's context travels in the tuple.
* Anything that reads telemetry flushes first: a metric collection (the grants counter's callback calls
  :meth:`Batcher.flush`) and :meth:`valet.telemetry.Telemetry.flush`, so a reading never misses a grant
  that finished before it.
* A crash loses what waits (at most ``interval`` seconds of grants), as the span processor's own batch
  (5 seconds by default) already does.
* When the queue is full (the thread cannot keep up), new items are dropped and counted
  (:attr:`Batcher.dropped`; :meth:`Batcher.put` says so, and the grants counter then counts the grant on the
  request thread, so counts stay exact), and the thread logs it once per streak: telemetry never holds a
  request up.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("valet.telemetry")

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, sink: Callable[[T], None], *, interval: float = 0.5, batch: int = 256,
                 capacity: int = 16_384, name: str = "valet-telemetry") -> None:
        if interval <= 0 or batch < 1 or capacity < batch:
            raise ValueError("interval and batch must be positive and capacity at least batch")
        self._sink = sink
        self._interval = interval
        self._batch = batch
        self._capacity = capacity
        self._name = name
        self._queue: deque[T] = deque()
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0
        self._reported = 0

    def put(self, item: T) -> bool:
        """Queue ``item`` for the sink (any thread; O(1), no lock once the thread runs). ``False`` when the
        queue is full or closed: the item is dropped, and counted."""
        queue = self._queue
        if len(queue) >= self._capacity or self._closed:
            self.dropped += 1  # a lost update under a race only miscounts a drop, never an item
            return False
        queue.append(item)
        if self._thread is None:
            self._start()
        elif len(queue) >= self._batch and not self._wake.is_set():
            self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._queue)

    def flush(self) -> int:
        """Hand everything waiting to the sink now; returns how many items it handled. When it returns, every
        item put before the call has reached the sink (a flush running on another thread is waited for)."""
        handled = failed = 0
        failure = ""
        with self._flush_lock:
            queue, sink = self._queue, self._sink
            while queue:
                item = queue.popleft()
                try:
                    sink(item)
                except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others
                    failed, failure = failed + 1, type(exc).__name__
                handled += 1
        if failed:  # one line per flush, not one per item
            log.warning("telemetry: %d of %d items not recorded (%s)", failed, handled, failure)
        return handled

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and hand the sink what is left."""
        self._closed = True
        atexit.unregister(self.close)
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.flush()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            thread.start()
            self._thread = thread
            atexit.register(self.close)  # before the SDK providers' own shutdown (atexit runs in reverse)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()
            if self.dropped != self._reported:
                log.warning("telemetry: %d items dropped, the queue was full", self.dropped - self._reported)
                self._reported = self.dropped
