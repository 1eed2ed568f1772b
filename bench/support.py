"""What the benchmarks share."""

from __future__ import annotations

from valet.caller import Caller

BENCH_CALLER = Caller(kind="bearer", issuer="https://bench.invalid/", subject="bench-user", tenant="bench")


class _BenchAuthenticator:
    headers: dict[str, str] = {}

    def authenticate(self, request: object) -> Caller:
        return BENCH_CALLER

    admit = authenticate


def bench_caller_authenticator() -> _BenchAuthenticator:
    return _BenchAuthenticator()
