"""Benchmark of the upload validator against a local Azurite (started here).

Run: ``.venv/bin/python bench/validate.py [--runs N] [--gib SIZE]``

Measures, and prints as a table:

* blob bytes read from storage per accepted upload without a declared hash (1 MiB PNGs; target: no more
  than the 64 KiB sniff window), counted from the Content-Length of every GET response;
* peak memory while validating a large upload with a declared sha256 (default 1 GiB; target < 64 MiB
  above baseline): tracemalloc peak, and the kernel's peak-RSS mark (VmHWM, reset just before the run)
  in a fresh child process, so neither start-up nor the upload that made the blob counts;
* hashing throughput of the streamed check as a ratio to plain ``hashlib.sha256`` over the same bytes
  (target >= 0.8): from Azurite (storage-bound; compared with a plain sequential download + hash of the
  same blob) and from an in-memory range source (valet's own hashing cost).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.storage.blob import BlobServiceClient, ContentSettings
from azure.storage.queue import QueueClient

from tests.support import samples
from valet.grants.naming import blob_name, new_upload_id
from valet.grants.token import GRANT_METADATA_KEY, GrantClaims
from valet.local.emulator import Azurite
from valet.settings import Settings
from valet.storage import EmulatorCredential
from valet.validation.blobio import sha256_of
from valet.validation.service import Validation

MiB = 1024 * 1024
BLOCK = 8 * MiB
PARTITION = "bench/u-bench"


class GetBytes:
    """A storage client ``raw_response_hook``: sums the body bytes of blob GETs (listings and tags are
    requests, not blob bytes) and counts every request."""

    def __init__(self) -> None:
        self.bytes = 0
        self.gets = 0
        self.requests = 0

    def __call__(self, response: Any) -> None:
        self.requests += 1
        if response.http_request.method == "GET" and "comp=" not in response.http_request.url:
            self.gets += 1
            self.bytes += int(response.http_response.headers.get("Content-Length", 0))


def service(env: dict[str, str], hook: GetBytes | None = None) -> BlobServiceClient:
    url = env["VALET_STORAGE_ACCOUNT_URL"]
    kwargs: dict[str, Any] = {"raw_response_hook": hook} if hook else {}
    return BlobServiceClient(url, credential=EmulatorCredential(url),
                             connection_verify=env["VALET_STORAGE_CA_BUNDLE"], **kwargs)


def chunk(index: int, block: bytes) -> bytes:
    return index.to_bytes(8, "big") + block[8:]


class Generated(io.RawIOBase):
    """``size`` bytes made of a random block with a counter, produced on demand (never all in memory)."""

    def __init__(self, size: int, block: bytes) -> None:
        self.size, self.block, self.pos = size, block, 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if self.pos >= self.size:
            return 0
        index, within = divmod(self.pos, len(self.block))
        data = chunk(index, self.block)[within : within + min(len(target), self.size - self.pos)]
        target[: len(data)] = data
        self.pos += len(data)
        self.digest.update(data)
        return len(data)


def put(svc: BlobServiceClient, env: dict[str, str], data: Any, size: int, content_type: str,
        profile: str, sha256: str | None) -> str:
    settings = Settings.from_env(env)
    now = datetime.now(UTC).replace(microsecond=0)
    upload_id = new_upload_id(now, os.urandom)
    name = blob_name(PARTITION, upload_id, settings.policy.profiles[profile].extension_for(content_type))
    claims = GrantClaims(upload_id, settings.storage.uploads_container, name, size, content_type, sha256,
                         profile, "bench", "bench", now, now + timedelta(minutes=3))
    if isinstance(data, io.RawIOBase):  # raw reads may be short at block edges; buffered reads are not
        data = io.BufferedReader(data, buffer_size=BLOCK)
    svc.get_blob_client(settings.storage.uploads_container, name).upload_blob(
        data, length=size, metadata={GRANT_METADATA_KEY: settings.grant_keys.sign(claims)},
        content_settings=ContentSettings(content_type=content_type), max_concurrency=2)
    return name


def bytes_per_accepted_upload(env: dict[str, str], runs: int) -> tuple[float, float, int, float]:
    png = samples.png(512, 512)  # incompressible-enough filler below keeps it > 1 MiB
    png = png + os.urandom(MiB)
    hook = GetBytes()
    svc = service(env, hook)
    validation = Validation.from_settings(Settings.from_env(env), svc)
    read, gets, requests = [], [], []
    for _ in range(runs):
        name = put(service(env), env, png, len(png), "image/png", "images", None)
        hook.bytes = hook.gets = hook.requests = 0
        decision = validation.validator.process(name)
        assert decision is not None and decision.outcome.value == "accepted", decision
        read.append(hook.bytes)
        gets.append(hook.gets)
        requests.append(hook.requests)
    return statistics.median(read), statistics.median(gets), len(png), statistics.median(requests)


def child(args: dict[str, Any]) -> None:
    """Validate the big blob in a fresh process and report memory."""
    env, name = args["env"], args["name"]
    svc = service(env)
    validation = Validation.from_settings(Settings.from_env(env), svc)
    svc.get_container_client("uploads").get_container_properties()  # warm the connection
    validation.validator.process("warm-up/none.bin")  # first-call imports and connections
    hwm_reset = reset_peak_rss()
    base_rss, samples_rss, done = current_rss(), [], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            samples_rss.append(current_rss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    decision = validation.validator.process(name)  # no tracemalloc: measures the real process
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    peak_rss = peak_rss_since_reset() if hwm_reset else None
    assert decision is not None and decision.outcome.value == "accepted", decision
    print(json.dumps({"rss_delta": max(samples_rss, default=base_rss) - base_rss, "base_rss": base_rss,
                      "peak_delta": None if peak_rss is None else peak_rss - base_rss, "seconds": elapsed}))


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def tracemalloc_peak(env: dict[str, str], name: str, size: int) -> int:
    """tracemalloc peak of the streamed hash alone (tracemalloc slows Python code, so measured apart)."""
    client = service(env).get_blob_client("uploads", name)
    client.get_blob_properties()
    tracemalloc.start()
    sha256_of(client, size)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


PIPELINE_BYTES = 512 * 1024 * 1024


class _MemoryDownload:
    def __init__(self, data: memoryview) -> None:
        self._data = data

    def readall(self) -> bytes:
        return bytes(self._data)


class MemoryRangeSource:
    """Serves ranges from memory, so the measurement is valet's hashing pipeline and not the storage."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    def download_blob(self, offset: int | None = None, length: int | None = None, **kwargs: object) -> _MemoryDownload:
        start = offset or 0
        return _MemoryDownload(self._view[start : start + (length or len(self._view) - start)])


def hash_pipeline_in_memory() -> tuple[float, float]:
    """(valet's sha256_of over an in-memory range source, plain hashlib) in bytes/s, medians of 5."""
    data = os.urandom(PIPELINE_BYTES)
    expected = hashlib.sha256(data).hexdigest()
    pipeline, plain = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        assert sha256_of(MemoryRangeSource(data), len(data)) == expected
        pipeline.append(len(data) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        assert hashlib.sha256(data).hexdigest() == expected
        plain.append(len(data) / (time.perf_counter() - t0))
    return statistics.median(pipeline), statistics.median(plain)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(json.loads(options.child))
        return

    size = int(options.gib * 1024 * MiB)
    with tempfile.TemporaryDirectory(prefix="valet-bench-") as work, Azurite(Path(work)) as azurite:
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        env = {
            "VALET_STORAGE_ACCOUNT_URL": azurite.blob_url, "VALET_STORAGE_CREDENTIAL": "emulator",
            "VALET_STORAGE_CA_BUNDLE": str(azurite.cert), "VALET_GRANT_SIGNING_KEYS": f"k1:{key}",
            "VALET_STORAGE_TIMEOUT_SECONDS": "60", "VALET_SCANNERS": "none",
            "VALET_QUEUE_SERVICE_URL": azurite.queue_url,
        }
        svc = service(env)
        for role in ("uploads", "accepted", "quarantine"):
            svc.create_container(role)
        queue = QueueClient(azurite.queue_url, "valet-decisions", credential=EmulatorCredential(azurite.queue_url),
                            connection_verify=str(azurite.cert))
        queue.create_queue()  # decisions are announced there, as in a deployment
        queue.close()
        head_bytes, head_gets, png_size, decision_requests = bytes_per_accepted_upload(env, options.runs)

        block = os.urandom(BLOCK)
        source = Generated(size, block)
        started = time.perf_counter()
        big = put(svc, env, source, size, "application/octet-stream", "large", None)
        upload_seconds = time.perf_counter() - started
        digest = source.digest.hexdigest()
        uploads = "uploads"
        client = svc.get_blob_client(uploads, big)

        hashlib_rates, stream_rates, naive_rates = [], [], []
        for _ in range(3):
            h = hashlib.sha256()
            spent = 0.0
            for index in range((size + BLOCK - 1) // BLOCK):
                data = chunk(index, block)[: min(BLOCK, size - index * BLOCK)]
                t0 = time.perf_counter()
                h.update(data)
                spent += time.perf_counter() - t0
            assert h.hexdigest() == digest
            hashlib_rates.append(size / spent)
            t0 = time.perf_counter()
            assert sha256_of(client, size) == digest
            stream_rates.append(size / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        naive = hashlib.sha256()

        class Sink(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                naive.update(b)
                return len(b)

        client.download_blob(max_concurrency=1).readinto(Sink())
        naive_rates.append(size / (time.perf_counter() - t0))
        assert naive.hexdigest() == digest

        # Memory: a blob with a declared sha256, validated in a fresh process.
        copy_name = put(svc, env, Generated(size, block), size, "application/octet-stream", "large", digest)
        out = subprocess.run(  # noqa: S603 - our own script, fixed argv
            [sys.executable, __file__, "--child", json.dumps({"env": env, "name": copy_name})],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        memory = json.loads(out.stdout.strip().splitlines()[-1])
        memory["peak"] = tracemalloc_peak(env, big, size)  # same bytes; copy_name is a tombstone by now

    pipeline_rate, pipeline_hashlib_rate = hash_pipeline_in_memory()
    hashlib_rate, stream_rate = statistics.median(hashlib_rates), statistics.median(stream_rates)
    rows = [
        ("blob bytes read per accepted upload, no hash", f"{head_bytes:,.0f} B in {head_gets:.0f} GET(s)",
         f"<= {64 * 1024:,} B", f"{png_size:,} B PNG, median of {options.runs}"),
        ("storage requests per accepted upload, no scanner", f"{decision_requests:.0f}", "",
         "all requests of the decision, median"),
        ("tracemalloc peak, streamed sha256", f"{memory['peak'] / MiB:.1f} MiB", "< 64 MiB",
         f"{size / MiB:,.0f} MiB blob"),
        ("peak RSS above baseline (kernel VmHWM), validate + sha256",
         "n/a" if memory["peak_delta"] is None else f"{memory['peak_delta'] / MiB:.1f} MiB", "< 64 MiB",
         f"whole decision {memory['seconds']:.1f} s; baseline {memory['base_rss'] / MiB:.0f} MiB"),
        ("RSS above baseline, sampled every 5 ms", f"{memory['rss_delta'] / MiB:.1f} MiB", "< 64 MiB", ""),
        ("plain hashlib.sha256 in memory", f"{hashlib_rate / MiB:,.0f} MiB/s", "", "median of 3"),
        ("streamed sha256 (2 MiB ranges x3)", f"{stream_rate / MiB:,.0f} MiB/s", "", "median of 3"),
        ("  ratio to hashlib", f"{stream_rate / hashlib_rate:.2f}", ">= 0.80", ""),
        ("naive download_blob().readinto + hash", f"{naive_rates[0] / MiB:,.0f} MiB/s", "", "for comparison, 1 run"),
        ("  streamed / naive (same storage)", f"{stream_rate / naive_rates[0]:.2f}", "", "storage-bound both"),
        ("hash pipeline, in-memory range source", f"{pipeline_rate / MiB:,.0f} MiB/s", "",
         f"{PIPELINE_BYTES // MiB} MiB, median of 5"),
        ("  ratio to hashlib on the same bytes", f"{pipeline_rate / pipeline_hashlib_rate:.2f}", ">= 0.80",
         "valet's hashing cost without storage"),
        ("upload of the test blob (SDK, 2 threads)", f"{size / upload_seconds / MiB:,.0f} MiB/s", "", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "result", "target", "notes")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
