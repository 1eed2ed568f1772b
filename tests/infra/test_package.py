"""The deployment package: the files ``.funcignore`` leaves in (read as gitignore, and checked against git's
own reading), copied to a folder of their own, from which a fresh interpreter imports the app, with no part
of the local stack or the Python client in it or loaded, and serves the JavaScript client's module."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.infra.funcignore import deployment_files, excluded, parse

ROOT = Path(__file__).resolve().parents[2]
JS_CLIENT = "clients/js/valet-upload.js"
# What a developer's checkout holds besides the repository's files (all of it must stay out).
LOCAL_FILES = [
    ".venv/lib/python3.11/site-packages/valet_client/__init__.py", ".venv-checkov/bin/checkov",
    "node_modules/azurite/package.json", "valet/__pycache__/api.cpython-311.pyc", ".valet/dev.env",
    ".valet/azurite/tls/key.pem", "local.settings.json", "valet.egg-info/PKG-INFO", "test-artifacts/page.png",
    ".pytest_cache/v/cache/nodeids", "build/lib/valet/api.py", "dist/valet-0.1.0.tar.gz",
    "clients/python/valet_client.egg-info/PKG-INFO", "clients/python/build/lib/valet_client/cli.py",
    "clients/js/node_modules/x/index.js", "clients/js/valet-upload-client-0.1.0.tgz",
    "clients/js/valet-upload.js.map", "valet/local/__pycache__/dev.cpython-311.pyc",
]

CHILD = """
import json, sys
sys.path[:0] = [sys.argv[1]]          # the package folder, as the Functions host puts the script root first
sys.path.append(sys.argv[2])          # the virtualenv's site-packages, without its .pth files (no editable installs)
import azure.functions as func
import function_app

def missing(name):
    try:
        __import__(name)
    except ModuleNotFoundError:
        return True
    return False

functions = {f.get_function_name(): f for f in function_app.app.get_functions()}  # indexed once, as the host does
page = functions["upload_page"].get_user_function()
served = page(func.HttpRequest(method="GET", url="https://valet.example/api/ui/valet-upload.js", body=b"",
                               route_params={"asset": "valet-upload.js"}))
import valet
print(json.dumps({
    "functions": sorted(functions),
    "valet": valet.__file__,
    "loaded": sorted(m for m in sys.modules if m == "valet_client" or m.startswith(("valet.local", "valet_client."))),
    "local_missing": missing("valet.local"), "client_missing": missing("valet_client"),
    "status": served.status_code, "mimetype": served.mimetype, "body": served.get_body().hex(),
}))
"""


@pytest.fixture(scope="module")
def files() -> list[str]:
    return deployment_files(ROOT)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_funcignore_is_read_as_git_reads_gitignore(tmp_path: Path, files: list[str]) -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                             timeout=60).stdout.decode().split("\0")
    mirror = tmp_path / "tree"
    for name in {*filter(None, tracked), *files, *LOCAL_FILES}:
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).touch()  # empty: no .gitignore in the mirror adds a pattern
    shutil.copy(ROOT / ".funcignore", mirror / ".funcignore")
    subprocess.run(["git", "init", "-q"], cwd=mirror, check=True, timeout=60)
    shutil.copy(ROOT / ".funcignore", mirror / ".git" / "info" / "exclude")
    listed = subprocess.run(["git", "-c", "core.excludesFile=/dev/null", "ls-files", "--others", "--exclude-standard",
                             "-z"], cwd=mirror, capture_output=True, check=True, timeout=60).stdout.decode()
    assert sorted(filter(None, listed.split("\0"))) == deployment_files(mirror)


def test_the_matcher_follows_gitignore_rules() -> None:
    rules = parse("# comment\n\nbuild/\n*.pyc\n/top.txt\ndocs/**/*.md\nkeep/*\n!keep/this.js\n\\#hash\n")
    assert excluded(rules, "build", is_dir=True) and not excluded(rules, "build", is_dir=False)
    assert excluded(rules, "a/b/c.pyc", is_dir=False)
    assert excluded(rules, "top.txt", is_dir=False) and not excluded(rules, "sub/top.txt", is_dir=False)
    assert excluded(rules, "docs/a.md", is_dir=False) and excluded(rules, "docs/x/y/a.md", is_dir=False)
    assert excluded(rules, "keep/other.js", is_dir=False) and not excluded(rules, "keep/this.js", is_dir=False)
    assert excluded(rules, "#hash", is_dir=False) and not excluded(rules, "comment", is_dir=False)


def test_the_package_holds_the_app_and_the_page_module_and_nothing_local(files: list[str]) -> None:
    for needed in ("function_app.py", "host.json", "requirements.txt", "valet/api.py", "valet/openapi.json",
                   "valet/default_profiles.json", "valet/ui/index.html", "valet/ui/valet-upload.css", JS_CLIENT):
        assert needed in files
    assert not [f for f in files if f.startswith(("valet/local/", "clients/python/", "tests/", "bench/", "scripts/",
                                                  "infra/", "docs/", ".venv", "node_modules/"))]
    assert [f for f in files if f.startswith("clients/")] == [JS_CLIENT]
    assert "valet/__main__.py" not in files and "valet/grantshell.py" not in files  # both start valet.local code
    assert not [f for f in files if "valet_client" in f or f.endswith((".pyc", ".md"))]
    importing = [f for f in files if f.endswith(".py") and any(
        text in (ROOT / f).read_text("utf-8") for text in ("valet.local", "valet_client", "from .local"))]
    assert importing == [], "deployed code that names the local stack or the Python client"


def test_the_app_imports_and_serves_the_page_module_from_the_package_alone(tmp_path: Path, files: list[str]) -> None:
    package = tmp_path / "package"
    for name in files:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, package / name)
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    env = {"PATH": os.environ["PATH"], "VALET_UI_ENABLED": "true", "VALET_STORAGE_CREDENTIAL": "emulator",
           "VALET_STORAGE_ACCOUNT_URL": f"https://127.0.0.1:{_closed_port()}/devstoreaccount1",
           "VALET_GRANT_SIGNING_KEYS": f"k1:{key}", "VALET_STORAGE_TIMEOUT_SECONDS": "1"}
    done = subprocess.run([sys.executable, "-I", "-S", "-c", CHILD, str(package), sysconfig.get_path("purelib")],
                          cwd=package, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert Path(result["valet"]).is_relative_to(package)
    assert {"create_upload", "upload_page", "validate_upload", "reconcile_uploads"} <= set(result["functions"])
    assert result["loaded"] == []
    assert result["local_missing"] and result["client_missing"]
    assert result["status"] == 200 and result["mimetype"] == "text/javascript"
    assert bytes.fromhex(result["body"]) == (package / JS_CLIENT).read_bytes() == (ROOT / JS_CLIENT).read_bytes()
