"""The benchmark scripts still run (tiny sizes; the figures themselves come from documented full runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from valet.emulator import PROJECT_ROOT

pytestmark = pytest.mark.azurite


def run(*argv: str) -> str:
    result = subprocess.run([sys.executable, *argv], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_grants_benchmark_runs() -> None:
    out = run("bench/grants.py", "--rounds", "1", "--grants", "20", "--reference-grants", "5")
    assert "| valet (cached user delegation key) |" in out and "**ratio**" in out


def test_validation_benchmark_runs() -> None:
    out = run("bench/validate.py", "--runs", "1", "--gib", "0.01")
    assert "blob bytes read per accepted upload" in out and "ratio to hashlib" in out


def test_faults_benchmark_runs() -> None:
    out = run("bench/faults.py", "--runs", "1", "--timeout", "1", "--modes", "down", "--outages", "3")
    assert "| down | 503 |" in out and "| 3 | 2 |" in out
