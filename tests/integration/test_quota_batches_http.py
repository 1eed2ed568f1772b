"""Batch grants and idempotent grants through the grant handler, against Azurite: all or nothing with
every refused index named, the quota for the sum, GET /api/batches/{id} for its caller only, one batch
event under duplicate deliveries; the same Idempotency-Key and body give the same upload ids and reserve
nothing twice, another body is 422."""

from __future__ import annotations

import json
from urllib.parse import unquote

import azure.functions as func
import pytest

from tests.conftest import StorageEndpoint
from tests.integration.test_cancel import BOB, as_caller, call, put
from tests.integration.test_decision_events import messages
from tests.integration.test_quota_grants import quota, runtime  # noqa: F401 - the fixture: quota table, profiles
from tests.support import samples
from valet import api
from valet.runtime import Runtime

pytestmark = pytest.mark.azurite


def post(rt: Runtime, body: dict[str, object], key: str | None = None) -> func.HttpResponse:
    headers = {"content-type": "application/json", **({"Idempotency-Key": key} if key else {})}
    return api.create_upload(lambda: rt, func.HttpRequest(method="POST", url="https://valet.example/api/uploads",
                                                          headers=headers, body=json.dumps(body).encode()))


def batch_status(rt: Runtime, batch_id: str) -> func.HttpResponse:
    return api.batch_status(lambda: rt, func.HttpRequest(
        method="GET", url=f"https://valet.example/api/batches/{batch_id}", body=b"", route_params={"batchId": batch_id}))


def png(name: str = "a.png", size: int = 68) -> dict[str, object]:
    return {"filename": name, "contentType": "image/png", "size": size}


def test_a_batch_is_granted_in_order_and_its_event_is_sent_once(runtime: Runtime,  # noqa: F811
                                                                storage_endpoint: StorageEndpoint) -> None:
    data = samples.png()
    response = post(runtime, {"profile": "free", "files": [png("1.png", len(data)), png("2.png", len(data))]})
    assert response.status_code == 201, response.get_body()
    doc = json.loads(response.get_body())
    assert doc["statusUrl"].endswith(f"/api/batches/{doc['batchId']}") and response.headers["Location"] == doc["statusUrl"]
    assert [u["profile"] for u in doc["uploads"]] == ["free", "free"] and len({u["uploadId"] for u in doc["uploads"]}) == 2
    pending = json.loads(batch_status(runtime, doc["batchId"]).get_body())
    assert pending["status"] == "pending" and [u["status"] for u in pending["uploads"]] == ["pending", "pending"]
    assert batch_status(as_caller(runtime, BOB), doc["batchId"]).status_code == 404  # another caller
    uploads = runtime.settings.storage.uploads_container
    for grant in doc["uploads"]:
        assert put(grant, storage_endpoint, data) == 201
        name = unquote(grant["blobUri"].split(f"/{uploads}/", 1)[1])
        for _ in range(3):  # duplicate deliveries
            runtime.validation.on_blob(uploads, name)
    done = json.loads(batch_status(runtime, doc["batchId"]).get_body())
    assert done == {"batchId": doc["batchId"], "status": "complete",
                    "uploads": [{"uploadId": u["uploadId"], "status": "accepted"} for u in doc["uploads"]]}
    events = [m for m in messages(runtime, storage_endpoint) if m.get("type") == "batch"]
    assert len(events) == 1 and events[0]["batchId"] == doc["batchId"]
    assert [u["status"] for u in events[0]["uploads"]] == ["accepted", "accepted"]  # type: ignore[index]
    runtime.quotas.sweep()  # the sweep owes nothing: the event was marked sent
    assert len([m for m in messages(runtime, storage_endpoint) if m.get("type") == "batch"]) == 1


def test_a_batch_with_bad_files_grants_nothing_and_names_every_one(runtime: Runtime) -> None:  # noqa: F811
    files = [png(), {"filename": "b.gif", "contentType": "image/gif", "size": 5}, png(size=10**6),
             {"filename": "d.png", "contentType": "image/png"}]
    response = post(runtime, {"profile": "metered", "files": files})
    body = json.loads(response.get_body())
    assert response.status_code == 400 and body["code"] == "batch_rejected"  # 415, 413 and 400: no common one
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (1, "content_type_not_allowed"), (2, "size_exceeds_profile"), (3, "invalid_size")]
    assert quota(runtime)[0]["reserved"] == {"bytesPerDay": 0, "filesPerDay": 0, "pendingFiles": 0}
    same = post(runtime, {"profile": "metered", "files": [png(), {**png(), "contentType": "image/gif"}] * 1})
    assert same.status_code == 415 and json.loads(same.get_body())["errors"][0]["index"] == 1
    many = post(runtime, {"profile": "metered", "files": [png()] * 21})
    assert many.status_code == 400 and json.loads(many.get_body())["code"] == "too_many_files"


def test_a_batch_over_quota_for_the_sum_is_429_and_reserves_nothing(runtime: Runtime) -> None:  # noqa: F811
    response = post(runtime, {"profile": "metered", "files": [png(size=1_000)] * 3})  # pendingFiles is 2
    body = json.loads(response.get_body())
    assert response.status_code == 429 and body["code"] == "batch_rejected" and response.headers["Retry-After"]
    assert [e["index"] for e in body["errors"]] == [0, 1, 2] and body["quota"]["scope"] == "caller"
    assert quota(runtime)[0]["reserved"]["pendingFiles"] == 0
    assert post(runtime, {"profile": "metered", "files": [png(size=1_000)] * 2}).status_code == 201


def test_the_same_idempotency_key_and_body_give_the_same_grant_once(runtime: Runtime) -> None:  # noqa: F811
    body = {**png(size=500), "profile": "metered"}
    first = post(runtime, body, key="phone-retry-1")
    again = post(runtime, body, key="phone-retry-1")
    assert first.status_code == again.status_code == 201
    a, b = json.loads(first.get_body()), json.loads(again.get_body())
    assert (a["uploadId"], a["blobUri"]) == (b["uploadId"], b["blobUri"])
    assert quota(runtime)[0]["reserved"] == {"bytesPerDay": 500, "filesPerDay": 1, "pendingFiles": 1}
    other = post(runtime, {**body, "size": 501}, key="phone-retry-1")
    assert other.status_code == 422 and json.loads(other.get_body())["code"] == "idempotency_key_reused"
    assert post(runtime, body, key="another-key").status_code == 201  # a new key is a new grant
    assert json.loads(post(runtime, body, key="bad key").get_body())["code"] == "invalid_idempotency_key"


def test_an_idempotent_batch_and_an_idempotent_grant_without_quota(runtime: Runtime) -> None:  # noqa: F811
    batch = {"profile": "metered", "files": [png(size=10), png(size=20)]}
    first, again = post(runtime, batch, key="batch-1"), post(runtime, batch, key="batch-1")
    assert first.status_code == again.status_code == 201
    a, b = json.loads(first.get_body()), json.loads(again.get_body())
    assert a["batchId"] == b["batchId"] and [u["uploadId"] for u in a["uploads"]] == [u["uploadId"] for u in b["uploads"]]
    assert quota(runtime)[0]["reserved"]["pendingFiles"] == 2
    assert post(runtime, {**png(), "profile": "metered"}, key="batch-1").status_code == 422  # another body
    free = json.loads(post(runtime, {**png(), "profile": "free"}, key="free-1").get_body())
    assert call(runtime, "DELETE", free["uploadId"]).status_code == 204  # its grant row is stored
