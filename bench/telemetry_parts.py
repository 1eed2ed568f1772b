"""What one grant's telemetry costs, part by part, in a warm loop (issue 28).

    .venv/bin/python bench/telemetry_parts.py [--rounds 15] [--items 2000]

The SDK's providers as ``bench/grants.py --telemetry`` sets them up (a batching span processor into the
in-memory span exporter, the in-memory metric reader), the garbage collector off, and each part timed as
process CPU per call over ``--items`` calls, the parts taking turns in every round, the exporter emptied
between rounds. Prints a Markdown table of medians over the rounds, and each part's share of the whole:

* the whole of what the batch does for one queued grant (``Telemetry._emit_granted``: its count, its
  duration in the histogram, its span);
* the grant's span alone (``traces.start_upload_root`` and ``end``, valet's two attributes);
* one histogram measurement with valet's one attribute;
* the Azure Monitor distro's default sampler deciding one root span (what sampling costs before any span).

No storage, no grant path: ``bench/grants.py --telemetry`` measures the grant path with telemetry on and off.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from azure.monitor.opentelemetry.exporter import RateLimitedSampler
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.grants import memory_telemetry
from valet.telemetry import instruments, traces


def per_call(parts: list[Callable[[int], None]], items: int, rounds: int,
             between: Callable[[], None]) -> list[list[float]]:
    """Process CPU seconds per call of each part over ``items`` calls (``part(i)``, i = 0 .. items - 1), in
    ``rounds`` rounds in which every part takes its turn, so the machine's drift reaches all of them alike."""
    for part in parts:
        part(0)
    between()
    out: list[list[float]] = [[] for _ in parts]
    for _ in range(rounds):
        for n, part in enumerate(parts):
            started = time.process_time()
            for i in range(items):
                part(i)
            out[n].append((time.process_time() - started) / items)
            between()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()

    on, settle, collect = memory_telemetry()

    def between() -> None:
        settle()
        collect()

    upload_ids = [str(uuid.uuid7()) if hasattr(uuid, "uuid7") else str(uuid.uuid4()) for _ in range(args.items)]
    context = otel_context.get_current()
    now = time.time_ns()
    records = [instruments.GrantRecord(upload_id=u, profile="images", started_ns=now, ended_ns=now + 250_000,
                                       incoming=context) for u in upload_ids]
    attributes = {instruments.PROFILE: "images", instruments.OUTCOME: "granted"}
    histogram = on._made[instruments.GRANT_DURATION.name]
    granted = {instruments.OUTCOME: "granted"}
    sampler = RateLimitedSampler(5.0)
    trace_ids = [uuid.UUID(u).int for u in upload_ids]

    def whole(i: int) -> None:
        on._emit_granted(records[i])

    def span(i: int) -> None:
        traces.start_upload_root(on.tracer, instruments.GRANT_SPAN, upload_ids[i], start_time=now, links=(),
                                 attributes=attributes).end(end_time=now + 250_000)

    def measurement(i: int) -> None:
        histogram.record(0.00025, granted)

    def sampling(i: int) -> None:
        sampler.should_sample(None, trace_ids[i], instruments.GRANT_SPAN, SpanKind.SERVER, attributes, ())

    labelled = (("everything the batch does for one grant (count, duration, span)", whole),
                ("the grant's span alone (start and end, two attributes)", span),
                ("one histogram measurement (one attribute)", measurement),
                ("the distro's rate-limited sampler deciding one root span", sampling))
    gc.disable()
    try:
        timings = per_call([part for _, part in labelled], args.items, args.rounds, between)
    finally:
        gc.enable()
        on.close()
    print(f"# bench/telemetry_parts.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, "
          f"{platform.machine()}, rounds={args.rounds}, items={args.items}")
    print()
    print("| part | median CPU per call | share of the whole (median of the rounds) |")
    print("|---|---:|---:|")
    for (label, _), found in zip(labelled, timings, strict=True):
        share = statistics.median(f / w for f, w in zip(found, timings[0], strict=True))
        print(f"| {label} | {statistics.median(found) * 1e6:.1f} µs | {share * 100:.0f} % |")


if __name__ == "__main__":
    main()
