"""``valet upload`` resumes for real: a subprocess killed with SIGKILL half way through a block upload,
then the same command run again, sends only what storage lacks. Bytes are counted on the wire by a
loopback CONNECT proxy that the client reaches storage through (``HTTPS_PROXY``)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.functional.test_upload_client import stack  # noqa: F401  (the fixture: devhost + blob watcher)
from tests.support.countingproxy import CountingProxy
from valet.local.devhost import FunctionHost
from valet.local.devidp import DevIssuer
from valet_client.client import BLOCK_BYTES, ValetClient

pytestmark = pytest.mark.azurite

MIB = 1024 * 1024
IN_FLIGHT = 4  # the client stages four blocks at a time
COMMAND = str(Path(sys.executable).with_name("valet-upload"))


def client_env(host: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint, proxy: CountingProxy,
               journal: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")}
    env.update(VALET_URL=host.url, VALET_TOKEN=issuer.mint("resumer", roles=("Uploads.Write", "Uploads.Large")),
               VALET_STORAGE_CA_BUNDLE=storage_endpoint.ca_bundle or "", VALET_UPLOAD_JOURNAL_DIR=str(journal),
               HTTPS_PROXY=proxy.url, PYTHONUNBUFFERED="1")
    env.pop("VALET_API_KEY", None)
    return env


def test_killed_mid_upload_then_run_again_sends_only_the_missing_blocks(
        stack: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint,  # noqa: F811
        blob_service: BlobServiceClient, valet_env: dict[str, str], tmp_path: Path) -> None:
    data = os.urandom(96 * MIB)  # twelve 8 MiB blocks of application/octet-stream
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    journal = tmp_path / "journal"
    proxy = CountingProxy()
    env = client_env(stack, issuer, storage_endpoint, proxy, journal)
    argv = [COMMAND, str(big), "--profile", "large", "--content-type", "application/octet-stream",
            "--mode", "blocks", "--no-wait"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 180
        assert first.stdout is not None
        for line in first.stdout:  # "uploaded N of M bytes (40%, ...)"; bounded by the process and the clock
            if (line.startswith("uploaded ") and int(line.split()[1]) >= 40 * MIB) or time.monotonic() > deadline:
                break
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
        if first.stdout is not None:
            first.stdout.close()
    assert first.returncode == -signal.SIGKILL
    time.sleep(0.5)  # let the proxy see the connections close
    sent_before = proxy.sent
    saved = list(journal.glob("*.json"))
    assert len(saved) == 1
    doc = json.loads(saved[0].read_text())
    assert "uploadUrl" not in doc["grant"] and "signature" not in doc["grant"]  # no SAS at rest
    assert oct(saved[0].stat().st_mode & 0o777) == "0o600"
    container = blob_service.get_container_client(valet_env["VALET_UPLOADS_CONTAINER"])
    name = str(doc["grant"]["blobUri"]).split(f"/{valet_env['VALET_UPLOADS_CONTAINER']}/", 1)[1]
    held = sum(b.size for b in container.get_blob_client(name).get_block_list("uncommitted")[1])
    assert 0 < held < len(data)  # killed half way: some blocks are in storage, not all

    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert "resumed: " in again.stdout and "big.bin: pending" in again.stdout
    time.sleep(0.5)
    sent_after = proxy.sent - sent_before
    proxy.close()

    reader = ValetClient(stack.url, token=env["VALET_TOKEN"], storage_verify=storage_endpoint.ca_bundle or True)
    status_url = str(doc["grant"]["statusUrl"])
    assert reader.wait(status_url, timeout=120)["status"] == "accepted"
    link = reader.download(status_url)["downloadUrl"]
    got = requests.get(link, verify=storage_endpoint.ca_bundle or True, timeout=120)
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()  # the file, whole, once
    assert not list(journal.glob("*.json"))  # removed once committed
    total = sent_before + sent_after
    resent = total - len(data)
    # The second run sends what storage lacks (and what the journal had not confirmed), never the whole file.
    assert sent_after < len(data) - held + IN_FLIGHT * BLOCK_BYTES
    assert resent <= IN_FLIGHT * BLOCK_BYTES + 2 * MIB, (sent_before, sent_after, held)  # + TLS and HTTP overhead
    assert total / len(data) <= 1.1 + IN_FLIGHT * BLOCK_BYTES / len(data)
    print(f"\nsent {sent_before} + {sent_after} = {total} bytes for {len(data)}: {total / len(data):.3f}")
