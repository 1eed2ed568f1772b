"""Per-caller token buckets, per instance (each Functions instance limits on its own).

``per_minute`` tokens refill continuously up to ``burst``. Memory is bounded: at most ``max_callers``
buckets (least recently used evicted first), and a bucket idle long enough to be full again is dropped,
since a fresh bucket would behave the same.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from valet.errors import TooManyRequests


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        max_callers: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(max(1, burst))
        self._max = max_callers
        self._now = monotonic
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, caller_id: str) -> None:
        """Take one token for ``caller_id`` or raise :class:`TooManyRequests` with ``Retry-After``."""
        if not self.enabled:
            return
        now = self._now()
        with self._lock:
            tokens, at = self._buckets.pop(caller_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            if tokens < 1.0:
                self._buckets[caller_id] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / self._rate))
                raise TooManyRequests(
                    "Too many requests from this caller; retry later",
                    headers={"Retry-After": str(wait)},
                    extra={"retry_after": wait},
                )
            self._buckets[caller_id] = (tokens - 1.0, now)
            self._evict(now)

    def _evict(self, now: float) -> None:
        full_after = self._burst / self._rate
        while self._buckets:
            oldest_id, (_tokens, at) = next(iter(self._buckets.items()))
            if len(self._buckets) > self._max or now - at >= full_after:
                del self._buckets[oldest_id]
            else:
                break
