"""Downloads of accepted uploads against Azurite: a real read SAS the emulator validates, which returns the
bytes as an attachment of the verified type, cannot write or list, and is given only to the upload's owner
and only once the upload is accepted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest
import requests

from tests.conftest import StorageEndpoint
from tests.support import samples
from tests.support.fakes import ALICE, FixedCaller
from valet import api
from valet.caller import Caller
from valet.grants.downloads import content_disposition
from valet.runtime import Runtime
from valet.settings import Settings

pytestmark = pytest.mark.azurite

BOB = Caller(kind="bearer", issuer=ALICE.issuer, subject="bbbbbbbb-0000-0000-0000-000000000002", tenant=ALICE.tenant)


@pytest.fixture
def runtime(valet_env: dict[str, str]) -> Iterator[Runtime]:
    env = {**valet_env, "VALET_RECONCILE_AFTER_SECONDS": "0"}  # reconcile() decides fresh uploads
    rt = Runtime.from_settings(Settings.from_env(env), authenticator=FixedCaller())
    yield rt
    rt.audit.close()
    rt.blob_service.close()


def as_caller(runtime: Runtime, caller: Caller) -> Runtime:
    return Runtime(**{**vars(runtime), "authenticator": FixedCaller(caller)})


def upload(runtime: Runtime, endpoint: StorageEndpoint, data: bytes, filename: str = "Cat picture.png") -> str:
    body = {"filename": filename, "contentType": "image/png", "size": len(data)}
    response = api.create_upload(lambda: runtime, func.HttpRequest(
        method="POST", url="https://valet.example/api/uploads", headers={"content-type": "application/json"},
        body=json.dumps(body).encode()))
    grant = json.loads(response.get_body())
    assert requests.put(grant["uploadUrl"], data=data, headers=grant["headers"], verify=endpoint.ca_bundle,
                        timeout=30).status_code == 201
    return str(grant["uploadId"])


def decide(runtime: Runtime) -> None:
    assert runtime.validation.reconcile().decided >= 1  # as the blob trigger would


def download(runtime: Runtime, upload_id: str) -> func.HttpResponse:
    return api.upload_download(lambda: runtime, func.HttpRequest(
        method="GET", url=f"https://valet.example/api/uploads/{upload_id}/download", body=b"",
        route_params={"uploadId": upload_id}))


def test_the_owner_downloads_an_accepted_upload_as_an_attachment_of_the_verified_type(
    runtime: Runtime, storage_endpoint: StorageEndpoint
) -> None:
    data = samples.png()
    upload_id = upload(runtime, storage_endpoint, data, filename="Cat picture ü.png")
    decide(runtime)
    response = download(runtime, upload_id)
    assert response.status_code == 200, response.get_body()
    assert response.headers["Cache-Control"] == "no-store"
    doc = json.loads(response.get_body())
    assert set(doc) == {"uploadId", "downloadUrl", "expiresOn"}
    query = parse_qs(urlsplit(doc["downloadUrl"]).query)
    assert (query["sp"], query["sr"], query["spr"]) == (["r"], ["b"], ["https"])

    got = requests.get(doc["downloadUrl"], verify=storage_endpoint.ca_bundle, timeout=30)
    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["Content-Disposition"] == content_disposition("Cat picture ü.png")
    assert got.headers["Content-Disposition"].startswith('attachment; filename="Cat picture _.png"')

    # Read only, this one blob: no overwrite, no delete, no listing.
    url = doc["downloadUrl"]
    assert requests.put(url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, verify=storage_endpoint.ca_bundle,
                        timeout=30).status_code == 403
    assert requests.delete(url, verify=storage_endpoint.ca_bundle, timeout=30).status_code == 403
    base, _, sas = url.partition("?")
    account_container = "/".join(base.split("/")[:5])
    listing = requests.get(f"{account_container}?restype=container&comp=list&{sas}", verify=storage_endpoint.ca_bundle,
                           timeout=30)
    assert listing.status_code == 403


def test_pending_and_quarantined_uploads_cannot_be_downloaded(
    runtime: Runtime, storage_endpoint: StorageEndpoint
) -> None:
    pending = upload(runtime, storage_endpoint, samples.png())
    response = download(runtime, pending)
    assert response.status_code == 409
    assert json.loads(response.get_body())["code"] == "upload_not_accepted"

    bad = upload(runtime, storage_endpoint, samples.html(), filename="cute.png")
    decide(runtime)
    response = download(runtime, bad)
    body = json.loads(response.get_body())
    assert (response.status_code, body["code"], body["uploadStatus"]) == (409, "upload_not_accepted", "quarantined")


def test_another_callers_upload_is_not_found(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    upload_id = upload(runtime, storage_endpoint, samples.png())
    decide(runtime)
    response = download(as_caller(runtime, BOB), upload_id)
    assert response.status_code == 404
    assert json.loads(response.get_body())["code"] == "upload_not_found"


def test_a_download_needs_no_key_request_in_steady_state(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    upload_id = upload(runtime, storage_endpoint, samples.png())  # the grant fetched the key
    decide(runtime)
    before = runtime.storage_requests.count
    assert download(runtime, upload_id).status_code == 200
    assert runtime.storage_requests.count - before == 1  # the one listing that finds the accepted blob
