"""The benchmark scripts still run (tiny sizes; the figures themselves come from documented full runs)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from valet.local.emulator import PROJECT_ROOT

pytestmark = pytest.mark.azurite


def run(*argv: str) -> str:
    result = subprocess.run([sys.executable, *argv], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_grants_benchmark_runs() -> None:
    out = run("bench/grants.py", "--rounds", "1", "--grants", "20", "--reference-grants", "5", "--quota-grants", "10",
              "--telemetry", "--telemetry-rounds", "3", "--telemetry-grants", "5", "--telemetry-gc-grants", "500")
    assert "| valet (cached user delegation key) |" in out and "**ratio**" in out
    assert "| valet (cached user delegation key) | " in out and "| 0.0 |" in out  # no storage request per grant
    # quotas: none without a quota; one Table transaction per uncontended grant with one
    assert re.search(r"\| without a quota \|.*\| 0\.00 \|", out) and re.search(r"\| with quota \+ tenantQuota \|.*\| 1\.00 \|", out)
    assert all(re.search(rf"^\| {n} \| \d+ \| [\d.]+ \|", out, re.M) for n in (1, 8, 32))
    assert "| telemetry on, every span recorded (in-memory exporter and reader) |" in out
    assert re.search(r"^\| frozen \| \d+ \| ", out, re.M)  # the full collections' pauses


def test_telemetry_parts_benchmark_runs() -> None:
    out = run("bench/telemetry_parts.py", "--rounds", "2", "--items", "20")
    assert re.search(r"^\| the grant's span alone .* \| [\d.]+ µs \| \d+ % \|$", out, re.M)


def test_validation_benchmark_runs() -> None:
    out = run("bench/validate.py", "--runs", "1", "--gib", "0.01")
    assert "blob bytes read per accepted upload" in out and "ratio to hashlib" in out


def test_structure_benchmark_runs_and_images_cost_nothing_beyond_the_head() -> None:
    out = run("bench/structure.py")
    assert "| PNG 4000x3000 |" in out and "| PDF, 300 pages (over the budget) |" in out
    for kind in ("PNG", "JPEG", "GIF", "WEBP"):
        assert any(line.startswith(f"| {kind} ") and "| 0 | 0 |" in line for line in out.splitlines())


def test_faults_benchmark_runs() -> None:
    out = run("bench/faults.py", "--runs", "1", "--timeout", "1", "--modes", "down", "--outages", "3")
    assert "| down | 503 |" in out and "| 3 | 2 |" in out


def test_decisions_benchmark_runs_and_counts_the_blob_requests() -> None:
    out = run("bench/decisions.py", "--runs", "2", "--rounds", "1")
    rows = [re.match(r"this tree\s+(no scanner|Defender)\s+(\d+)\s+(\d+)\s", line) for line in out.splitlines()]
    found = {m.group(1): (m.group(2), m.group(3)) for m in rows if m}
    assert found == {"no scanner": ("2", "3"), "Defender": ("2", "4")}, out  # n, blob requests per decision


def test_resume_benchmark_runs() -> None:
    out = run("bench/resume.py", "--mib", "40", "--runs", "1")
    assert "| `valet-upload --mode blocks` (8 MiB blocks, 4 in flight) |" in out
    assert "| bytes sent (both runs, on the wire) / file size |" in out and "| accepted |" in out
