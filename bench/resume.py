"""Benchmark of block uploads and resuming, against one ``valet dev`` (its patched Azurite) started here.

Run: ``.venv/bin/python bench/resume.py [--mib 1024] [--runs 3]``

Prints, as a table (medians of ``--runs``, all in one run of this script, on the same Azurite):

* MiB/s of the same random file through ``valet-upload --mode blocks`` (8 MiB blocks, four at a time; the
  command as a user runs it, grant and commit included), one Put Blob with the grant's URL (``requests``
  streaming the file), and the Python SDK's ``upload_blob`` on the grant's URL (its defaults: 4 MiB blocks
  above 64 MiB, with ``max_concurrency=4`` as valet's client uses);
* ``valet-upload`` killed with SIGKILL at about half way, then run again: the bytes sent towards storage by
  both runs (counted on the wire by a loopback CONNECT proxy, so TLS and HTTP overhead are included)
  divided by the file size (target <= 1.1), and the wall time of the second run (the time to resume);
* the verdict of each resumed upload (the status route while blocks are staged, and after the commit).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from azure.storage.blob import BlobClient

from tests.support.countingproxy import CountingProxy
from tests.support.devstack import DevStack, valet_dev
from valet_client import ValetClient

MiB = 1024 * 1024
PROFILES = {"default": "bulk",
            "profiles": {"bulk": {"maxBytes": 8 * 1024 * MiB, "types": {"application/octet-stream": ["bin"]}}}}
COMMAND = str(Path(sys.executable).with_name("valet-upload"))


def write_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


def client_env(stack: DevStack, journal: Path, proxy: CountingProxy | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    env.update(VALET_URL=stack.url, VALET_API_KEY=stack.api_key, VALET_STORAGE_CA_BUNDLE=stack.ca,
               VALET_UPLOAD_JOURNAL_DIR=str(journal), PYTHONUNBUFFERED="1")
    if proxy is not None:
        env["HTTPS_PROXY"] = proxy.url
    return env


def argv(path: Path) -> list[str]:
    return [COMMAND, str(path), "--content-type", "application/octet-stream", "--mode", "blocks", "--no-wait"]


def settle(stack: DevStack, upload_id: str) -> None:
    """Wait for the validator's verdict (its copy of the blob) before the next timed upload starts."""
    client(stack).wait(f"{stack.url}/api/uploads/{upload_id}", timeout=600, interval=0.2)


def valet_blocks(stack: DevStack, path: Path, work: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own command, argv built here
        [*argv(path), "--quiet"], env=client_env(stack, work / "journal-plain"), check=True, capture_output=True,
        text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    settle(stack, done.stdout.split(" upload ", 1)[1].split(",", 1)[0])
    return elapsed


def client(stack: DevStack) -> ValetClient:
    return ValetClient(stack.url, api_key=stack.api_key, storage_verify=stack.ca)


def put_blob(stack: DevStack, path: Path) -> float:
    grant = client(stack).grant(filename=path.name, content_type="application/octet-stream", size=path.stat().st_size)
    started = time.perf_counter()
    with path.open("rb") as f:
        response = requests.put(grant["uploadUrl"], data=f, headers=grant["headers"], verify=stack.ca, timeout=1800)
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.status_code
    settle(stack, grant["uploadId"])
    return elapsed


def sdk_upload(stack: DevStack, path: Path) -> float:
    grant = client(stack).grant(filename=path.name, content_type="application/octet-stream", size=path.stat().st_size)
    blob = BlobClient.from_blob_url(grant["uploadUrl"], connection_verify=stack.ca)
    started = time.perf_counter()
    with path.open("rb") as f:
        blob.upload_blob(f, length=path.stat().st_size, max_concurrency=4)
    elapsed = time.perf_counter() - started
    settle(stack, grant["uploadId"])
    return elapsed


def killed_and_resumed(stack: DevStack, path: Path, work: Path, run: int) -> dict[str, object]:
    size = path.stat().st_size
    journal = work / f"journal-kill-{run}"
    proxy = CountingProxy()
    env = client_env(stack, journal, proxy)
    first = subprocess.Popen(  # noqa: S603 - our own command, argv built here
        argv(path), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 1800
    assert first.stdout is not None
    for line in first.stdout:  # "uploaded N of M bytes (50%, ...)" every 10 %
        if (line.startswith("uploaded ") and int(line.split()[1]) >= size // 2) or time.monotonic() > deadline:
            break
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    first.stdout.close()
    time.sleep(0.5)
    grant = json.loads(next(journal.glob("*.json")).read_text())["grant"]
    during = client(stack).status(grant["statusUrl"])["status"]  # blocks staged, nothing committed
    sent_first = proxy.sent
    started = time.perf_counter()
    again = subprocess.run(  # noqa: S603 - our own command, argv built here
        argv(path), env=env, capture_output=True, text=True, timeout=1800, check=True)
    resume_seconds = time.perf_counter() - started
    committed = time.perf_counter()
    verdict = client(stack).wait(grant["statusUrl"], timeout=300, interval=0.2)["status"]
    verdict_seconds = time.perf_counter() - committed
    time.sleep(0.5)
    total = proxy.sent
    proxy.close()
    resumed = next((line for line in again.stdout.splitlines() if line.startswith("resumed:")), "")
    return {"ratio": total / size, "first": sent_first, "second": total - sent_first, "resume": resume_seconds,
            "during": during, "verdict": verdict, "verdict_seconds": verdict_seconds, "resumed": resumed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mib * MiB
    with tempfile.TemporaryDirectory(prefix="valet-bench-resume-") as tmp:
        work = Path(tmp)
        path = work / "big.bin"
        write_file(path, size)
        (work / "dev").mkdir()
        with (work / "dev.log").open("w") as log, valet_dev(
                work / "dev", extra_env={"VALET_PROFILES": json.dumps(PROFILES)}, output=log) as stack:
            times: dict[str, list[float]] = {"blocks": [], "put": [], "sdk": []}
            kills: list[dict[str, object]] = []
            for run in range(args.runs):  # interleaved, so a busy moment of the shared machine hits each
                times["blocks"].append(valet_blocks(stack, path, work))
                times["put"].append(put_blob(stack, path))
                times["sdk"].append(sdk_upload(stack, path))
                kills.append(killed_and_resumed(stack, path, work, run))
                print(f"run {run + 1}: blocks {times['blocks'][-1]:.1f} s, put {times['put'][-1]:.1f} s, "
                      f"sdk {times['sdk'][-1]:.1f} s, kill+resume ratio {kills[-1]['ratio']:.3f}, "
                      f"resume {kills[-1]['resume']:.1f} s", file=sys.stderr)
    rate = {k: args.mib / statistics.median(v) for k, v in times.items()}
    ratios = [float(k["ratio"]) for k in kills]  # type: ignore[arg-type]
    resumes = [float(k["resume"]) for k in kills]  # type: ignore[arg-type]
    print(f"\nFile: {args.mib} MiB of random bytes; medians of {args.runs} runs; one valet dev (patched Azurite "
          "3.37.0, loopback HTTPS).\n")
    print("| upload | MiB/s (median) | runs (s) |")
    print("|---|---|---|")
    print(f"| `valet-upload --mode blocks` (8 MiB blocks, 4 in flight) | {rate['blocks']:.1f} | "
          + ", ".join(f"{t:.1f}" for t in times["blocks"]) + " |")
    print(f"| one Put Blob (`requests`, the grant's URL) | {rate['put']:.1f} | "
          + ", ".join(f"{t:.1f}" for t in times["put"]) + " |")
    print(f"| Python SDK `upload_blob` (4 MiB blocks, `max_concurrency=4`) | {rate['sdk']:.1f} | "
          + ", ".join(f"{t:.1f}" for t in times["sdk"]) + " |")
    print("\n| killed at about half way, then run again | median | runs |")
    print("|---|---|---|")
    print(f"| bytes sent (both runs, on the wire) / file size | {statistics.median(ratios):.3f} | "
          + ", ".join(f"{r:.3f}" for r in ratios) + " |")
    print(f"| time to resume (second run, wall clock) | {statistics.median(resumes):.1f} s | "
          + ", ".join(f"{r:.1f}" for r in resumes) + " |")
    print(f"| status while blocks were staged | {', '.join(str(k['during']) for k in kills)} | |")
    print(f"| verdict after the resumed commit | {', '.join(str(k['verdict']) for k in kills)} | "
          + ", ".join(f"{float(k['verdict_seconds']):.1f} s" for k in kills) + " after the commit |")  # type: ignore[arg-type]
    for k in kills:
        print(f"<!-- {k['resumed']}; first run {k['first']} B, second run {k['second']} B -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
