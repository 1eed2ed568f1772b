"""Storage requests and time per decision, this tree beside another checkout, on one Azurite (issue 19).

Run: ``.venv/bin/python bench/decisions.py [--baseline PATH] [--runs N] [--rounds R]``

``--baseline`` is another checkout of valet (for example ``git worktree add /tmp/floor-base 29722eb``);
each design decides in its own child process with that tree's ``valet`` on ``sys.path``, against the one
Azurite started here, the designs alternating round by round so machine load falls on both. Every
decision is of a fresh small PNG uploaded with the grant's headers (``Validator.process`` called directly,
as the blob trigger calls it), with decision events on the real queue. Requests are counted at the HTTP
transport (each client's ``raw_response_hook``), blob and queue apart; the time is ``process()``'s wall
time, and the time until the tombstone write's response (from then on the status route gives the
verdict; the decision event is sent while the tombstone is written, its marker removed after both).
Printed: medians over all runs of each design, per case (no scanner; Defender with a clean tag on the
upload; the re-trigger on the tombstone).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
PROFILE = None
if os.environ.get("VALET_BENCH_PROFILE"):
    import cProfile
    PROFILE = cProfile.Profile()
DEFENDER_CLEAN = "Malware Scanning scan result=No threats found"


def child(tree: str, env: dict[str, str], runs: int) -> None:
    sys.path.insert(0, tree)
    from azure.storage.blob import BlobServiceClient, ContentSettings

    from tests.support import samples
    try:  # the grant side's home since issue 25; a baseline from before it has the loose modules
        from valet.grants.naming import blob_name, new_upload_id
        from valet.grants.token import GRANT_METADATA_KEY, GrantClaims
    except ImportError:
        from valet.grant_token import GRANT_METADATA_KEY, GrantClaims  # type: ignore[no-redef]
        from valet.naming import blob_name, new_upload_id  # type: ignore[no-redef]
    from valet.settings import Settings
    from valet.storage import EmulatorCredential, make_blob_service, make_decision_queue
    from valet.validation.events import QueueEvents
    from valet.validation.service import Validation

    counts: Counter[str] = Counter()
    stamps: dict[str, float] = {}
    kinds: Counter[str] = Counter()

    def hook(kind: str) -> Any:
        def count(response: Any) -> None:
            req = response.http_request
            marker = kind == "blob" and req.method == "PUT" and "comp=tags" in req.url
            if (kind == "blob" and req.method == "PUT" and "comp=" not in req.url
                    and "x-ms-copy-source" not in req.headers and "/uploads/" in req.url):
                stamps["tombstone"] = time.perf_counter()  # the verdict is durable (and the status says it)
            counts["marker" if marker else kind] += 1  # the event marker's removal counts with the events
            comp = "comp=" + req.url.split("comp=")[1].split("&")[0] if "comp=" in req.url else ""
            kinds[f"{kind} {req.method} {comp}".strip()] += 1
        return count

    url = env["VALET_STORAGE_ACCOUNT_URL"]
    cred = EmulatorCredential(url)
    out: dict[str, Any] = {}
    for case, scanners in (("no scanner", "none"), ("Defender", "defender")):
        settings = Settings.from_env({**env, "VALET_SCANNERS": scanners})
        # The clients the app makes (each tree's own valet.storage: timeouts, retries, transport options),
        # with the bench's response hook set on the storage SDK's hook policy (private: a bench only).
        blobs = make_blob_service(settings.storage, cred)
        queue = make_decision_queue(settings.storage, cred)
        for client, kind in ((blobs, "blob"), (queue, "queue")):
            hooks = [p for p in client._pipeline._impl_policies if type(p).__name__ == "StorageResponseHook"]
            assert len(hooks) == 1, "the storage SDK's response hook policy moved"
            hooks[0]._response_callback = hook(kind)
        validator = Validation.from_settings(settings, blobs, QueueEvents(queue)).validator
        plain = BlobServiceClient(url, credential=cred, connection_verify=env["VALET_STORAGE_CA_BUNDLE"])
        validator.process("warm/up.png")  # connections and first-call imports
        png = samples.png()
        rows: list[dict[str, float]] = []
        kinds.clear()
        for _ in range(runs):
            now = datetime.now(UTC).replace(microsecond=0)
            upload_id = new_upload_id(now, os.urandom)
            name = blob_name("bench/u-floor", upload_id, "png")
            claims = GrantClaims(upload_id, settings.storage.uploads_container, name, len(png), "image/png", None,
                                 "images", "bench", "bench", now, now + timedelta(minutes=3))
            tags = {"Malware Scanning scan result": "No threats found"} if scanners == "defender" else None
            plain.get_blob_client(settings.storage.uploads_container, name).upload_blob(
                png, metadata={GRANT_METADATA_KEY: settings.grant_keys.sign(claims)}, tags=tags,
                content_settings=ContentSettings(content_type="image/png"))
            counts.clear()
            started, cpu = time.perf_counter(), time.process_time()
            if PROFILE is not None:
                PROFILE.enable()
            decision = validator.process(name)
            ms = (time.perf_counter() - started) * 1000
            cpu_ms = (time.process_time() - cpu) * 1000  # this process's CPU (all its threads), not Azurite's
            if PROFILE is not None:
                PROFILE.disable()
            assert decision is not None and decision.outcome.value == "accepted", decision
            row = {"blob": counts["blob"], "queue": counts["queue"], "marker": counts["marker"], "ms": ms,
                   "verdict_ms": (stamps["tombstone"] - started) * 1000, "cpu_ms": cpu_ms}
            counts.clear()
            started = time.perf_counter()
            again = validator.process(name)  # what the tombstone's own trigger costs
            row["retrigger_ms"] = (time.perf_counter() - started) * 1000
            assert again is not None and again.outcome.value == "accepted"
            row["retrigger_blob"], row["retrigger_queue"] = counts["blob"], counts["queue"]
            rows.append(row)
        out[case] = {"rows": rows, "kinds": {k: v / runs for k, v in kinds.items()}}
    if PROFILE is not None:
        import pstats
        order = os.environ.get("VALET_BENCH_PROFILE_SORT", "cumulative")  # or tottime
        pstats.Stats(PROFILE, stream=sys.stderr).sort_stats(order).print_stats(45)
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", help="another checkout of valet, measured beside this one")
    parser.add_argument("--runs", type=int, default=12, help="decisions per design, case and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        args = json.loads(options.child)
        child(args["tree"], args["env"], args["runs"])
        return

    sys.path.insert(0, str(HERE))
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    from valet.local.emulator import Azurite
    from valet.storage import EmulatorCredential

    trees = {"this tree": str(HERE)}
    if options.baseline:
        trees = {"baseline": str(Path(options.baseline).resolve()), **trees}
    results: dict[str, dict[str, list[dict[str, float]]]] = {t: {} for t in trees}
    kinds: dict[str, dict[str, dict[str, float]]] = {t: {} for t in trees}
    with tempfile.TemporaryDirectory(prefix="valet-floor-") as work, Azurite(Path(work)) as azurite:
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        env = {
            "VALET_STORAGE_ACCOUNT_URL": azurite.blob_url, "VALET_STORAGE_CREDENTIAL": "emulator",
            "VALET_STORAGE_CA_BUNDLE": str(azurite.cert), "VALET_GRANT_SIGNING_KEYS": f"k1:{key}",
            "VALET_STORAGE_TIMEOUT_SECONDS": "60", "VALET_QUEUE_SERVICE_URL": azurite.queue_url,
        }
        svc = BlobServiceClient(azurite.blob_url, credential=EmulatorCredential(azurite.blob_url),
                                connection_verify=str(azurite.cert))
        for role in ("uploads", "accepted", "quarantine"):
            svc.create_container(role)
        QueueClient(azurite.queue_url, "valet-decisions", credential=EmulatorCredential(azurite.queue_url),
                    connection_verify=str(azurite.cert)).create_queue()
        for _ in range(options.rounds):
            for label, tree in trees.items():
                python = Path(tree) / ".venv" / "bin" / "python"
                done = subprocess.run(  # noqa: S603 - our own script, fixed argv
                    [str(python if python.exists() else sys.executable), __file__, "--child",
                     json.dumps({"tree": tree, "env": env, "runs": options.runs})],
                    capture_output=True, text=True, check=False, cwd=tree, timeout=900)
                if os.environ.get("VALET_BENCH_PROFILE"):
                    print(done.stderr[-12000:])
                if done.returncode:
                    raise SystemExit(done.stderr[-3000:])
                got = json.loads(done.stdout.strip().splitlines()[-1])
                for case, data in got.items():
                    results[label].setdefault(case, []).extend(data["rows"])
                    kinds[label][case] = data["kinds"]

    print(f"{options.rounds} round(s) x {options.runs} decisions per design and case; medians")
    print(f"{'design':<10} {'case':<11} {'n':>3} {'blob req':>8} {'event req (queue + marker)':>26} "
          f"{'decision ms':>11} {'to tombstone ms':>15} {'CPU ms':>6} {'re-trigger blob req':>19} "
          f"{'re-trigger ms':>13}")
    for label in trees:
        for case, rows in results[label].items():
            def med(key: str, rows: list[dict[str, float]] = rows) -> float:
                return statistics.median(r[key] for r in rows)
            events = f"{med('queue') + med('marker'):.0f} ({med('queue'):.0f} + {med('marker'):.0f})"
            print(f"{label:<10} {case:<11} {len(rows):>3} {med('blob'):>8.0f} {events:>26} "
                  f"{med('ms'):>11.1f} {med('verdict_ms'):>15.1f} {med('cpu_ms'):>6.1f} {med('retrigger_blob'):>19.0f} "
                  f"{med('retrigger_ms'):>13.1f}")
    for label in trees:
        for case, per in kinds[label].items():
            print(f"{label} / {case}: " + ", ".join(f"{k} x{v:g}" for k, v in sorted(per.items())))


if __name__ == "__main__":
    main()
