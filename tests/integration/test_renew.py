"""``POST /api/uploads/{uploadId}/renew`` against a real Azurite: a fresh create-only SAS for the same blob,
for the same caller, while the upload is not complete and its window is open."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import azure.functions as func
import pytest
import requests

from tests.conftest import StorageEndpoint
from tests.integration.test_validation import BOB
from tests.support import samples
from tests.support.fakes import FixedCaller
from valet import api
from valet.caller import Caller
from valet.runtime import Runtime
from valet.settings import Settings
from valet.validation.reasons import Outcome

pytestmark = pytest.mark.azurite


@pytest.fixture
def caller() -> FixedCaller:
    return FixedCaller()


@pytest.fixture
def runtime(valet_env: dict[str, str], caller: FixedCaller) -> Iterator[Runtime]:
    rt = Runtime.from_settings(Settings.from_env(valet_env), authenticator=caller)
    yield rt
    rt.audit.close()
    rt.blob_service.close()


def call(handler: object, runtime: Runtime, url: str, body: object, route: dict[str, str] | None = None
         ) -> func.HttpResponse:
    request = func.HttpRequest(method="POST", url=url, headers={"content-type": "application/json"},
                               body=json.dumps(body).encode(), route_params=route or {})
    return handler(lambda: runtime, request)  # type: ignore[operator, no-any-return]


def grant(runtime: Runtime, data: bytes) -> dict[str, object]:
    response = call(api.create_upload, runtime, "https://valet.example/api/uploads",
                    {"filename": "cat.png", "contentType": "image/png", "size": len(data)})
    assert response.status_code == 201
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def renew(runtime: Runtime, upload_id: str, blob_uri: object) -> func.HttpResponse:
    return call(api.renew_upload, runtime, f"https://valet.example/api/uploads/{upload_id}/renew",
                {"blobUri": blob_uri}, {"uploadId": upload_id})


def problem(response: func.HttpResponse) -> tuple[int, str]:
    return response.status_code, json.loads(response.get_body())["code"]


def test_renewal_gives_a_fresh_sas_for_the_same_blob_that_uploads(runtime: Runtime,
                                                                  storage_endpoint: StorageEndpoint) -> None:
    data = samples.png()
    g = grant(runtime, data)
    response = renew(runtime, str(g["uploadId"]), g["blobUri"])
    assert response.status_code == 200, response.get_body()
    fresh = json.loads(response.get_body())
    assert (fresh["uploadId"], fresh["blobUri"], fresh["statusUrl"]) == (g["uploadId"], g["blobUri"], g["statusUrl"])
    assert fresh["headers"] == {"x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": "image/png"}
    sas = {k: v[0] for k, v in parse_qs(str(fresh["signature"])).items()}
    assert (sas["sp"], sas["sr"], sas["spr"]) == ("c", "b", "https")
    assert datetime.strptime(fresh["expiresOn"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) <= \
        datetime.now(UTC) + runtime.settings.sas_ttl + timedelta(seconds=1)
    # The renewed URL with the original grant's headers uploads, and the upload is decided as granted.
    put = requests.put(fresh["uploadUrl"], data=data, headers=g["headers"], timeout=10,  # type: ignore[arg-type]
                       verify=storage_endpoint.ca_bundle or True)
    assert put.status_code == 201
    container = runtime.settings.storage.uploads_container
    name = str(g["blobUri"]).split(f"/{container}/", 1)[1]
    decision = runtime.validation.validator.process(name)
    assert decision is not None and decision.outcome is Outcome.ACCEPTED
    # Once decided there is nothing to renew.
    assert problem(renew(runtime, str(g["uploadId"]), g["blobUri"])) == (409, "upload_decided")


def test_a_complete_upload_is_not_renewed(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    data = samples.png()
    g = grant(runtime, data)
    assert requests.put(str(g["uploadUrl"]), data=data, headers=g["headers"], timeout=10,  # type: ignore[arg-type]
                        verify=storage_endpoint.ca_bundle or True).status_code == 201
    assert problem(renew(runtime, str(g["uploadId"]), g["blobUri"])) == (409, "upload_complete")


def test_tombstone_metadata_a_client_wrote_does_not_count_as_decided(runtime: Runtime,
                                                                     storage_endpoint: StorageEndpoint) -> None:
    data = samples.png()
    g = grant(runtime, data)
    spoofed = {**g["headers"], "x-ms-meta-valetstate": "tombstone"}  # type: ignore[dict-item]
    assert requests.put(str(g["uploadUrl"]), data=data, headers=spoofed, timeout=10,
                        verify=storage_endpoint.ca_bundle or True).status_code == 201
    assert problem(renew(runtime, str(g["uploadId"]), g["blobUri"])) == (409, "upload_complete")


def test_another_callers_upload_or_a_made_up_uri_is_not_found(runtime: Runtime, caller: FixedCaller) -> None:
    g = grant(runtime, samples.png())
    upload_id, uri = str(g["uploadId"]), str(g["blobUri"])
    assert problem(renew(runtime, upload_id, uri.replace(".png", ".jpg"))) == (404, "upload_not_found")
    assert problem(renew(runtime, upload_id, "https://evil.example/x.png")) == (404, "upload_not_found")
    other = grant(runtime, samples.png())
    assert problem(renew(runtime, upload_id, other["blobUri"])) == (404, "upload_not_found")  # id and URI differ
    size_changed = uri.replace(f".images.{len(samples.png())}.", ".images.1.")
    assert problem(renew(runtime, upload_id, size_changed)) == (404, "upload_not_found")  # the MAC fails
    caller.caller = BOB
    assert problem(renew(runtime, upload_id, uri)) == (404, "upload_not_found")


@pytest.mark.parametrize(("body", "expected"), [
    ({}, (400, "invalid_blob_uri")), ({"blobUri": 5}, (400, "invalid_blob_uri")),
    ({"blobUri": "x", "size": 1}, (400, "unknown_field")), ([], (400, "invalid_json")),
])
def test_bad_renew_requests(runtime: Runtime, body: object, expected: tuple[int, str]) -> None:
    g = grant(runtime, samples.png())
    response = call(api.renew_upload, runtime, "https://valet.example/api/uploads/x/renew", body,
                    {"uploadId": str(g["uploadId"])})
    assert problem(response) == expected
    assert problem(renew(runtime, "not-an-id", g["blobUri"])) == (400, "invalid_upload_id")


def test_the_window_closes(valet_env: dict[str, str], storage_endpoint: StorageEndpoint) -> None:
    clock = [datetime.now(UTC)]
    rt = Runtime.from_settings(Settings.from_env(valet_env), authenticator=FixedCaller(Caller(
        kind="bearer", issuer="https://issuer.example", subject="carol")))
    try:
        rt.grants._clock = lambda: clock[0]  # type: ignore[attr-defined]
        g = grant(rt, samples.png())
        clock[0] += rt.settings.upload_window - timedelta(seconds=5)
        fresh = json.loads(renew(rt, str(g["uploadId"]), g["blobUri"]).get_body())
        expires = datetime.strptime(fresh["expiresOn"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert expires <= clock[0] + timedelta(seconds=6)  # never past the window's end
        clock[0] += timedelta(seconds=10)
        assert problem(renew(rt, str(g["uploadId"]), g["blobUri"])) == (409, "upload_window_closed")
    finally:
        rt.blob_service.close()


def test_renewal_needs_the_roles_the_profile_requires(runtime: Runtime, caller: FixedCaller) -> None:
    response = call(api.create_upload, runtime, "https://valet.example/api/uploads",
                    {"filename": "big.bin", "contentType": "application/octet-stream", "size": 10, "profile": "large"})
    assert response.status_code == 201
    g = json.loads(response.get_body())
    assert renew(runtime, g["uploadId"], g["blobUri"]).status_code == 200
    caller.caller = replace(caller.caller, roles=frozenset({"Uploads.Write"}))  # same caller, Uploads.Large revoked
    assert problem(renew(runtime, g["uploadId"], g["blobUri"])) == (403, "insufficient_scope")
