"""The audit record of every action, through the app's route table against Azurite, and no credential in
any of them: grant, renewal, cancel, download URL, decision (with its reason); the review actions have
theirs in test_review.py. The grant path still makes no storage request (the trail has its own client)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import azure.functions as func
import pytest
import requests
from azure.storage.blob import BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.support import samples
from tests.support.fakes import ALICE, FixedCaller
from valet import api
from valet.audit.records import has_secret
from valet.runtime import Runtime
from valet.settings import Settings

pytestmark = pytest.mark.azurite


@pytest.fixture
def runtime(valet_env: dict[str, str]) -> Iterator[Runtime]:
    rt = Runtime.from_settings(Settings.from_env(valet_env), authenticator=FixedCaller())
    yield rt
    rt.audit.close()
    rt.blob_service.close()


def request(method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
            upload_id: str = "") -> func.HttpRequest:
    return func.HttpRequest(method=method, url=f"https://valet.example/api/{path}", params=params or {},
                            headers={"content-type": "application/json", "x-forwarded-for": "198.51.100.23"},
                            route_params={"uploadId": upload_id} if upload_id else {},
                            body=json.dumps(body).encode() if body is not None else b"")


def grant(rt: Runtime, data: bytes) -> dict[str, Any]:
    body = {"filename": "cat.png", "contentType": "image/png", "size": len(data)}
    response = api.create_upload(lambda: rt, request("POST", "uploads", body))
    assert response.status_code == 201, response.get_body()
    doc: dict[str, Any] = json.loads(response.get_body())
    return doc


def stored(rt: Runtime, blob_service: BlobServiceClient, container: str) -> list[str]:
    rt.audit.close()  # appends what is buffered
    client = blob_service.get_container_client(container)
    return [line.decode() for b in client.list_blobs()
            for line in client.get_blob_client(b.name).download_blob().readall().splitlines()]


def test_every_action_is_recorded_once_and_no_record_holds_a_credential(
        runtime: Runtime, storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient,
        valet_env: dict[str, str]) -> None:
    kept = grant(runtime, samples.png())  # fetches the delegation key
    before = runtime.storage_requests.count
    unused = grant(runtime, samples.png())
    assert runtime.storage_requests.count == before, "a grant makes no storage request, audited or not"
    data = samples.png()
    upload_id = kept["uploadId"]
    renewed = api.renew_upload(lambda: runtime, request("POST", f"uploads/{upload_id}/renew",
                                                        {"blobUri": kept["blobUri"]}, upload_id=upload_id))
    assert renewed.status_code == 200, renewed.get_body()
    renewal = json.loads(renewed.get_body())
    assert requests.put(kept["uploadUrl"], data=data, headers=kept["headers"], verify=storage_endpoint.ca_bundle,
                        timeout=30).status_code == 201
    name = urlsplit(kept["blobUri"]).path.split(f"/{runtime.settings.storage.uploads_container}/", 1)[1]
    decision = runtime.validation.on_blob(runtime.settings.storage.uploads_container, name)
    assert decision is not None and decision.outcome.value == "accepted"
    downloaded = api.upload_download(lambda: runtime, request("GET", f"uploads/{upload_id}/download",
                                                              upload_id=upload_id))
    assert downloaded.status_code == 200
    download_url = json.loads(downloaded.get_body())["downloadUrl"]
    cancelled = api.upload_status(lambda: runtime, request("DELETE", f"uploads/{unused['uploadId']}",
                                                           params={"blobUri": unused["blobUri"]},
                                                           upload_id=unused["uploadId"]))
    assert cancelled.status_code == 204, cancelled.get_body()

    lines = stored(runtime, blob_service, valet_env["VALET_AUDIT_CONTAINER"])
    docs = [json.loads(line) for line in lines]
    mine = Counter(d["action"] for d in docs if d.get("uploadId") == upload_id)
    assert mine == Counter({"grant": 1, "renew": 1, "decision": 1, "download": 1})
    assert Counter(d["action"] for d in docs if d.get("uploadId") == unused["uploadId"]) == Counter(
        {"grant": 1, "cancel": 1})
    [decided] = [d for d in docs if d["action"] == "decision"]
    assert (decided["outcome"], decided["reason"], decided["owner"]) == ("accepted", "ok", ALICE.id)
    [granted] = [d for d in docs if d["action"] == "grant" and d["uploadId"] == upload_id]
    assert granted["actor"] == {"caller": ALICE.id, "kind": "bearer", "tenant": ALICE.tenant,
                                "subject": ALICE.subject, "clientIp": "127.0.0.1"}
    assert granted["data"]["profile"] and granted["data"]["blob"].endswith(name)

    text = "\n".join(lines)
    credentials = [kept["signature"], renewal["signature"], kept["uploadUrl"], download_url,
                   urlsplit(download_url).query, *kept["headers"].values(), unused["signature"]]
    for secret in credentials:
        if len(secret) > 20:  # header values like "BlockBlob" are not secrets
            assert secret not in text and quote(secret) not in text
    assert "sig=" not in text and not any(has_secret(line) for line in lines)
