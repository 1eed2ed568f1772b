"""Buffered appends for the grant side: records wait in memory and one background thread appends them.

:meth:`Flusher.put` never does I/O (a deque append under a lock), so the grant path stays at zero storage
requests. The thread wakes every ``interval`` seconds (1 s at least in the app) and appends everything
buffered as one block (several, one per wake-up, when more than 4 MiB waits), so an instance makes at
most one buffered append per interval.

What a crash loses: the records put since the last append that storage acknowledged, that is at most
``interval`` seconds of records plus those of the append in flight (about ``2 x interval``: 2 s with the
default); during a storage outage the buffer keeps up to ``max_records`` and refuses (counts and logs)
anything beyond, so a crash then loses up to ``max_records``; the thread then waits twice as long after each
failed append (up to 30 s) and logs once per streak. A clean shutdown (:meth:`close`, also run at
interpreter exit) flushes what is left. Every record carries its instance id and sequence number, so a
loss shows as a gap.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from typing import Protocol

log = logging.getLogger("valet.audit.flusher")

MAX_BATCH = 4 * 1024 * 1024
MAX_BACKOFF = 30.0  # seconds between tries while storage keeps refusing appends


class Appender(Protocol):
    def append(self, data: bytes) -> str: ...


class Line(Protocol):
    def line(self) -> bytes: ...


Item = bytes | Line  # records are serialised on the flusher's thread, not the caller's


class Flusher:
    def __init__(self, store: Appender, *, interval: float = 1.0, max_records: int = 10_000,
                 max_batch: int = MAX_BATCH) -> None:
        if interval <= 0 or max_records < 1:
            raise ValueError("interval and max_records must be positive")
        self._store = store
        self._interval = interval
        self._max_records = max_records
        self._max_batch = max_batch
        self._buffer: deque[Item] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0
        self.appends = 0
        self.failures = 0

    def put(self, item: Item) -> bool:
        """Buffer one record (its line, or an object whose ``line()`` makes it, later, on the flusher's
        thread); ``False`` (and counted) when the buffer is full. Never does I/O."""
        with self._lock:
            if len(self._buffer) >= self._max_records:
                self.dropped += 1
                return False
            self._buffer.append(item)
            if self._thread is None and not self._closed:
                self._start()
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self) -> int:
        """Append what is buffered, at most one block (``max_batch`` bytes); returns the records appended.
        A failed append puts the records back at the front of the buffer and raises."""
        with self._flush_lock:
            batch: list[Item] = []
            lines: list[bytes] = []
            size = 0
            while True:
                with self._lock:
                    if not self._buffer:
                        break
                    item = self._buffer.popleft()
                line = item if isinstance(item, bytes) else item.line()
                if lines and size + len(line) > self._max_batch:
                    with self._lock:
                        self._buffer.appendleft(item)  # the next block starts with it
                    break
                batch.append(item)
                lines.append(line)
                size += len(line)
            if not batch:
                return 0
            try:
                self._store.append(b"".join(lines))
            except Exception:
                with self._lock:
                    self._buffer.extendleft(reversed(batch))
                    overflow = len(self._buffer) - self._max_records
                    for _ in range(max(0, overflow)):
                        self._buffer.pop()  # the newest go: the buffer stays bounded
                        self.dropped += 1
                self.failures += 1
                raise
            self.appends += 1
            return len(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and append what is left (bounded by ``timeout`` and by the buffer)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        atexit.unregister(self.close)
        _running.discard(self)
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        for _ in range(64):
            try:
                if self.flush() == 0:
                    break
            except Exception as exc:  # noqa: BLE001 - shutdown: report and stop
                log.error("audit records lost at shutdown: %d (%s)", self.pending, type(exc).__name__)
                break

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="valet-audit-flusher", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        _running.add(self)

    def _run(self) -> None:
        reported = 0
        failing = 0  # consecutive failed appends: the wait doubles, up to MAX_BACKOFF, and one log line a streak
        while not self._wake.wait(min(self._interval * 2 ** failing, max(self._interval, MAX_BACKOFF))):
            try:
                self.flush()
                if failing:
                    log.warning("audit appends work again after %d failed tries", failing)
                failing = 0
            except Exception as exc:  # noqa: BLE001 - keep the records, try again later
                if not failing:
                    log.warning("audit append failed (%s); %d records kept, tried again with backoff",
                                type(exc).__name__, self.pending)
                failing = min(failing + 1, 16)
            if self.dropped != reported:
                log.error("audit buffer full: %d records refused so far", self.dropped)
                reported = self.dropped


_running: weakref.WeakSet[Flusher] = weakref.WeakSet()  # flushers whose thread runs (not closed yet)


def close_all(timeout: float = 10.0) -> None:
    """Close every running flusher (each appends what it holds): for a process that is about to lose its
    storage (a test session stopping its emulator), so the interpreter's exit does not try a dead endpoint."""
    for flusher in list(_running):
        flusher.close(timeout)
