"""valet's patch of the pinned Azurite: pinned to the version, applied by ``npm ci`` and checked at start.

What the patched emulator then allows is pinned with raw HTTP in tests/integration/test_create_only_blocks.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from valet.local.emulator import PATCH_MARK, EmulatorError, check_patched, patch_file, patched_version, pinned_version

ROOT = Path(__file__).resolve().parents[2]


def test_the_patch_is_named_for_the_exact_pinned_version_and_install_fails_on_a_mismatch() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    version = package["dependencies"]["azurite"]
    assert version[0].isdigit() and version == pinned_version(ROOT)  # exact, no range: the patch fits one version
    assert patch_file(ROOT).name == f"azurite+{version}.patch" and patch_file(ROOT).exists()
    assert sorted(p.name for p in (ROOT / "patches").iterdir()) == [patch_file(ROOT).name]
    postinstall = package["scripts"]["postinstall"].split()
    assert postinstall[0] == "patch-package" and "--error-on-warn" in postinstall and "--error-on-fail" in postinstall
    assert package["devDependencies"]["patch-package"][0].isdigit()


def test_the_patch_touches_only_azurites_sas_authorization() -> None:
    text = patch_file(ROOT).read_text()
    touched = [line.split(" b/", 1)[1] for line in text.splitlines() if line.startswith("diff --git")]
    assert touched == [f"node_modules/azurite/dist/src/blob/{name}" for name in (
        "authentication/AccountSASAuthenticator.js", "authentication/BlobSASAuthenticator.js",
        "authentication/OperationBlobSASPermission.js", "errors/StorageErrorFactory.js")]
    assert '"2026-04-06"' in text and "UnauthorizedBlobOverwrite" in text


def test_the_installed_azurite_carries_the_patch_and_the_image_tag_names_it() -> None:
    check_patched(ROOT)  # npm ci ran the postinstall
    digest = hashlib.sha256(patch_file(ROOT).read_bytes()).hexdigest()[:10]
    assert patched_version(ROOT) == f"{pinned_version(ROOT)}-valet.{digest}"
    script = subprocess.run(["bash", "-c", f'sha256sum "{patch_file(ROOT)}" | cut -c1-10'], capture_output=True,
                            text=True, check=True, timeout=30)
    assert script.stdout.strip() == digest  # scripts/azurite-image.sh tags with the same digest


def test_an_unpatched_azurite_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"azurite": "3.37.0"}}))
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / "azurite+3.37.0.patch").write_text("")
    installed = tmp_path / "node_modules/azurite/dist/src/blob/authentication/OperationBlobSASPermission.js"
    installed.parent.mkdir(parents=True)
    installed.write_text("exports.OperationBlobSASPermission = OperationBlobSASPermission;\n")
    with pytest.raises(EmulatorError, match=r"lacks valet's patch \(patches/azurite\+3.37.0.patch\): run `npm ci`"):
        check_patched(tmp_path)
    installed.write_text(f"function {PATCH_MARK}() {{}}\n")
    check_patched(tmp_path)
