"""Verified bearer tokens, remembered for a short while.

A client reuses its access token for every request until it expires (an hour for Entra ID), so the same
token arrives again and again. Verifying it once and remembering the result for ``ttl`` seconds (default
300) takes the RSA/EC signature check and JWT parsing off most grants.

What a hit still guarantees: the token's exact bytes were verified (the key is a SHA-256 of the token, so
no token is kept in memory by this cache), and it is not expired — an entry never outlives the token's
``exp`` plus leeway. What it defers: a signing key the issuer removes from its JWKS is noticed up to
``ttl`` later — shorter than the JWKS cache lifetime (an hour), which bounds that already. Roles and the
rate limit are checked on every request, after this cache.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from valet.caller import Caller


class VerifiedTokenCache:
    def __init__(self, ttl: float, *, max_entries: int = 4096, clock: Callable[[], float] = time.time) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Caller, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VerifiedTokenCache(ttl={self._ttl}, entries={len(self._entries)})"

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.sha256(token.encode("ascii", "replace")).digest()

    def get(self, key: bytes) -> Caller | None:
        if self._ttl <= 0:
            return None
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            caller, until = entry
            if now >= until:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return caller

    def put(self, key: bytes, caller: Caller, valid_until: float) -> None:
        if self._ttl <= 0:
            return
        until = min(valid_until, self._clock() + self._ttl)
        with self._lock:
            self._entries[key] = (caller, until)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
