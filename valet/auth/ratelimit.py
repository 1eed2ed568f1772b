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

from valet import telemetry
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
                telemetry.current().refusal("rate_limit", TooManyRequests.code)
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


class _Buckets:
    """Token buckets by key that can be read without spending (the failure budgets below)."""

    def __init__(self, per_minute: int, burst: int, max_keys: int, monotonic: Callable[[], float]) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(1, burst))
        self._max = max_keys
        self._now = monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def tokens(self, key: str) -> float:
        now = self._now()
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def wait(self, key: str) -> int:
        """Whole seconds until ``key`` has a token again (0: it has one now)."""
        missing = 1.0 - self.tokens(key)
        return 0 if missing <= 0 else max(1, math.ceil(missing / self.rate))

    def add(self, key: str, amount: float) -> None:
        now = self._now()
        tokens = min(self.burst, self.tokens(key) + amount)
        self._buckets.pop(key, None)
        if tokens < self.burst:  # a full bucket behaves like no bucket: keep only the spent ones
            self._buckets[key] = (tokens, now)
        full_after = self.burst / self.rate
        while self._buckets:
            oldest, (_tokens, at) = next(iter(self._buckets.items()))
            if len(self._buckets) > self._max or now - at >= full_after:
                del self._buckets[oldest]
            else:
                break


class FailureThrottle:
    """Budgets for failed authentication, checked before a credential costs anything.

    * Per client address (:func:`valet.auth.transport.client_address`): every ``401`` spends one token;
      an address with none left gets ``429 too_many_failures`` with ``Retry-After`` before its credential
      is even parsed, whatever it sends (so a caller behind the same address as a flood waits too, for
      the time ``Retry-After`` names; a caller from another address is unaffected).
    * Global (all addresses together, this instance): a key-store read for an API key whose record is not
      cached takes a token first, returned when the key turns out valid. With none left, such requests get
      ``429`` without a read, so failed reads stay within ``global_burst + global_per_minute`` per minute
      however many addresses and forged key ids a flood uses. Cached keys and bearer tokens never need it.

    ``per_minute`` or ``global_per_minute`` 0 turns that budget off.
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        global_per_minute: int,
        global_burst: int,
        *,
        max_addresses: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._addresses = _Buckets(per_minute, burst, max_addresses, monotonic)
        self._global = _Buckets(global_per_minute, global_burst, 1, monotonic)

    def __len__(self) -> int:
        return len(self._addresses)

    def check_address(self, address: str) -> None:
        """429 when ``address`` has spent its failure budget (nothing is spent here)."""
        if self._addresses.rate <= 0:
            return
        with self._lock:
            wait = self._addresses.wait(address)
        if wait:
            raise _too_many("Too many failed authentications from this address; retry later", wait)

    def failed(self, address: str) -> bool:
        """One failed authentication from ``address``; true when that spent its last token (log it once)."""
        if self._addresses.rate <= 0:
            return False
        with self._lock:
            before = self._addresses.tokens(address)
            self._addresses.add(address, -1.0)
            return before >= 1.0 > self._addresses.tokens(address)

    def take_lookup(self) -> None:
        """Take a token of the global budget before a key-store read, or 429."""
        if self._global.rate <= 0:
            return
        with self._lock:
            wait = self._global.wait("*")
            if not wait:
                self._global.add("*", -1.0)
                return
        raise _too_many("Too many failed authentications; retry later", wait)

    def return_lookup(self) -> None:
        """The read found a valid key: give its token back."""
        if self._global.rate <= 0:
            return
        with self._lock:
            self._global.add("*", 1.0)


def _too_many(detail: str, wait: int) -> TooManyRequests:
    telemetry.current().refusal("failure_budget", "too_many_failures")
    return TooManyRequests(
        detail, code="too_many_failures", headers={"Retry-After": str(wait)}, extra={"retry_after": wait}
    )
