"""Clients nobody here wrote: a real PNG ends ``accepted`` and HTML disguised as PNG ends ``quarantined``
whichever way a client uploads it with a valid grant, as long as it uses the grant's URL.

Each case asks the app (its functions on a real HTTP host) for a grant with a real token, uploads to the
test Azurite with the client under test, and waits for the watched blob trigger's decision through the
status route. Clients: the Azure Storage SDK for Python and for JavaScript (``@azure/storage-blob`` in
Node), each with the grant's headers passed as SDK options and with no options at all; curl; raw HTTP
with lower-case, canonical (``X-Ms-Meta-…``) and upper-case header names; the grant URL with nothing but
``x-ms-blob-type``; and ``valet upload``. (The browser page is driven in ``tests/browser``.)
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

from tests.conftest import StorageEndpoint
from tests.support.functions import fresh_app
from tests.support.samples import html, png
from valet.local.dev import BlobWatcher
from valet.local.devhost import FunctionHost
from valet.local.devidp import DevIssuer
from valet.local.emulator import PROJECT_ROOT
from valet.local.upload import main as upload_main

pytestmark = pytest.mark.azurite

NODE = shutil.which("node")
JS_UPLOAD = Path(__file__).parent / "js" / "upload.mjs"
JS_SDK = PROJECT_ROOT / "node_modules" / "@azure" / "storage-blob"
REAL_PNG = png(32, 32)
DISGUISED = html()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer,
          blob_service: BlobServiceClient) -> Iterator[FunctionHost]:
    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value()}
    with fresh_app(monkeypatch, env) as module, FunctionHost(module.app, port=0) as host:
        watcher = BlobWatcher(blob_service, env["VALET_UPLOADS_CONTAINER"], host, "validate_upload",
                              interval=0.2).start()
        yield host
        watcher.stop()


@pytest.fixture(scope="session")
def token(issuer: DevIssuer) -> str:
    return issuer.mint("interop")


class Grant:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.url: str = body["uploadUrl"]
        self.headers: dict[str, str] = body["headers"]
        self.upload_id: str = body["uploadId"]
        self.status_url: str = body["statusUrl"]


def ask(host: FunctionHost, token: str, data: bytes, *, sha256: bool = False) -> Grant:
    body: dict[str, Any] = {"filename": "cat.png", "contentType": "image/png", "size": len(data)}
    if sha256:  # then the grant header is required: it alone carries the digest
        body["sha256"] = hashlib.sha256(data).hexdigest()
    response = requests.post(f"{host.url}/api/uploads", timeout=10, headers={"Authorization": f"Bearer {token}"},
                             json=body)
    assert response.status_code == 201, response.text
    return Grant(response.json())


def decided(grant: Grant, token: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = requests.get(grant.status_url, timeout=10,
                                            headers={"Authorization": f"Bearer {token}"}).json()
        if body["status"] != "pending" or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


# -- the clients -------------------------------------------------------------------------------------------

Uploader = Callable[[Grant, bytes, StorageEndpoint, Path], None]


def python_sdk_with_options(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    blob = BlobClient.from_blob_url(grant.url, connection_verify=storage.ca_bundle or True)
    metadata = {k[len("x-ms-meta-"):]: v for k, v in grant.headers.items() if k.startswith("x-ms-meta-")}
    blob.upload_blob(data, metadata=metadata,
                     content_settings=ContentSettings(content_type=grant.headers["x-ms-blob-content-type"]))


def python_sdk_plain(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    BlobClient.from_blob_url(grant.url, connection_verify=storage.ca_bundle or True).upload_blob(data)


def _node(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path, mode: str) -> None:
    if NODE is None or not JS_SDK.is_dir():
        pytest.skip("node or @azure/storage-blob is not installed (bash scripts/setup.sh installs both)")
    file = tmp / "upload.bin"
    file.write_bytes(data)
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": storage.ca_bundle or ""}
    args = [NODE, str(JS_UPLOAD), grant.url, str(file), mode, json.dumps(grant.headers)]
    done = subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"status": 201}, done.stderr[-2000:]


def js_sdk_with_options(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    _node(grant, data, storage, tmp, "options")


def js_sdk_plain(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    _node(grant, data, storage, tmp, "plain")


def curl(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    file = tmp / "cat.png"
    file.write_bytes(data)
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", grant.url, "--data-binary", f"@{file}"]
    for name, value in grant.headers.items():
        args += ["-H", f"{name}: {value}"]
    if storage.ca_bundle:
        args += ["--cacert", storage.ca_bundle]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout == "201", done.stderr


def _raw(grant: Grant, data: bytes, storage: StorageEndpoint, style: Callable[[str], str],
         headers: dict[str, str] | None = None) -> None:
    parts = urlsplit(grant.url)
    context = ssl.create_default_context(cafile=storage.ca_bundle) if storage.ca_bundle else None
    conn = http.client.HTTPSConnection(parts.netloc, context=context, timeout=30)
    try:
        conn.putrequest("PUT", f"{parts.path}?{parts.query}", skip_accept_encoding=True)
        for name, value in {**(headers if headers is not None else grant.headers),
                            "content-length": str(len(data))}.items():
            conn.putheader(style(name), value)  # sent on the wire exactly as written
        conn.endheaders(data)
        response = conn.getresponse()
        response.read()
        assert response.status == 201, response.status
    finally:
        conn.close()


def raw_lower_case(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    _raw(grant, data, storage, str.lower)


def raw_canonical_case(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    _raw(grant, data, storage, lambda n: "-".join(p.capitalize() for p in n.split("-")))  # X-Ms-Meta-Valetgrant


def raw_upper_case(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    _raw(grant, data, storage, str.upper)


def url_and_blob_type_only(grant: Grant, data: bytes, storage: StorageEndpoint, tmp: Path) -> None:
    _raw(grant, data, storage, str.lower, {"x-ms-blob-type": "BlockBlob"})


# Clients that send the grant's headers declare a sha256 in their grant request, so the decision depends on
# the validator finding the grant header (in whatever case it arrived); the others send none of them.
SENDS_HEADERS = {"python-sdk-options", "js-sdk-options", "curl", "raw-lower", "raw-canonical", "raw-upper"}
CLIENTS: dict[str, Uploader] = {
    "python-sdk-options": python_sdk_with_options,
    "python-sdk-plain": python_sdk_plain,
    "js-sdk-options": js_sdk_with_options,
    "js-sdk-plain": js_sdk_plain,
    "curl": curl,
    "raw-lower": raw_lower_case,
    "raw-canonical": raw_canonical_case,
    "raw-upper": raw_upper_case,
    "url-only": url_and_blob_type_only,
}


@pytest.mark.parametrize(("content", "expected"), [(REAL_PNG, ("accepted", None)),
                                                    (DISGUISED, ("quarantined", "content_not_allowed"))],
                         ids=["real-png", "html-as-png"])
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_every_client_gets_the_same_decision(client: str, content: bytes, expected: tuple[str, str | None],
                                             stack: FunctionHost, token: str, storage_endpoint: StorageEndpoint,
                                             tmp_path: Path) -> None:
    grant = ask(stack, token, content, sha256=client in SENDS_HEADERS)
    CLIENTS[client](grant, content, storage_endpoint, tmp_path)
    status = decided(grant, token)
    assert (status["status"], status.get("reason")) == expected, status


@pytest.mark.parametrize(("content", "expected"), [(REAL_PNG, 0), (DISGUISED, 1)], ids=["real-png", "html-as-png"])
def test_valet_upload(content: bytes, expected: int, stack: FunctionHost, token: str,
                      storage_endpoint: StorageEndpoint, tmp_path: Path) -> None:
    file = tmp_path / "cat.png"
    file.write_bytes(content)
    out = io.StringIO()
    code = upload_main([str(file)], out=out, environ={"VALET_URL": stack.url, "VALET_TOKEN": token,
                                                     "VALET_STORAGE_CA_BUNDLE": storage_endpoint.ca_bundle or ""})
    assert code == expected, out.getvalue()
    assert ("accepted" if expected == 0 else "quarantined (content_not_allowed)") in out.getvalue()


def test_a_client_declaring_another_type_gets_content_type_mismatch(
    stack: FunctionHost, token: str, storage_endpoint: StorageEndpoint
) -> None:
    grant = ask(stack, token, REAL_PNG)
    blob = BlobClient.from_blob_url(grant.url, connection_verify=storage_endpoint.ca_bundle or True)
    blob.upload_blob(REAL_PNG, content_settings=ContentSettings(content_type="image/jpeg"))
    status = decided(grant, token)
    assert (status["status"], status.get("reason")) == ("quarantined", "content_type_mismatch")


def test_the_page_script_renews_a_grant_and_the_renewed_url_uploads(stack: FunctionHost, token: str,
                                                                    storage_endpoint: StorageEndpoint,
                                                                    tmp_path: Path) -> None:
    """clients/js/valet-upload.js's own API calls (requestGrant, renewGrant, waitForDecision), run in Node."""
    if NODE is None:
        pytest.skip("node is not installed")
    file = tmp_path / "cat.png"
    file.write_bytes(REAL_PNG)
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": storage_endpoint.ca_bundle or ""}
    done = subprocess.run([NODE, str(Path(__file__).parent / "js" / "page_api.mjs"), f"{stack.url}/api/", token,
                           str(file)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["renewed"]["uploadUrl"].split("?")[0] == out["before"]["uploadUrl"].split("?")[0]  # same blob
    assert "x-ms-meta-valetgrant" in out["headers"]  # the original grant's headers are kept
    assert out["put"] == 201 and out["decision"]["status"] == "accepted"


def test_the_page_script_cancels_a_grant_and_downloads_an_accepted_upload(
        stack: FunctionHost, token: str, storage_endpoint: StorageEndpoint, tmp_path: Path) -> None:
    """clients/js/valet-upload.js's cancelGrant and requestDownload, run in Node against real storage."""
    if NODE is None:
        pytest.skip("node is not installed")
    file = tmp_path / "cat.png"
    file.write_bytes(REAL_PNG)
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": storage_endpoint.ca_bundle or ""}
    done = subprocess.run([NODE, str(Path(__file__).parent / "js" / "page_cancel_download.mjs"), f"{stack.url}/api/",
                           token, str(file)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["cancelledPut"] == 403 and out["cancelledStatus"]["status"] == "cancelled"
    assert out["put"] == 201 and out["decision"]["status"] == "accepted"
    assert out["download"]["status"] == 200 and out["download"]["same"] is True
    assert out["download"]["disposition"].startswith('attachment; filename="cat.png"')


def test_the_module_in_node_says_a_certificate_failed_verification(storage_endpoint: StorageEndpoint) -> None:
    """clients/js/valet-upload.js's API calls in Node, against an HTTPS endpoint with the emulator's
    self-signed certificate and no NODE_EXTRA_CA_CERTS: the error names the cause and the fix."""
    if NODE is None:
        pytest.skip("node is not installed")
    if not storage_endpoint.ca_bundle:
        pytest.skip("this storage endpoint has a publicly trusted certificate")
    script = ("import { listProfiles } from './clients/js/valet-upload.js';"
              "try { await listProfiles(process.argv[1], { kind: 'apikey', secret: 'x' }); console.log('{}'); }"
              " catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }")
    env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"}
    done = subprocess.run([NODE, "--input-type=module", "-e", script, f"{storage_endpoint.blob_url}/"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.get("code") == "certificate_unverified", (out, done.stderr[-1000:])
    assert "NODE_EXTRA_CA_CERTS" in out["message"]
