"""``valet dev`` as a subprocess, driven over real HTTP: grant with the dev token and the dev API key, a
curl-style upload, the watched blob trigger deciding, the reference client, a malware event through the
admin endpoint, and a clean shutdown on SIGINT."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.devstack import valet_dev
from tests.support.samples import malware_event, png
from valet.local.emulator import PROJECT_ROOT, free_port, listening_ports, port_in_use

pytestmark = pytest.mark.azurite


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], Path]]:
    with valet_dev(tmp_path) as stack:
        yield stack.proc, stack.env, stack.root


def test_valet_dev_end_to_end_and_clean_shutdown(dev: tuple[subprocess.Popen[str], dict[str, str], Path]) -> None:
    proc, env, root = dev
    url, token, api_key = env["VALET_URL"], env["VALET_DEV_TOKEN"], env["VALET_DEV_API_KEY"]
    data = png()
    body = {"filename": "a.png", "contentType": "image/png", "size": len(data)}
    ca = str(root / ".valet" / "azurite" / "tls" / "cert.pem")

    by_token = requests.post(f"{url}/api/uploads", json=body, headers={"Authorization": f"Bearer {token}"},
                             timeout=10)
    assert by_token.status_code == 201, by_token.text
    by_key = requests.post(f"{url}/api/uploads", json=body, headers={"X-API-Key": api_key}, timeout=10)
    assert by_key.status_code == 201, by_key.text

    grant = by_token.json()
    curl = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca, "-X", "PUT", grant["uploadUrl"],
         *[arg for k, v in grant["headers"].items() for arg in ("-H", f"{k}: {v}")], "--data-binary", "@-"],
        input=data, capture_output=True, check=False,
    ) if shutil.which("curl") else None
    if curl is not None:
        assert curl.stdout == b"201", curl.stderr
    else:
        assert requests.put(grant["uploadUrl"], data=data, headers=grant["headers"], verify=ca,
                            timeout=10).status_code == 201

    deadline, status = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        status = requests.get(grant["statusUrl"], headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        if status.get("status") != "pending":
            break
        time.sleep(0.5)
    assert status.get("status") == "accepted", status

    # Storage CORS: the app's own origin may PUT from a browser, another origin may not.
    def preflight(origin: str) -> requests.Response:
        return requests.options(grant["blobUri"], verify=ca, timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "x-ms-blob-type,x-ms-blob-content-type,x-ms-meta-valetgrant"})

    allowed = preflight(url)
    assert allowed.status_code == 200 and allowed.headers.get("Access-Control-Allow-Origin") == url
    assert preflight("https://evil.example").status_code == 403

    # The reference client against the running stack: a disguised page ends quarantined.
    from valet_client import ValetClient

    fake = root / "cute.png"
    fake.write_bytes(b"<!DOCTYPE html><html><script>alert(1)</script></html>")
    rejected = ValetClient(url, token=token, storage_verify=ca).upload(fake, wait_timeout=30)
    assert (rejected.status, rejected.reason) == ("quarantined", "content_not_allowed")

    # A Defender-style malware event through Core Tools' admin endpoint moves the accepted blob.
    accepted_uri = grant["blobUri"].replace("/uploads/", "/accepted/")
    event = malware_event(accepted_uri)
    admin = requests.post(f"{url}/admin/functions/malware_scan_result", json={"input": json.dumps(event)},
                          timeout=30)
    assert admin.status_code == 202
    after = requests.get(grant["statusUrl"], headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert (after["status"], after.get("reason")) == ("quarantined", "malware_detected")

    azurite = listening_ports((root / ".valet" / "azurite" / "azurite.log").read_text())  # ports it bound
    assert azurite["blob"] == int(grant["blobUri"].split(":")[2].split("/")[0])
    ports = [int(url.rsplit(":", 1)[1]), azurite["blob"], azurite["queue"]]  # app, Azurite blob and queue
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "valet dev: stopped" in output
    assert token not in output and api_key not in output
    for port in ports:  # nothing left listening: no orphan Azurite, no orphan server
        assert not port_in_use(port), port


def test_valet_dev_reports_a_taken_port() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "valet", "dev", "--port", str(port)],
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert f"port {port} is already in use" in result.stderr


def test_valet_dev_reports_missing_node(tmp_path: Path) -> None:
    shutil.copy(PROJECT_ROOT / "local.settings.sample.json", tmp_path / "local.settings.sample.json")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent),  # python only: no node on PATH
           "VALET_STORAGE_ACCOUNT_URL": f"https://127.0.0.1:{free_port()}/devstoreaccount1"}
    result = subprocess.run([sys.executable, "-m", "valet", "dev", "--port", str(free_port()),
                             "--root", str(tmp_path)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "Node.js is not installed" in result.stderr


def test_valet_dev_on_port_0_hands_out_the_port_it_bound(tmp_path: Path) -> None:
    """``--port 0``: the kernel picks the port, and every URL valet dev hands out names that port: dev.env,
    the grant's statusUrl, the storage CORS rules for the upload page's origins."""
    with valet_dev(tmp_path, args=["--port", "0"]) as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        assert port != 0 and stack.url == f"http://127.0.0.1:{port}"
        grant = requests.post(f"{stack.url}/api/uploads", headers={"X-API-Key": stack.api_key}, timeout=10,
                              json={"filename": "a.png", "contentType": "image/png", "size": len(png())})
        assert grant.status_code == 201, grant.text
        status_url = grant.json()["statusUrl"]
        assert status_url.startswith(f"{stack.url}/api/uploads/"), status_url
        status = requests.get(status_url, headers={"X-API-Key": stack.api_key}, timeout=10)
        assert status.status_code == 200 and status.json()["status"] == "pending", status.text
        page = requests.get(f"{stack.url}/api/ui", timeout=10)
        assert page.status_code == 200
        for origin in (stack.url, f"http://localhost:{port}"):  # the page's origins may PUT to storage
            preflight = requests.options(grant.json()["blobUri"], verify=stack.ca, timeout=10, headers={
                "Origin": origin, "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "x-ms-blob-type,x-ms-blob-content-type"})
            assert preflight.status_code == 200, (origin, preflight.status_code)
            assert preflight.headers.get("Access-Control-Allow-Origin") == origin
        api_preflight = requests.options(f"{stack.url}/api/uploads", timeout=10, headers={
            "Origin": stack.url, "Access-Control-Request-Method": "POST"})
        assert api_preflight.headers.get("Access-Control-Allow-Origin") == stack.url
        assert requests.options(grant.json()["blobUri"], verify=stack.ca, timeout=10, headers={
            "Origin": "http://127.0.0.1:0", "Access-Control-Request-Method": "PUT"}).status_code == 403
