"""What only real Azure Storage can show (Azurite differs here). Runs only when a live account is
configured; otherwise these tests report themselves as skipped, never as passed.

    VALET_LIVE_STORAGE_URL=https://<account>.blob.core.windows.net \\
    VALET_LIVE_CONTAINER=<existing container> bash scripts/test.sh tests/live

The identity (``DefaultAzureCredential``: ``az login``, workload identity, managed identity) needs
Storage Blob Delegator on the account and Storage Blob Data Contributor on the container.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator

import azure.functions as func
import pytest
import requests

from tests.support.fakes import FixedCaller
from valet import api
from valet.runtime import Runtime
from valet.settings import Settings

pytestmark = pytest.mark.live_azure

URL = os.environ.get("VALET_LIVE_STORAGE_URL")
CONTAINER = os.environ.get("VALET_LIVE_CONTAINER")


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    if not URL or not CONTAINER:
        pytest.skip("no live Azure account configured (VALET_LIVE_STORAGE_URL, VALET_LIVE_CONTAINER)")
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    settings = Settings.from_env({
        "VALET_STORAGE_ACCOUNT_URL": URL,
        "VALET_STORAGE_CREDENTIAL": "default",
        "VALET_UPLOADS_CONTAINER": CONTAINER,
        "VALET_GRANT_SIGNING_KEYS": f"live:{key}",
    })
    yield Runtime.from_settings(settings, authenticator=FixedCaller())


def grant(runtime: Runtime) -> dict[str, object]:
    req = func.HttpRequest(method="POST", url="https://valet.example/api/uploads",
                           headers={"content-type": "application/json"},
                           body=json.dumps({"filename": "a.png", "contentType": "image/png", "size": 16}).encode())
    response = api.create_upload(lambda: runtime, req)
    assert response.status_code == 201
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def test_overwrite_is_refused_with_unauthorized_blob_overwrite(runtime: Runtime) -> None:
    g = grant(runtime)
    assert requests.put(str(g["uploadUrl"]), data=b"\x89PNG" + b"\0" * 12, headers=g["headers"], timeout=30).status_code == 201  # type: ignore[arg-type]
    again = requests.put(str(g["uploadUrl"]), data=b"x" * 16, headers=g["headers"], timeout=30)  # type: ignore[arg-type]
    assert again.status_code == 403
    assert again.headers.get("x-ms-error-code") == "UnauthorizedBlobOverwrite"


def test_create_only_sas_allows_block_uploads_on_azure(runtime: Runtime) -> None:
    g = grant(runtime)
    headers = {k: v for k, v in g["headers"].items() if k != "x-ms-blob-type"}  # type: ignore[union-attr]
    block_id = base64.b64encode(b"block-000001").decode()
    put_block = requests.put(f"{g['uploadUrl']}&comp=block&blockid={requests.utils.quote(block_id)}",
                             data=b"\x89PNG" + b"\0" * 12, headers={"x-ms-version": "2026-10-06"}, timeout=30)
    assert put_block.status_code == 201
    body = f'<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>{block_id}</Latest></BlockList>'
    commit = requests.put(f"{g['uploadUrl']}&comp=blocklist", data=body.encode(),
                          headers={**headers, "x-ms-version": "2026-10-06"}, timeout=30)
    assert commit.status_code == 201
