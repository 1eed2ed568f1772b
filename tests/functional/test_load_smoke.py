"""``bench/load.py`` still runs: valet dev, locust as a second process, both routes (tiny duration; the
figures come from documented full runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from valet.local.emulator import PROJECT_ROOT

pytestmark = pytest.mark.azurite


def test_load_benchmark_runs_both_routes_without_errors() -> None:
    result = subprocess.run([sys.executable, "bench/load.py", "--users", "4", "--seconds", "2", "--rounds", "1"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| `GET /api/health` |" in result.stdout and "| `POST /api/uploads` |" in result.stdout
    assert "grant / health throughput: **" in result.stdout
