"""The clients as their own distributions.

Python: ``pip install ./clients/python`` into a fresh virtualenv (no system site-packages) brings
``valet_client`` and ``valet-upload`` with ``requests`` and nothing of the server: no ``azure``, no
``valet``, no ``puremagic``. The folder is copied first, so the build writes nothing into the checkout and
needs no file outside ``clients/python``.

JavaScript: ``npm pack --dry-run`` in ``clients/js`` (no network) packs the module, and Node resolves the
package's name to it, at the Python client's version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"
NPM, NODE = shutil.which("npm"), shutil.which("node")
# requests and what requests itself needs; pip (and, on some Pythons, setuptools) come with every venv.
ALLOWED = {"valet-client", "requests", "urllib3", "idna", "certifi", "charset-normalizer", "pip", "setuptools"}

PROBE = """
import importlib.metadata, json, sys
def missing(name):
    try:
        __import__(name)
    except ModuleNotFoundError:
        return True
    return False
import valet_client
print(json.dumps({
    "client": valet_client.__file__, "api": sorted(valet_client.__all__), "version": valet_client.__version__,
    "installed": importlib.metadata.version("valet-client"),
    "missing": {name: missing(name) for name in ("azure", "valet", "puremagic", "waitress")},
    "distributions": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
}))
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    work = tmp_path_factory.mktemp("client-dist")
    source = work / "python"
    shutil.copytree(ROOT / "clients" / "python", source,
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__"))
    env_dir = work / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True, timeout=120)
        python = env_dir / "bin" / "python"
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               str(source)], capture_output=True, text=True, timeout=300, check=False, cwd=work)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield env_dir, work
    finally:
        shutil.rmtree(env_dir, ignore_errors=True)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "VALET_"))}


@pytest.mark.timeout(600)
def test_the_client_installs_alone_with_requests_and_nothing_of_the_server(venv: tuple[Path, Path]) -> None:
    env_dir, work = venv
    done = subprocess.run([str(env_dir / "bin" / "python"), "-c", PROBE], cwd=work, env=_clean_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout)
    assert Path(probe["client"]).is_relative_to(env_dir)  # the installed copy, not the checkout
    version = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    assert probe["version"] == probe["installed"] == version
    assert {"ValetClient", "UploadError", "UploadResult", "EXIT_USAGE"} <= set(probe["api"])
    assert probe["missing"] == {"azure": True, "valet": True, "puremagic": True, "waitress": True}
    assert "valet-client" in probe["distributions"] and "requests" in probe["distributions"]
    assert set(probe["distributions"]) <= ALLOWED, set(probe["distributions"]) - ALLOWED


@pytest.mark.timeout(600)
def test_valet_upload_runs_from_the_fresh_virtualenv(venv: tuple[Path, Path]) -> None:
    env_dir, work = venv
    command = str(env_dir / "bin" / "valet-upload")
    helped = subprocess.run([command, "--help"], cwd=work, env=_clean_env(), capture_output=True, text=True,
                            timeout=60, check=False)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: valet-upload") and "--download-url" in helped.stdout
    missing = subprocess.run([command, "no-such-file.png", "--url", "http://127.0.0.1:9"], cwd=work,
                             env=_clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2 and "valet-upload: no-such-file.png is not a file" in missing.stderr
    no_url = subprocess.run([command, str(env_dir / "bin" / "python")], cwd=work, env=_clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert no_url.returncode == 2 and "valet-upload: give --url or set VALET_URL" in no_url.stderr


@pytest.mark.skipif(NPM is None or NODE is None, reason="needs Node.js and npm on PATH")
def test_the_js_package_packs_the_module_at_the_python_clients_version() -> None:
    assert NPM is not None and NODE is not None
    packed = subprocess.run([NPM, "pack", "--dry-run", "--json", "--ignore-scripts", "--offline"], cwd=JS,
                            capture_output=True, text=True, timeout=120, check=False)
    assert packed.returncode == 0, packed.stderr[-2000:]
    (info,) = json.loads(packed.stdout)
    assert sorted(f["path"] for f in info["files"]) == ["README.md", "package.json", "valet-upload.js"]
    manifest = json.loads((JS / "package.json").read_text("utf-8"))
    python = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text("utf-8"))["project"]
    assert info["version"] == manifest["version"] == python["version"]
    assert manifest["type"] == "module" and manifest["exports"] == {".": "./valet-upload.js"}
    assert not any(key in manifest for key in ("dependencies", "peerDependencies", "scripts"))  # no build step
    script = 'import * as m from "valet-upload-client"; console.log(JSON.stringify(Object.keys(m).sort()))'
    done = subprocess.run([NODE, "--input-type=module", "-e", script], cwd=JS, capture_output=True, text=True,
                          timeout=60, check=False)  # the package's own name resolves through "exports"
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"requestGrant", "putToStorage", "waitForDecision", "renewGrant", "ValetError"} <= set(json.loads(done.stdout))
