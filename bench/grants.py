"""Grant throughput: valet's cached user delegation key against the reference sample's key-per-request.

Runs in-process through the app's registered grant function (``function_app.create_upload``, found with
``app.get_functions()``) with real ``func.HttpRequest`` objects carrying a real RS256 bearer token from
the local development issuer (JWKS over HTTP), a real Azurite (started here, HTTPS + OAuth) as the
storage, and counts the storage requests the grant path makes. The reference variant is the same app
with the key cache replaced by a Get User Delegation Key call per grant, as the reference sample does.

    .venv/bin/python bench/grants.py [--rounds 7] [--grants 400] [--reference-grants 100] [--quota-grants 400]
                                     [--telemetry [--telemetry-rounds 300] [--telemetry-grants 25]
                                                  [--telemetry-gc-grants 12000]]

Prints a Markdown table: medians over the rounds, the ratio, and storage requests per 1,000 grants. Then,
in the same run, quotas (issue 26): grants/s and p50/p99 latency of the same grant with a profile without
a quota and one with a quota (the same app, a second runtime whose profiles set ``quota`` and
``tenantQuota``; Azurite's Table service as the store), and the quota table's requests per grant when 1,
8 and 32 threads grant for the same caller at once. With ``--telemetry``, also the grant path's CPU time
per grant (process CPU, every thread, so the span processor's export thread counts) with telemetry off,
on with every span recorded (the SDK's providers, a batching span processor into the in-memory span
exporter, the in-memory metric reader), and on with the Azure Monitor distro's default sampler
(rate-limited, about 5 traces a second), in short alternating rounds of the same run; each round ends with
its grants' spans and durations made and exported, so a round pays for its own telemetry. What happens once
a minute rather than per grant (a metric collection, the audit trail's buffered append) runs between rounds.
Then the pauses of the full garbage collections over a few thousand grants with telemetry on, with the app's
start-up objects frozen (as ``function_app.py`` leaves them) and not.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import importlib
import io
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
from azure.monitor.opentelemetry.exporter import RateLimitedSampler
from azure.storage.blob import BlobServiceClient, UserDelegationKey
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from valet import telemetry
from valet.local.dev import provision
from valet.local.devidp import DevIssuer
from valet.local.emulator import Azurite
from valet.runtime import RuntimeHolder, settle_heap
from valet.storage import EmulatorCredential
from valet.telemetry import traces


class KeyPerRequest:
    """The reference sample's behaviour: a fresh user delegation key for every grant (+/- 3 minutes)."""

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    def get(self, valid_until: datetime) -> UserDelegationKey:
        now = datetime.now(UTC)
        return self._service.get_user_delegation_key(now - timedelta(minutes=3), now + timedelta(minutes=3))


def memory_telemetry(sampler: Sampler | None = None) -> tuple[telemetry.Telemetry, Callable[[], None],
                                                                Callable[[], None]]:
    """Telemetry on, as in production but exporting in memory; a function that finishes the grants'
    telemetry (their spans and durations made, the spans exported), and one that collects the metrics and
    empties the exporter."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler)
    traces.adopt(tracer_provider)
    processor = BatchSpanProcessor(exporter)
    tracer_provider.add_span_processor(processor)
    reader = InMemoryMetricReader()
    on = telemetry.Telemetry(MeterProvider(metric_readers=[reader]), tracer_provider)

    def settle() -> None:
        on.flush()  # the grants' spans and durations, made off the request thread in batches
        processor.force_flush()

    def collect() -> None:
        reader.get_metrics_data()  # a collection, as a periodic reader makes one a minute
        exporter.clear()

    return on, settle, collect


def cpu_per_grant(grant: Callable[[func.HttpRequest], func.HttpResponse], token: str, count: int,
                  settle: Callable[[], None]) -> tuple[float, float]:
    """Process CPU seconds per grant over ``count`` grants, their telemetry made and exported included; and
    the CPU seconds of the requests' own thread until the last response (what a request waits for)."""
    started, thread_started = time.process_time(), time.thread_time()
    one_round(grant, token, count)
    answered = time.thread_time()
    settle()
    return (time.process_time() - started) / count, (answered - thread_started) / count


class FullCollections:
    """The pauses of the garbage collector's full (generation 2) collections while the block runs."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def full_collection_pauses(grant: Callable[[func.HttpRequest], func.HttpResponse], token: str,
                           on: telemetry.Telemetry, settle: Callable[[], None], collect: Callable[[], None],
                           grants: int) -> dict[str, list[float]]:
    """Full collections' pauses over ``grants`` grants with telemetry on, the app's start-up objects frozen
    (as function_app.py leaves them: valet.runtime.settle_heap) and not, spans collected every 500 grants."""
    out: dict[str, list[float]] = {}
    telemetry.install(on)
    for name in ("not frozen", "frozen"):
        if name == "not frozen":
            gc.unfreeze()
        else:
            settle_heap()
        with FullCollections() as full:
            for _ in range(grants // 500):
                one_round(grant, token, 500)
                settle()
                collect()
        out[name] = full.pauses
    return out


def one_round(grant: Callable[[func.HttpRequest], func.HttpResponse], token: str, count: int) -> float:
    body = json.dumps({"filename": "photo.jpg", "contentType": "image/jpeg", "size": 123456}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    started = time.perf_counter()
    for _ in range(count):
        req = func.HttpRequest(method="POST", url="https://valet.example/api/uploads", headers=headers, body=body)
        response = grant(req)
        if response.status_code != 201:
            raise SystemExit(f"grant failed: {response.status_code} {response.get_body()[:200]!r}")
    return count / (time.perf_counter() - started)


def latencies(grant: Callable[[func.HttpRequest], func.HttpResponse], token: str, count: int,
              profile: str) -> list[float]:
    """Seconds per grant, one after another."""
    body = json.dumps({"filename": "photo.jpg", "contentType": "image/jpeg", "size": 123456,
                       "profile": profile}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    out = []
    for _ in range(count):
        req = func.HttpRequest(method="POST", url="https://valet.example/api/uploads", headers=headers, body=body)
        started = time.perf_counter()
        response = grant(req)
        out.append(time.perf_counter() - started)
        if response.status_code != 201:
            raise SystemExit(f"grant failed: {response.status_code} {response.get_body()[:200]!r}")
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


QUOTA_PROFILES = {"default": "plain", "profiles": {
    "plain": {"maxBytes": 26214400, "types": {"image/jpeg": ["jpg"]}},
    "metered": {"maxBytes": 26214400, "types": {"image/jpeg": ["jpg"]},
                "quota": {"bytesPerDay": 10**15, "filesPerDay": 10**9, "pendingFiles": 10**9},
                "tenantQuota": {"bytesPerDay": 10**15, "filesPerDay": 10**9}}}}


def quota_section(app: object, grant: Callable[[func.HttpRequest], func.HttpResponse], env: dict[str, str],
                  azurite: Azurite, token: str, count: int) -> None:
    """Quotas off and on in one runtime (two profiles), then Table requests per grant by concurrency."""
    from azure.data.tables import TableClient

    table = f"benchquotas{secrets.token_hex(4)}"
    client = TableClient(azurite.table_url, table, credential=EmulatorCredential(azurite.table_url),
                         connection_verify=str(azurite.cert))
    client.create_table()
    holder = RuntimeHolder({**env, "VALET_PROFILES": json.dumps(QUOTA_PROFILES), "VALET_QUOTA_TABLE": table,
                            "VALET_TABLE_SERVICE_URL": azurite.table_url})
    runtime = holder()
    app.runtime = holder  # type: ignore[attr-defined]
    latencies(grant, token, 20, "plain")  # warm-up: first key, first counters
    latencies(grant, token, 20, "metered")
    storage_before, table_before = runtime.storage_requests.count, runtime.table_requests.count
    off = latencies(grant, token, count, "plain")
    off_table = runtime.table_requests.count - table_before
    on = latencies(grant, token, count, "metered")
    on_table = runtime.table_requests.count - table_before - off_table
    storage = runtime.storage_requests.count - storage_before
    print()
    print(f"Quotas (issue 26): {count} grants each, one after another, same runtime; the quota table on "
          "Azurite's Table service.")
    print()
    print("| profile | grants/s | p50 ms | p99 ms | Table requests per grant |")
    print("|---|---:|---:|---:|---:|")
    for label, values, requests in (("without a quota", off, off_table), ("with quota + tenantQuota", on, on_table)):
        print(f"| {label} | {len(values) / sum(values):,.0f} | {percentile(values, 0.5) * 1000:.2f} | "
              f"{percentile(values, 0.99) * 1000:.2f} | {requests / len(values):.2f} |")
    print(f"| **p50 ratio (on / off)** | | **{percentile(on, 0.5) / percentile(off, 0.5):.1f}×** | | |")
    print(f"\nBlob and queue requests during both: {storage} (the user delegation key is cached).")
    print()
    print("| threads granting for the same caller at once | grants | Table requests per grant | grants/s |")
    print("|---:|---:|---:|---:|")
    for threads in (1, 8, 32):
        total = max(count, threads * 8)
        before = runtime.table_requests.count
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: latencies(grant, token, 1, "metered"), range(total)))
        elapsed = time.perf_counter() - started
        print(f"| {threads} | {total} | {(runtime.table_requests.count - before) / total:.2f} | "
              f"{total / elapsed:,.0f} |")
    client.delete_table()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--grants", type=int, default=400, help="grants per round, cached key")
    parser.add_argument("--reference-grants", type=int, default=100, help="grants per round, key per request")
    parser.add_argument("--quota-grants", type=int, default=400, help="grants per quota measurement (0: skip)")
    parser.add_argument("--telemetry", action="store_true",
                        help="also compare the grant path's CPU per grant with telemetry off and on (in memory)")
    parser.add_argument("--telemetry-rounds", type=int, default=300, help="rounds per telemetry variant")
    parser.add_argument("--telemetry-grants", type=int, default=25, help="grants per telemetry round")
    parser.add_argument("--telemetry-gc-grants", type=int, default=12000,
                        help="grants with telemetry on while the full garbage collections are timed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, Azurite(Path(tmp)) as azurite, DevIssuer() as issuer:
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        env = {
            "VALET_STORAGE_ACCOUNT_URL": azurite.blob_url,
            "VALET_QUEUE_SERVICE_URL": azurite.queue_url,
            "VALET_STORAGE_CREDENTIAL": "emulator",
            "VALET_STORAGE_CA_BUNDLE": str(azurite.cert),
            "VALET_GRANT_SIGNING_KEYS": f"bench:{key}",
            "VALET_AUTH_ISSUERS": issuer.settings_value(),
            "VALET_RATE_LIMIT_PER_MINUTE": "0",  # measure the grant path, not the limiter
            "VALET_AUDIT_FLUSH_SECONDS": "60",  # the telemetry rounds append the audit records between rounds
        }
        provision(BlobServiceClient(azurite.blob_url, credential=EmulatorCredential(azurite.blob_url),
                                    connection_verify=str(azurite.cert)), env, azurite.queue_url, str(azurite.cert))
        os.environ.update(env)
        app = importlib.import_module("function_app")
        grant = {f.get_function_name(): f for f in app.app.get_functions()}["create_upload"].get_user_function()
        valet_holder = app.runtime
        reference_holder = RuntimeHolder(env)
        valet, reference = valet_holder(), reference_holder()
        reference.grants._keys = KeyPerRequest(reference.blob_service)  # type: ignore[assignment]
        token = issuer.mint("bench-user")

        def run(holder: RuntimeHolder, count: int) -> float:
            app.runtime = holder  # the registered function reads the module's runtime at call time
            return one_round(grant, token, count)

        run(valet_holder, 50)  # warm-up: JWKS fetch, first key
        run(reference_holder, 10)
        valet_rates, reference_rates = [], []
        valet_requests_before = valet.storage_requests.count
        reference_requests_before = reference.storage_requests.count
        for _ in range(args.rounds):
            valet_rates.append(run(valet_holder, args.grants))
            reference_rates.append(run(reference_holder, args.reference_grants))
        cpu: dict[str, list[float]] = {"off": [], "on": [], "sampled": []}
        pauses: dict[str, list[float]] = {}
        request_cpu: dict[str, list[float]] = {"off": [], "on": [], "sampled": []}
        if args.telemetry:
            nothing: Callable[[], None] = lambda: None  # noqa: E731
            variants = {"off": (telemetry.Telemetry(), nothing, nothing), "on": memory_telemetry(),
                        # the Azure Monitor distro's default sampler: about 5 traces a second are kept
                        "sampled": memory_telemetry(RateLimitedSampler(5.0))}
            app.runtime = valet_holder
            flusher = valet.audit.flusher
            for on, settle, collect in variants.values():
                telemetry.install(on)
                one_round(grant, token, 50)  # warm-up
                settle()
                collect()
            names = list(variants)
            for round_ in range(args.telemetry_rounds):  # alternating, so every variant sees the same machine
                for name in names[round_ % 3:] + names[:round_ % 3]:  # each variant first as often as the others
                    on, settle, _ = variants[name]
                    telemetry.install(on)
                    process_cpu, thread_cpu = cpu_per_grant(grant, token, args.telemetry_grants, settle)
                    cpu[name].append(process_cpu)
                    request_cpu[name].append(thread_cpu)
                # Outside the timed rounds: what happens once a minute, not per grant (a metric collection,
                # the audit trail's buffered append), so it does not land in whichever round is running.
                while flusher is not None and flusher.flush():
                    pass
                if round_ % 20 == 19:
                    for _, _, collect in variants.values():
                        collect()
            pauses = full_collection_pauses(grant, token, *variants["on"], grants=args.telemetry_gc_grants)
            telemetry.install(telemetry.Telemetry())
        valet_total = args.rounds * args.grants
        reference_total = args.rounds * args.reference_grants
        valet_per_1000 = (valet.storage_requests.count - valet_requests_before) * 1000 / valet_total
        reference_per_1000 = (reference.storage_requests.count - reference_requests_before) * 1000 / reference_total
        quota_report = io.StringIO()
        if args.quota_grants:
            with contextlib.redirect_stdout(quota_report):
                quota_section(app, grant, env, azurite, token, args.quota_grants)

    v, r = statistics.median(valet_rates), statistics.median(reference_rates)
    print(f"# bench/grants.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, "
          f"{platform.machine()}, rounds={args.rounds}")
    print()
    print("| grant path | median grants/s | storage requests per 1,000 grants |")
    print("|---|---:|---:|")
    print(f"| valet (cached user delegation key) | {v:,.0f} | {valet_per_1000:.1f} |")
    print(f"| reference sample (key per request) | {r:,.0f} | {reference_per_1000:.1f} |")
    print(f"| **ratio** | **{v / r:.1f}×** | |")
    if args.telemetry:
        off_total = sum(cpu["off"])
        print()
        print(f"Telemetry: {args.telemetry_rounds} rounds of {args.telemetry_grants} grants per variant, the variants "
              "alternating; CPU is the process's (every thread and the garbage collector), each round ending once "
              "its grants' spans and durations are made and exported. \"All rounds\" is the variant's total CPU "
              "over off's; \"paired\" the median of each round's ratio to the off round of the same turn "
              "(quartiles in brackets): the machine's drift cancels within a turn, and the variants take turns "
              "going first. \"Request thread only\": the CPU of the thread that answers, up to the last "
              "response (what a request waits for), all rounds.")
        print()
        print("| grant path, valet | median CPU per grant | vs off, all rounds | vs off, paired | request thread "
              "only, vs off |")
        print("|---|---:|---:|---:|---:|")
        for name, label in (("off", "telemetry off (no-op)"),
                            ("on", "telemetry on, every span recorded (in-memory exporter and reader)"),
                            ("sampled", "telemetry on, spans sampled as Application Insights does by default")):
            ratios = sorted(v / o for o, v in zip(cpu["off"], cpu[name], strict=True))
            q1, q2, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios * 3)
            print(f"| {label} | {statistics.median(cpu[name]) * 1e6:,.0f} µs | "
                  f"{(sum(cpu[name]) / off_total - 1) * 100:+.1f} % | "
                  f"{(q2 - 1) * 100:+.1f} % [{(q1 - 1) * 100:+.1f}, {(q3 - 1) * 100:+.1f}] | "
                  f"{(sum(request_cpu[name]) / sum(request_cpu['off']) - 1) * 100:+.1f} % |")
    if args.telemetry:
        print()
        print(f"Full garbage collections over {args.telemetry_gc_grants:,} grants with every span recorded "
              "(spans collected every 500 grants), start-up objects frozen as function_app.py leaves them "
              "(valet.runtime.settle_heap) and not:")
        print()
        print("| start-up objects | full collections | median pause |")
        print("|---|---:|---:|")
        for name, found in pauses.items():
            median = f"{statistics.median(found) * 1e3:.1f} ms" if found else "—"
            print(f"| {name} | {len(found)} | {median} |")
    print(quota_report.getvalue(), end="")


if __name__ == "__main__":
    main()
