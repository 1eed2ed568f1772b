"""A burst of uploads through ``valet dev`` while its storage emulator is stopped and started again: is every
upload decided, with exactly one decision event each, and does the status route stay clear of 500?

It starts ``valet dev`` (its own Azurite, the watched blob trigger, the timers) in a temporary folder on
free loopback ports, with the reconciler due every ``--reconcile-every`` seconds for uploads older than
that (the defaults, every 5 minutes for uploads older than 10, would make the run wait that long), and
the per-caller rate limits off (one caller sends the whole burst). Then
``--uploads`` uploads (grant with the dev API key, PUT straight to storage; every tenth an HTML page
disguised as a PNG, to be quarantined) go up from ``--workers`` threads; once a third of them are up,
Azurite is stopped (SIGTERM to its PID, which ``valet dev`` started) for ``--outage`` seconds and started
again on the same ports and data by this script. A PUT that fails meanwhile is tried again (bounded); a
status poller asks every upload's status route all along, counting the answers. It ends when every
upload is decided, every decision's event is on the queue and no tombstone still owes one (or at
``--deadline``), then stops everything it started, by PID.

    .venv/bin/python bench/burst.py [--uploads 300] [--outage 10] [--workers 16] [--deadline 300]

Prints the figures as Markdown; exits 0 only when nothing was lost (every upload decided, one event
each, no 500). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import samples
from tests.support.devstack import DevStack, valet_dev
from valet.local.emulator import Azurite, listening_ports
from valet.storage import EmulatorCredential
from valet.validation.events import decode

UNDECIDED = ("pending", "retrying")


@dataclass
class BurstResult:
    uploads: int
    outage_seconds: float = 0.0  # from SIGTERM to the new Azurite answering
    stopping_seconds: float = 0.0  # from SIGTERM until Azurite said it closed (data saved)
    saved: bool = False  # it did say so (else it was killed after 30 s, and may have lost writes)
    put_ok: int = 0
    statuses: dict[str, str] = field(default_factory=dict)  # uploadId -> final status
    expected: dict[str, str] = field(default_factory=dict)  # uploadId -> "accepted" | "quarantined"
    events: Counter[str] = field(default_factory=Counter)  # uploadId -> decision events seen
    answers: Counter[int] = field(default_factory=Counter)  # status route: HTTP status -> count
    server_errors: list[str] = field(default_factory=list)  # status route 5xx other than 503: the bodies
    last_verdict_after_start: float = 0.0
    last_verdict_after_restart: float = 0.0
    elapsed: float = 0.0
    events_pending: int = 0  # tombstones that still owe their event at the end
    decided_at: dict[str, datetime] = field(default_factory=dict)  # uploadId -> decidedAt
    refused: Counter[str] = field(default_factory=Counter)  # grants and PUTs that did not succeed, by answer
    put_retries: int = 0  # PUTs tried again after a connection error or a 5xx (the outage hit them)

    @property
    def undecided(self) -> list[str]:
        return sorted(u for u in self.expected if self.statuses.get(u, "pending") in UNDECIDED)

    @property
    def wrong(self) -> list[str]:
        return sorted(u for u, want in self.expected.items() if self.statuses.get(u) not in (want, *UNDECIDED))

    @property
    def not_one_event(self) -> dict[str, int]:
        return {u: self.events.get(u, 0) for u in self.expected if self.events.get(u, 0) != 1}

    @property
    def lost_nothing(self) -> bool:
        return (self.put_ok == self.uploads and not self.undecided and not self.wrong and not self.not_one_event
                and not self.server_errors and not self.answers.get(500))


def _children(pid: int) -> Iterator[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid`` (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid:
                yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie holds no sockets; valet dev reaps it when it stops


class Outage:
    """Stops the Azurite ``valet dev`` started (by its PID) and starts one on the same ports and data."""

    def __init__(self, dev: DevStack) -> None:
        [(self.pid, _)] = [c for c in _children(dev.proc.pid) if "azurite" in c[1]]
        self.workdir = dev.root / ".valet" / "azurite"
        ports = listening_ports((self.workdir / "azurite.log").read_text())
        self.blob_port, self.queue_port = ports["blob"], ports["queue"]
        self.restarted: Azurite | None = None
        self.started_at = self.closed_at = self.gone_at = self.ended_at = 0.0
        self.saved = False  # Azurite said it closed (its data saved) before it was killed

    def run(self, seconds: float) -> None:
        """SIGTERM: Azurite stops answering, saves its data and says so ("... successfully closed"); it then
        waits for open connections to end, so once both services said it (or after 30 s) it gets SIGKILL.
        ``seconds`` after it is gone, a new Azurite on the same ports, data and certificate."""
        log = self.workdir / "azurite.log"
        offset = log.stat().st_size
        self.started_at = time.monotonic()
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not _gone(self.pid) and time.monotonic() < deadline:
            with log.open("rb") as f:
                f.seek(offset)
                said = f.read().decode(errors="replace")
            self.saved = "Blob service successfully closed" in said and "Queue service successfully closed" in said
            if self.saved:
                break
            time.sleep(0.05)
        self.saved = self.saved or _gone(self.pid)
        self.closed_at = time.monotonic()
        if not _gone(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        while not _gone(self.pid) and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        self.gone_at = time.monotonic()
        time.sleep(seconds)
        self.restarted = Azurite(self.workdir, blob_port=self.blob_port, queue_port=self.queue_port).start()
        self.ended_at = time.monotonic()

    def stop(self) -> None:
        if self.restarted is not None:
            self.restarted.stop()


def _with_retries(call: object, deadline: float) -> tuple[requests.Response | None, int]:
    """``call()`` until it answers something other than a connection error, a 429 or a 5xx, or
    ``deadline``; with the number of failed tries."""
    assert callable(call)
    delay, failures = 0.2, 0
    while time.monotonic() < deadline:
        try:
            response: requests.Response | None = call()
        except requests.RequestException:
            response = None
        if response is not None and response.status_code < 500 and response.status_code != 429:
            return response, failures
        failures += 1
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    return None, failures


def _one_upload(dev: DevStack, index: int, result: BurstResult, lock: threading.Lock, deadline: float) -> None:
    quarantine = index % 10 == 9
    data = samples.html() if quarantine else samples.png()
    headers = {"X-API-Key": dev.api_key}
    body: dict[str, Any] = {"filename": f"burst-{index}.png", "contentType": "image/png", "size": len(data)}
    granted, _ = _with_retries(lambda: requests.post(f"{dev.url}/api/uploads", json=body, headers=headers,
                                                     timeout=30), deadline)
    if granted is None or granted.status_code != 201:
        with lock:
            result.refused[f"grant {granted.status_code if granted is not None else 'gave up'}"] += 1
        return
    grant = granted.json()
    with lock:
        result.expected[grant["uploadId"]] = "quarantined" if quarantine else "accepted"
    put, failed = _with_retries(lambda: requests.put(grant["uploadUrl"], data=data, headers=grant["headers"],
                                                     verify=dev.ca, timeout=30), deadline)
    # A PUT whose answer was lost in the outage finds its blob there on the retry (create-only: 403).
    with lock:
        result.put_retries += failed
        if put is not None and put.status_code in (201, 403):
            result.put_ok += 1
        else:
            result.refused[f"put {put.status_code if put is not None else 'gave up'}"] += 1


def _poll(dev: DevStack, result: BurstResult, lock: threading.Lock, stop: threading.Event) -> None:
    headers = {"X-API-Key": dev.api_key}
    session = requests.Session()
    while not stop.is_set():
        with lock:
            todo = [u for u in result.expected if result.statuses.get(u, "pending") in UNDECIDED]
        for upload_id in todo:
            if stop.is_set():
                break
            try:
                answer = session.get(f"{dev.url}/api/uploads/{upload_id}", headers=headers, timeout=30)
            except requests.RequestException:
                continue
            with lock:
                result.answers[answer.status_code] += 1
                if answer.status_code >= 500 and answer.status_code != 503:
                    result.server_errors.append(answer.text[:300])
                if answer.status_code == 200:
                    doc = answer.json()
                    result.statuses[upload_id] = doc["status"]
                    if doc["status"] not in UNDECIDED and doc.get("decidedAt"):
                        decided = datetime.strptime(doc["decidedAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                        result.decided_at[upload_id] = decided
        stop.wait(0.5)


def _drain_events(queue: QueueClient, result: BurstResult) -> None:
    for _ in range(1000):  # bounded: 32 messages a page
        batch = list(queue.receive_messages(messages_per_page=32, visibility_timeout=300, max_messages=32))
        if not batch:
            return
        for message in batch:
            result.events[str(decode(message.content).get("uploadId"))] += 1
            queue.delete_message(message)


def _owed_events(service: BlobServiceClient, container: str) -> int:
    owed = 0
    for blob in service.get_container_client(container).list_blobs(include=["tags"]):
        if (blob.tags or {}).get("valetevent") == "pending":
            owed += 1
    return owed


def run(uploads: int = 300, outage: float = 10.0, workers: int = 16, deadline: float = 300.0,
        reconcile_every: int = 5, log: Path | None = None, keep: Path | None = None) -> BurstResult:
    result = BurstResult(uploads)
    started = time.monotonic()
    until = started + deadline
    env = {"VALET_RECONCILE_SCHEDULE": f"*/{reconcile_every} * * * * *",
           "VALET_RECONCILE_AFTER_SECONDS": str(reconcile_every),
           # one caller sends the whole burst: the per-caller budgets (120 grants, 600 status reads a
           # minute) would make this a rate-limit test instead (0 disables them)
           "VALET_RATE_LIMIT_PER_MINUTE": "0", "VALET_STATUS_RATE_LIMIT_PER_MINUTE": "0"}
    if keep is not None:
        keep.mkdir(parents=True)  # a new folder: never someone's existing .valet
    with (nullcontext(str(keep)) if keep else tempfile.TemporaryDirectory(prefix="valet-burst-")) as tmp, \
            open(log or Path(tmp) / "valet-dev.log", "w") as output, \
            valet_dev(Path(tmp), env, output=output) as dev:
        assert dev.url.startswith("http://127.0.0.1:"), dev.url  # loopback only
        fault = Outage(dev)
        lock, stop = threading.Lock(), threading.Event()
        poller = threading.Thread(target=_poll, args=(dev, result, lock, stop), daemon=True)
        poller.start()
        outage_thread = threading.Thread(target=fault.run, args=(outage,), daemon=True)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_one_upload, dev, i, result, lock, until) for i in range(uploads)]
                while result.put_ok < uploads // 3 and time.monotonic() < until and not all(f.done() for f in futures):
                    time.sleep(0.05)
                outage_thread.start()
                for future in futures:
                    future.result()
            outage_thread.join(timeout=max(0.0, until - time.monotonic()))
            url = f"https://127.0.0.1:{fault.queue_port}/devstoreaccount1"
            queue = QueueClient(url, "valet-decisions", credential=EmulatorCredential(url), connection_verify=dev.ca)
            blob_url = f"https://127.0.0.1:{fault.blob_port}/devstoreaccount1"
            service = BlobServiceClient(blob_url, credential=EmulatorCredential(blob_url), connection_verify=dev.ca)
            while time.monotonic() < until:
                _drain_events(queue, result)
                with lock:
                    decided = not result.undecided and len(result.statuses) >= len(result.expected)
                if decided and set(result.events) >= set(result.expected):
                    result.events_pending = _owed_events(service, "uploads")
                    if result.events_pending == 0:
                        break
                time.sleep(1)
            _drain_events(queue, result)
            result.events_pending = _owed_events(service, "uploads")
            queue.close()
            service.close()
        finally:
            stop.set()
            poller.join(timeout=30)
            fault.stop()  # the Azurite this script started; valet dev stops itself (and reaps the first one)
    result.elapsed = time.monotonic() - started
    if result.decided_at:
        last = max(result.decided_at.values())
        wall_started = datetime.now(UTC).timestamp() - (time.monotonic() - started)
        result.last_verdict_after_start = last.timestamp() - wall_started
        restart_wall = wall_started + (fault.ended_at - started)
        result.last_verdict_after_restart = last.timestamp() - restart_wall
    result.outage_seconds = fault.ended_at - fault.started_at
    result.stopping_seconds, result.saved = fault.closed_at - fault.started_at, fault.saved
    return result


def report(result: BurstResult, args: argparse.Namespace) -> str:
    finals = Counter(result.statuses.get(u, "pending") for u in result.expected)
    events = sum(result.events.values())
    lines = [
        f"`.venv/bin/python bench/burst.py --uploads {args.uploads} --outage {args.outage} --workers {args.workers}`"
        f" ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, {os.cpu_count()} CPUs)",
        "",
        "| what | result |",
        "|---|---|",
        f"| uploads granted / uploaded | {len(result.expected)} / {result.put_ok} of {result.uploads}"
        f"{' (' + ', '.join(f'{k}: {v}' for k, v in sorted(result.refused.items())) + ')' if result.refused else ''}"
        f"; PUTs tried again after a failure: {result.put_retries} |",
        f"| storage outage: SIGTERM until closed (data saved) / then down / SIGTERM until the new one answers"
        f" | {result.stopping_seconds:.1f} s{'' if result.saved else ' (never said so: killed)'} / "
        f"{args.outage:g} s / {result.outage_seconds:.1f} s |",
        f"| final statuses | {', '.join(f'{k} {v}' for k, v in sorted(finals.items()))} |",
        f"| undecided / wrong verdict | {len(result.undecided)} / {len(result.wrong)} |",
        f"| last verdict after the burst started / after storage came back | {result.last_verdict_after_start:.1f}"
        f" s / {result.last_verdict_after_restart:.1f} s (decidedAt, whole seconds) |",
        f"| decision events: total / uploads with exactly one / with none / with more | {events} / "
        f"{sum(1 for u in result.expected if result.events.get(u) == 1)} / "
        f"{sum(1 for u in result.expected if not result.events.get(u))} / "
        f"{sum(1 for u in result.expected if result.events.get(u, 0) > 1)} |",
        f"| tombstones still owing an event at the end | {result.events_pending} |",
        f"| status route answers | {', '.join(f'{k}: {v}' for k, v in sorted(result.answers.items()))} |",
        f"| status route 5xx other than 503 | {len(result.server_errors)} |",
        f"| whole run | {result.elapsed:.1f} s |",
    ]
    if result.server_errors:
        lines += ["", "5xx bodies (first 3):", *(f"    {body}" for body in result.server_errors[:3])]
    if result.not_one_event:
        lines += ["", f"uploads without exactly one event (first 10): {dict(list(result.not_one_event.items())[:10])}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds storage stays stopped")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--deadline", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--reconcile-every", type=int, default=5)
    parser.add_argument("--log", type=Path, help="keep valet dev's output here")
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep it: Azurite's log and data")
    args = parser.parse_args()
    if not (1 <= args.uploads <= 5000 and 0 <= args.outage <= 120 and 1 <= args.workers <= 64
            and 10 <= args.deadline <= 1800):
        parser.error("--uploads 1..5000, --outage 0..120, --workers 1..64, --deadline 10..1800")
    result = run(args.uploads, args.outage, args.workers, args.deadline, args.reconcile_every, args.log, args.keep)
    print(report(result, args))
    print(json.dumps({"lostNothing": result.lost_nothing}))
    return 0 if result.lost_nothing else 1


if __name__ == "__main__":
    sys.exit(main())
