"""In-process memory of quota refusals: a flood of refused requests costs no storage request.

A scope (a caller's or a tenant's counter) refused for quota is remembered with what its refusal showed
as remaining, until its ``Retry-After``. Another ask in that time is refused here, without the store, if
it would not fit what remained; an ask that would fit (a smaller file) still goes to the store, which
decides. So the memory can only refuse early, never grant: it cannot take a scope over a limit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from valet.quotas.rules import Ask, QuotaExceeded, fits_remaining

MAX_REMEMBERED = 10_000


@dataclass(frozen=True)
class _Refusal:
    error: QuotaExceeded
    until: datetime


class RefusalMemory:
    def __init__(self, max_entries: int = MAX_REMEMBERED) -> None:
        self._refused: dict[tuple[str, str], _Refusal] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def recall(self, key: tuple[str, str], ask: Ask, now: datetime) -> QuotaExceeded | None:
        """A refusal for ``ask`` from memory, with its ``Retry-After`` counted down, or ``None``."""
        with self._lock:
            refusal = self._refused.get(key)
            if refusal is None:
                return None
            if now >= refusal.until:
                del self._refused[key]
                return None
        if fits_remaining(refusal.error.quota["remaining"], ask):
            return None
        seconds = max(1, int((refusal.until - now).total_seconds() + 0.999))
        return QuotaExceeded(refusal.error.quota, seconds, refusal.error.over)

    def remember(self, key: tuple[str, str], error: QuotaExceeded, now: datetime) -> None:
        with self._lock:
            if len(self._refused) >= self._max:  # bounded: forget the lot rather than grow
                self._refused.clear()
            self._refused[key] = _Refusal(error, now + timedelta(seconds=error.retry_after))

    def forget(self, partition: str) -> None:
        """Drop what is remembered for a partition (after this process released quota there)."""
        with self._lock:
            for key in [k for k in self._refused if k[0] == partition]:
                del self._refused[key]

    def __len__(self) -> int:
        return len(self._refused)



