"""Cancelling an unused grant against Azurite: the sealed tombstone occupies the name, so the grant's own
URL can no longer create the blob (storage refuses it), and the status says ``cancelled``."""

from __future__ import annotations

import json
from urllib.parse import quote

import azure.functions as func
import pytest
import requests

from tests.conftest import StorageEndpoint
from tests.support import samples
from tests.support.fakes import ALICE, FixedCaller
from valet import api
from valet.caller import Caller
from valet.runtime import Runtime

pytestmark = pytest.mark.azurite

BOB = Caller(kind="bearer", issuer=ALICE.issuer, subject="bbbbbbbb-0000-0000-0000-000000000002", tenant=ALICE.tenant)


def as_caller(runtime: Runtime, caller: Caller) -> Runtime:
    return Runtime(**{**vars(runtime), "authenticator": FixedCaller(caller)})


def grant(runtime: Runtime, size: int) -> dict[str, object]:
    body = {"filename": "cat.png", "contentType": "image/png", "size": size}
    response = api.create_upload(lambda: runtime, func.HttpRequest(
        method="POST", url="https://valet.example/api/uploads", headers={"content-type": "application/json"},
        body=json.dumps(body).encode()))
    assert response.status_code == 201
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def call(runtime: Runtime, method: str, upload_id: str, blob_uri: str | None = None) -> func.HttpResponse:
    query = f"?blobUri={quote(blob_uri, safe='')}" if blob_uri is not None else ""
    return api.upload_status(lambda: runtime, func.HttpRequest(
        method=method, url=f"https://valet.example/api/uploads/{upload_id}{query}", body=b"",
        route_params={"uploadId": upload_id}, params={"blobUri": blob_uri} if blob_uri is not None else {}))


def put(g: dict[str, object], endpoint: StorageEndpoint, data: bytes) -> int:
    return requests.put(str(g["uploadUrl"]), data=data, headers=g["headers"],  # type: ignore[arg-type]
                        verify=endpoint.ca_bundle or True, timeout=30).status_code


def test_a_cancelled_grant_cannot_be_used_and_says_cancelled(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    data = samples.png()
    g = grant(runtime, len(data))
    upload_id = str(g["uploadId"])
    response = call(runtime, "DELETE", upload_id, str(g["blobUri"]))
    assert response.status_code == 204, response.get_body()
    assert put(g, storage_endpoint, data) == 403  # storage refuses the replay: the name is occupied
    status = json.loads(call(runtime, "GET", upload_id).get_body())
    assert status["uploadId"] == upload_id and status["status"] == "cancelled"
    assert call(runtime, "DELETE", upload_id, str(g["blobUri"])).status_code == 204  # idempotent
    # The blob trigger fires for the tombstone: it finds the cancellation and changes nothing.
    name = str(g["blobUri"]).split(f"/{runtime.settings.storage.uploads_container}/", 1)[1]
    decision = runtime.validation.on_blob(runtime.settings.storage.uploads_container, name)
    assert decision is not None and decision.outcome.value == "cancelled"
    assert json.loads(call(runtime, "GET", upload_id).get_body())["status"] == "cancelled"


def test_once_uploaded_or_decided_a_grant_cannot_be_cancelled(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    data = samples.png()
    g = grant(runtime, len(data))
    assert put(g, storage_endpoint, data) == 201
    response = call(runtime, "DELETE", str(g["uploadId"]), str(g["blobUri"]))
    assert response.status_code == 409 and json.loads(response.get_body())["code"] == "upload_exists"
    name = str(g["blobUri"]).split(f"/{runtime.settings.storage.uploads_container}/", 1)[1]
    runtime.validation.on_blob(runtime.settings.storage.uploads_container, name)
    response = call(runtime, "DELETE", str(g["uploadId"]), str(g["blobUri"]))
    assert response.status_code == 409 and json.loads(response.get_body())["code"] == "upload_exists"
    assert json.loads(call(runtime, "GET", str(g["uploadId"])).get_body())["status"] == "accepted"


def test_only_the_grants_caller_can_cancel_it(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    g = grant(runtime, 10)
    response = call(as_caller(runtime, BOB), "DELETE", str(g["uploadId"]), str(g["blobUri"]))
    assert response.status_code == 404 and json.loads(response.get_body())["code"] == "upload_not_found"
    forged = str(g["blobUri"]).replace(".png", ".jpg")
    assert call(runtime, "DELETE", str(g["uploadId"]), forged).status_code == 404
    missing = call(runtime, "DELETE", str(g["uploadId"]))
    assert missing.status_code == 400 and json.loads(missing.get_body())["code"] == "invalid_blob_uri"
    assert put(g, storage_endpoint, samples.png()[:10]) == 201  # nothing was cancelled
