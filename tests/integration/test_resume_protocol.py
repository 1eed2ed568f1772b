"""The resume protocol of docs/resumable-uploads.md, step by step, as a Swift, Kotlin or .NET client would
do it: plain HTTP to storage with the grant's URL (no SDK), the app's routes for the grant, the blocks
storage holds, the renewal and the status. Runs on the patched Azurite (create-only blocks)."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import quote

import azure.functions as func
import pytest
import requests

from tests.conftest import StorageEndpoint
from valet import api
from valet.api import upload_blocks
from valet.runtime import Runtime

pytestmark = pytest.mark.azurite

BLOCK = 256 * 1024  # fixed for the whole upload (the docs suggest 8 MiB; small here to stay quick)
DATA = os.urandom(5 * BLOCK + 1234)  # six blocks, the last one short
VERSION = {"x-ms-version": "2026-10-06"}  # any service version from 2026-04-06 on


def block_id(n: int) -> str:
    return base64.b64encode(f"valet-{n:08d}".encode()).decode()  # same length for every block


def app(handler: object, runtime: Runtime, method: str, path: str, *, body: object = None,
        params: dict[str, str] | None = None, upload_id: str = "") -> tuple[int, dict[str, object]]:
    req = func.HttpRequest(method=method, url=f"https://valet.example/api/{path}",
                           headers={"content-type": "application/json"},
                           body=json.dumps(body).encode() if body is not None else b"",
                           params=params or {}, route_params={"uploadId": upload_id} if upload_id else {})
    response = handler(lambda: runtime, req)  # type: ignore[operator]
    return response.status_code, json.loads(response.get_body() or b"{}")


def put_block(url: str, n: int, verify: bool | str) -> requests.Response:
    part = DATA[n * BLOCK:(n + 1) * BLOCK]
    return requests.put(f"{url}&comp=block&blockid={quote(block_id(n), safe='')}", data=part, headers=VERSION,
                        verify=verify, timeout=30)


def commit(url: str, headers: dict[str, str], count: int, verify: bool | str) -> requests.Response:
    body = '<?xml version="1.0" encoding="utf-8"?><BlockList>' + "".join(
        f"<Latest>{block_id(n)}</Latest>" for n in range(count)) + "</BlockList>"
    sent = {k: v for k, v in headers.items() if k.lower() != "x-ms-blob-type"}  # not for Put Block List
    return requests.put(f"{url}&comp=blocklist", data=body.encode(), headers={**sent, **VERSION},
                        verify=verify, timeout=30)


def test_grant_blocks_interruption_blocks_renew_missing_blocks_commit(
        runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    verify = storage_endpoint.ca_bundle or True
    count = -(-len(DATA) // BLOCK)
    # 1. The grant.
    status, grant = app(api.create_upload, runtime, "POST", "uploads",
                        body={"filename": "big.bin", "contentType": "application/octet-stream", "size": len(DATA),
                              "profile": "large"})
    assert status == 201, grant
    upload_id, blob_uri = str(grant["uploadId"]), str(grant["blobUri"])
    headers = dict(grant["headers"])  # type: ignore[call-overload]
    # 2. Some blocks, then the interruption: the client keeps uploadId, blobUri, statusUrl and headers only.
    for n in (0, 1, 3):
        assert put_block(str(grant["uploadUrl"]), n, verify).status_code == 201
    del grant
    # 3. What storage holds.
    status, held = app(upload_blocks, runtime, "GET", f"uploads/{upload_id}/blocks", params={"blobUri": blob_uri},
                       upload_id=upload_id)
    assert status == 200 and held["committed"] is False
    assert held["blocks"] == [{"id": block_id(n), "size": BLOCK} for n in (0, 1, 3)]
    # 4. A fresh SAS for the same blob.
    status, renewed = app(api.renew_upload, runtime, "POST", f"uploads/{upload_id}/renew", body={"blobUri": blob_uri},
                          upload_id=upload_id)
    assert status == 200 and renewed["blobUri"] == blob_uri
    assert str(renewed["expiresOn"]) <= str(held["expiresOn"])  # no SAS outlives the window
    url = str(renewed["uploadUrl"])
    # 5. The missing blocks only, then the commit of all of them in order.
    stored = {str(b["id"]) for b in held["blocks"]}  # type: ignore[union-attr]
    for n in range(count):
        if block_id(n) not in stored:
            assert put_block(url, n, verify).status_code == 201
    assert commit(url, headers, count, verify).status_code == 201
    # 6. The commit's answer was lost and the client tries again: create never overwrites.
    again = commit(url, headers, count, verify)
    assert again.status_code == 403 and again.headers["x-ms-error-code"] == "UnauthorizedBlobOverwrite"
    status, held = app(upload_blocks, runtime, "GET", f"uploads/{upload_id}/blocks", params={"blobUri": blob_uri},
                       upload_id=upload_id)
    assert held["committed"] is True and len(held["blocks"]) == count  # type: ignore[arg-type]
    # 7. The verdict arrives like any other upload's (the blob trigger sees the committed blob).
    name = blob_uri.split(f"/{runtime.settings.storage.uploads_container}/", 1)[1]
    runtime.validation.on_blob(runtime.settings.storage.uploads_container, name)
    status, decided = app(api.upload_status, runtime, "GET", f"uploads/{upload_id}", upload_id=upload_id)
    assert status == 200 and decided["status"] == "accepted", decided
    # 8. After the decision there is nothing to renew.
    status, refused = app(api.renew_upload, runtime, "POST", f"uploads/{upload_id}/renew", body={"blobUri": blob_uri},
                          upload_id=upload_id)
    assert status == 409 and refused["code"] in ("upload_complete", "upload_decided")


def test_staged_blocks_are_invisible_to_the_validator_until_committed(
        runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    verify = storage_endpoint.ca_bundle or True
    status, grant = app(api.create_upload, runtime, "POST", "uploads",
                        body={"filename": "big.bin", "contentType": "application/octet-stream", "size": len(DATA),
                              "profile": "large"})
    assert status == 201
    assert put_block(str(grant["uploadUrl"]), 0, verify).status_code == 201
    container = runtime.blob_service.get_container_client(runtime.settings.storage.uploads_container)
    name = str(grant["blobUri"]).split(f"/{runtime.settings.storage.uploads_container}/", 1)[1]
    assert [b.name for b in container.list_blobs(name_starts_with=name)] == []  # what a trigger could see
    status, pending = app(api.upload_status, runtime, "GET", f"uploads/{grant['uploadId']}",
                          upload_id=str(grant["uploadId"]))
    assert status == 200 and pending["status"] == "pending"
