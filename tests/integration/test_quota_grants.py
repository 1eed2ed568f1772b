"""Quotas on the grant path against Azurite: 429 quota_exceeded at the limit with Retry-After and the
quota member, GET /api/quota, consumption at decision whatever the verdict (the bytes that arrived when
more than declared), release on cancel (DELETE without blobUri too), and zero Table requests for profiles
without a quota."""

from __future__ import annotations

import json
from collections.abc import Iterator

import azure.functions as func
import pytest

from tests.conftest import StorageEndpoint
from tests.integration.test_cancel import call, put
from tests.support import samples
from tests.support.fakes import FixedCaller
from tests.support.quota import new_table_name, table_client
from tests.support.telemetry import recorded
from valet import api, telemetry
from valet.runtime import Runtime
from valet.settings import Settings

pytestmark = pytest.mark.azurite

PROFILES = {"default": "free", "profiles": {
    "free": {"maxBytes": 10_000, "types": {"image/png": ["png"]}, "allowEmpty": True},
    "metered": {"maxBytes": 10_000, "types": {"image/png": ["png"]}, "allowEmpty": True,
                "quota": {"bytesPerDay": 3_000, "filesPerDay": 3, "pendingFiles": 2},
                "tenantQuota": {"filesPerDay": 100}},
}}


@pytest.fixture
def runtime(valet_env: dict[str, str], storage_endpoint: StorageEndpoint) -> Iterator[Runtime]:
    table = new_table_name()
    client = table_client(storage_endpoint.blob_url, storage_endpoint.table_url, storage_endpoint.ca_bundle, table)
    client.create_table()  # as the templates and valet dev create it: the app never does
    env = {**valet_env, "VALET_PROFILES": json.dumps(PROFILES), "VALET_QUOTA_TABLE": table}
    if storage_endpoint.table_url:
        env["VALET_TABLE_SERVICE_URL"] = storage_endpoint.table_url
    rt = Runtime.from_settings(Settings.from_env(env), authenticator=FixedCaller())
    yield rt
    rt.blob_service.close()
    client.delete_table()
    client.close()


def post(runtime: Runtime, profile: str, size: int) -> func.HttpResponse:
    body = {"filename": "cat.png", "contentType": "image/png", "size": size, "profile": profile}
    return api.create_upload(lambda: runtime, func.HttpRequest(
        method="POST", url="https://valet.example/api/uploads", headers={"content-type": "application/json"},
        body=json.dumps(body).encode()))


def quota(runtime: Runtime) -> list[dict[str, object]]:
    response = api.quota(lambda: runtime, func.HttpRequest(method="GET", url="https://valet.example/api/quota",
                                                           body=b""))
    assert response.status_code == 200
    return json.loads(response.get_body())["quotas"]  # type: ignore[no-any-return]


def test_profiles_without_a_quota_make_no_table_request(runtime: Runtime) -> None:
    for _ in range(20):
        assert post(runtime, "free", 100).status_code == 201
    assert runtime.table_requests.count == 0


def test_the_limit_is_429_quota_exceeded_with_retry_after_and_what_remains(runtime: Runtime) -> None:
    assert [post(runtime, "metered", 1_000).status_code for _ in range(2)] == [201, 201]
    refused = post(runtime, "metered", 1_000)  # a third pending grant: pendingFiles is 2
    body = json.loads(refused.get_body())
    assert refused.status_code == 429 and body["code"] == "quota_exceeded"
    assert refused.headers["Retry-After"].isdigit() and 1 <= int(refused.headers["Retry-After"]) <= 240 * 60 + 60
    assert body["quota"]["scope"] == "caller" and body["quota"]["profile"] == "metered"
    assert body["quota"]["reserved"] == {"bytesPerDay": 2_000, "filesPerDay": 2, "pendingFiles": 2}
    assert body["quota"]["remaining"] == {"bytesPerDay": 1_000, "filesPerDay": 1, "pendingFiles": 0}
    before = runtime.table_requests.count
    assert post(runtime, "metered", 1_000).status_code == 429  # remembered: no storage request
    assert runtime.table_requests.count == before
    shown = quota(runtime)
    assert [(q["scope"], q["profile"]) for q in shown] == [("caller", "metered"), ("tenant", "metered")]
    assert shown[0]["remaining"] == body["quota"]["remaining"] and shown[1]["reserved"] == {"filesPerDay": 2}


def test_an_upload_consumes_its_reservation_whatever_the_verdict(runtime: Runtime,
                                                                 storage_endpoint: StorageEndpoint) -> None:
    good, bad = samples.png(), b"<html><script>alert(1)</script></html>"
    g1 = json.loads(post(runtime, "metered", len(good)).get_body())
    g2 = json.loads(post(runtime, "metered", len(bad)).get_body())
    assert put(g1, storage_endpoint, good) == 201 and put(g2, storage_endpoint, bad) == 201
    uploads = runtime.settings.storage.uploads_container
    for g in (g1, g2):
        name = str(g["blobUri"]).split(f"/{uploads}/", 1)[1]
        from urllib.parse import unquote
        decision = runtime.validation.on_blob(uploads, unquote(name))
        assert decision is not None
        runtime.validation.on_blob(uploads, unquote(name))  # a duplicate delivery: nothing twice
    caller = quota(runtime)[0]
    assert caller["used"] == {"bytesPerDay": len(good) + len(bad), "filesPerDay": 2}
    assert caller["reserved"] == {"bytesPerDay": 0, "filesPerDay": 0, "pendingFiles": 0}
    assert post(runtime, "metered", 10).status_code == 201  # pending freed; the third file of the day
    assert post(runtime, "metered", 10).status_code == 429  # filesPerDay (3) reached


def test_an_upload_larger_than_declared_is_charged_the_bytes_that_arrived(runtime: Runtime,
                                                                           storage_endpoint: StorageEndpoint) -> None:
    from urllib.parse import unquote

    data = samples.png()  # a few hundred bytes, declared as 10: storage takes them, the validator does not
    g = json.loads(post(runtime, "metered", 10).get_body())
    assert put(g, storage_endpoint, data) == 201
    uploads = runtime.settings.storage.uploads_container
    decision = runtime.validation.on_blob(uploads, unquote(str(g["blobUri"]).split(f"/{uploads}/", 1)[1]))
    assert decision is not None and decision.outcome.value == "quarantined" and decision.size == len(data)
    assert quota(runtime)[0]["used"] == {"bytesPerDay": len(data), "filesPerDay": 1}  # not 10


def test_a_cancelled_grant_releases_its_reservation_even_without_blob_uri(runtime: Runtime) -> None:
    g1 = json.loads(post(runtime, "metered", 500).get_body())
    g2 = json.loads(post(runtime, "metered", 500).get_body())
    assert call(runtime, "DELETE", str(g1["uploadId"]), str(g1["blobUri"])).status_code == 204
    response = call(runtime, "DELETE", str(g2["uploadId"]))  # no blobUri: the stored grant row names the blob
    assert response.status_code == 204, response.get_body()
    assert quota(runtime)[0]["reserved"] == {"bytesPerDay": 0, "filesPerDay": 0, "pendingFiles": 0}
    assert call(runtime, "DELETE", str(g2["uploadId"])).status_code == 204  # again: nothing released twice
    free = json.loads(post(runtime, "free", 5).get_body())
    missing = call(runtime, "DELETE", str(free["uploadId"]))  # a grant without a stored row needs blobUri
    assert missing.status_code == 400 and json.loads(missing.get_body())["code"] == "invalid_blob_uri"


def test_quota_refusals_are_counted_as_refusals_of_the_quota_limit(runtime: Runtime) -> None:
    rec = recorded()
    previous = telemetry.install(rec.telemetry)
    try:
        assert [post(runtime, "metered", 1_000).status_code for _ in range(4)] == [201, 201, 429, 429]
        assert post(runtime, "free", 100).status_code == 201
    finally:
        telemetry.install(previous)
    # the store's refusal and the one the in-process memory answers both count; nothing else does
    assert rec.total("valet.refusals", valet__limit="quota", valet__code="quota_exceeded") == 2
    assert rec.total("valet.refusals") == 2
