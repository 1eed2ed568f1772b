"""checkov, an IaC analyzer, on infra/: no failed check, and every suppression says why.

checkov runs from its own virtualenv (.venv-checkov, made by scripts/setup.sh; it cannot share .venv).
Offline: --skip-download keeps it from fetching guidelines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA, ROOT

CHECKOV = Path(os.environ.get("VALET_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))


def checkov(directory: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}; run scripts/setup.sh")
    result = subprocess.run(
        [str(CHECKOV), "--directory", str(directory), "--framework", "bicep", "--skip-download",
         "--output", "json"],
        capture_output=True, text=True, timeout=600, check=False, cwd=directory,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1: some check failed
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report  # type: ignore[no-any-return]


@cache
def infra_report() -> dict[str, Any]:
    return checkov(INFRA)


def test_checkov_finds_no_failed_check() -> None:
    report = infra_report()
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 30  # it really looked at the templates
    assert summary["resource_count"] >= 30
    scanned = {c["file_path"].lstrip("/") for c in report["results"]["passed_checks"]}
    assert {"main.bicep", "resources.bicep", "malware.bicep"} <= scanned


def test_every_suppression_is_justified() -> None:
    skipped = infra_report()["results"]["skipped_checks"]
    assert skipped, "expected the documented suppressions"
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "").strip()) >= 40, check["check_id"]
    for path in INFRA.glob("*.bicep"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"checkov:skip=CKV2?_AZURE_\d+: \S.{40,}", line), f"{path.name}: {line.strip()}"


def test_checkov_fails_a_weakened_template(tmp_path: Path) -> None:
    """Proof the scan can fail: the same templates with HTTP allowed are reported."""
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    resources = copy / "resources.bicep"
    text = resources.read_text()
    weakened = text.replace("supportsHttpsTrafficOnly: true", "supportsHttpsTrafficOnly: false")
    weakened = weakened.replace("httpsOnly: true", "httpsOnly: false").replace("minTlsVersion: '1.2'", "minTlsVersion: '1.0'")
    assert weakened != text
    resources.write_text(weakened)
    failed = {c["check_id"] for c in checkov(copy)["results"]["failed_checks"]}
    assert {"CKV_AZURE_3", "CKV_AZURE_14", "CKV_AZURE_15"} <= failed
