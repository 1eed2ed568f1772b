"""Load: grant requests at a fixed concurrency against ``valet dev``, beside the trivial route of the same
server in the same run.

Starts ``valet dev`` (Azurite, dev issuer, the app's functions on waitress) on free loopback ports, then
runs locust headless as a second process, once per route and round: ``GET /api/health`` (the trivial
route: no storage, no authentication) and ``POST /api/uploads`` (a valid grant request with the dev
bearer token), each with ``--users`` users sending back to back for ``--seconds`` (statistics reset once
all users are running). Rounds alternate the routes (health, grant, health, grant, ...) so that other
load on the machine falls on both alike. The per-caller rate limit is set out of reach
(1,000,000/min, burst 100,000): its bookkeeping runs, but it never refuses the single dev caller.

    .venv/bin/python bench/load.py [--users 50] [--seconds 10] [--rounds 3]

Prints a Markdown table with one row per run: requests, requests/s, p50/p95/p99 latency (locust's, in
ms; rounded to 2 significant digits above 100 ms), errors, and the server process's CPU time per
request; then per route the median over the rounds, and the ratio of grant to health throughput (the
median of the rounds' ratios). Exits non-zero when any request failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.devstack import valet_dev  # noqa: E402 - after the path set-up, like bench/grants.py

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
ROUTES = {"health": ("HealthUser", "GET /api/health"), "grant": ("GrantUser", "POST /api/uploads")}
UNREACHABLE_LIMIT = {"VALET_RATE_LIMIT_PER_MINUTE": "1000000", "VALET_RATE_LIMIT_BURST": "100000"}


@dataclass
class Run:
    route: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    server_cpu_ms_per_request: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_locust(route: str, url: str, token: str, users: int, seconds: int, workdir: Path, server_pid: int) -> Run:
    user_class, name = ROUTES[route]
    prefix = workdir / f"{route}-{time.monotonic_ns()}"
    before = cpu_seconds(server_pid)
    result = subprocess.run(  # noqa: S603 - our own interpreter, arguments built here
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), user_class, "--headless", "--host", url,
         "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--reset-stats", "--stop-timeout", "5",
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
        cwd=ROOT, env={**os.environ, "VALET_LOAD_TOKEN": token}, capture_output=True, text=True, check=False,
        timeout=seconds + 120,
    )
    cpu = cpu_seconds(server_pid) - before
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        raise SystemExit(f"locust wrote no statistics (exit {result.returncode}):\n{result.stderr[-3000:]}")
    with stats.open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == name)
    count = int(row["Request Count"])
    return Run(route, count, int(row["Failure Count"]), float(row["Requests/s"]), float(row["50%"]),
               float(row["95%"]), float(row["99%"]), 1000 * cpu / max(1, count))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50, help="concurrent users (requests in flight)")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each run (one route, one round)")
    parser.add_argument("--rounds", type=int, default=3, help="health then grant, this many times")
    args = parser.parse_args()

    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with (workdir / "valet-dev.log").open("w") as log, \
                valet_dev(workdir, extra_env=UNREACHABLE_LIMIT, output=log) as stack:
            warm = requests.post(f"{stack.url}/api/uploads", timeout=10,
                                 headers={"Authorization": f"Bearer {stack.token}"},
                                 json={"filename": "photo.png", "contentType": "image/png", "size": 123456})
            if warm.status_code != 201:
                raise SystemExit(f"warm-up grant failed: {warm.status_code} {warm.text[:200]}")
            for _ in range(args.rounds):
                for route in ("health", "grant"):
                    runs.append(run_locust(route, stack.url, stack.token, args.users, args.seconds, workdir,
                                           stack.proc.pid))

    print(f"# bench/load.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, users={args.users}, {args.seconds} s per run, "
          f"rounds={args.rounds}\n")
    print("| route | requests | requests/s | p50 ms | p95 ms | p99 ms | errors | server CPU ms/request |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        _, name = ROUTES[run.route]
        print(f"| `{name}` | {run.requests:,} | {run.rps:,.0f} | {run.p50:g} | {run.p95:g} | {run.p99:g} | "
              f"{run.failures} | {run.server_cpu_ms_per_request:.2f} |")
    for route in ("health", "grant"):
        mine = [r for r in runs if r.route == route]
        _, name = ROUTES[route]
        print(f"| **`{name}`, median of {len(mine)}** | {sum(r.requests for r in mine):,} (total) | "
              f"**{statistics.median(r.rps for r in mine):,.0f}** | {statistics.median(r.p50 for r in mine):g} | "
              f"{statistics.median(r.p95 for r in mine):g} | {statistics.median(r.p99 for r in mine):g} | "
              f"{sum(r.failures for r in mine)} (total) | "
              f"{statistics.median(r.server_cpu_ms_per_request for r in mine):.2f} |")
    ratios = [grant.rps / health.rps for health, grant in zip(runs[0::2], runs[1::2], strict=True)]
    print(f"\ngrant / health throughput: **{statistics.median(ratios):.2f}** (rounds: "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")
    return 1 if any(r.failures for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
