"""The long fuzzing run: ``tests/functional/test_api_fuzz.py`` with more generated requests.

Runs that test module with pytest (it starts ``valet dev`` on free ports itself) with
``VALET_FUZZ_EXAMPLES`` random examples per operation, generation mode and credential, and prints the
counts it wrote: requests sent per operation, mode and status, 5xx responses and responses that failed a
check. Exits non-zero if pytest failed (a 5xx, a response that does not conform, or fewer requests than
``--min-requests``).

    .venv/bin/python bench/fuzz.py [--examples 300] [--min-requests 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300, help="random examples per operation, mode, credential")
    parser.add_argument("--min-requests", type=int, default=1000, help="fail when fewer requests were sent")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.json"
        env = {**os.environ, "VALET_FUZZ_EXAMPLES": str(args.examples),
               "VALET_FUZZ_MIN_REQUESTS": str(args.min_requests), "VALET_FUZZ_REPORT": str(report)}
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/functional/test_api_fuzz.py"],
            cwd=ROOT, env=env, check=False,
        )
        elapsed = time.monotonic() - started
        if not report.exists():
            print("fuzz: no report written (did the tests run?)", file=sys.stderr)
            return result.returncode or 1
        counts = json.loads(report.read_text())

    print(f"\n# bench/fuzz.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, "
          f"{platform.machine()}, examples={args.examples}, {elapsed:.0f} s, pytest exit {result.returncode}\n")
    print("| measure | count |\n|---|---:|")
    print(f"| requests sent | {counts['requests']:,} |")
    print(f"| 5xx responses | {counts['server_errors']} |")
    print(f"| responses failing a check (conformance) | {counts['nonconforming']} |")
    for name in ("by_operation", "by_mode", "by_status"):
        for key, value in counts[name].items():
            print(f"| {name.removeprefix('by_')} `{key}` | {value:,} |")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
