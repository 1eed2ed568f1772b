"""``GET /api/uploads/{uploadId}/blocks`` against Azurite: blocks staged with the grant's create-only SAS
(the patched emulator), read with the app's identity, for the caller the upload was granted to only."""

from __future__ import annotations

import json
from urllib.parse import quote

import azure.functions as func
import pytest

from tests.conftest import StorageEndpoint
from tests.support import blockrules
from tests.support.fakes import ALICE, FixedCaller
from valet import api
from valet.api import upload_blocks
from valet.caller import Caller
from valet.runtime import Runtime

pytestmark = pytest.mark.azurite

BOB = Caller(kind="bearer", issuer=ALICE.issuer, subject="bbbbbbbb-0000-0000-0000-000000000002", tenant=ALICE.tenant)


def grant(runtime: Runtime, size: int = 30) -> dict[str, object]:
    req = func.HttpRequest(method="POST", url="https://valet.example/api/uploads",
                           headers={"content-type": "application/json"},
                           body=json.dumps({"filename": "a.png", "contentType": "image/png", "size": size}).encode())
    response = api.create_upload(lambda: runtime, req)
    assert response.status_code == 201
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def blocks(runtime: Runtime, g: dict[str, object], *, upload_id: str | None = None) -> func.HttpResponse:
    uid = upload_id or str(g["uploadId"])
    req = func.HttpRequest(method="GET", url=f"https://valet.example/api/uploads/{uid}/blocks",
                           params={"blobUri": str(g["blobUri"])}, route_params={"uploadId": uid}, body=b"")
    return upload_blocks(lambda: runtime, req)


def test_nothing_staged_yet(runtime: Runtime) -> None:
    g = grant(runtime)
    response = blocks(runtime, g)
    assert response.status_code == 200
    doc = json.loads(response.get_body())
    assert doc["committed"] is False and doc["blocks"] == [] and doc["expiresOn"].endswith("Z")
    assert response.headers["Cache-Control"] == "no-store"


def test_staged_blocks_are_listed_with_their_ids_and_sizes_in_one_storage_request(
        runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    g = grant(runtime)
    rig = blockrules.rig_for(runtime, g, storage_endpoint.ca_bundle or True)
    assert rig.put_block(rig.url, 0, b"a" * 10).status_code == 201
    assert rig.put_block(rig.url, 1, b"b" * 7).status_code == 201
    before = runtime.storage_requests.count
    doc = json.loads(blocks(runtime, g).get_body())
    assert runtime.storage_requests.count - before == 1
    assert doc["committed"] is False
    assert doc["blocks"] == [{"id": blockrules.block_id(0), "size": 10}, {"id": blockrules.block_id(1), "size": 7}]


def test_a_committed_upload_says_so(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    g = grant(runtime)
    rig = blockrules.rig_for(runtime, g, storage_endpoint.ca_bundle or True)
    assert rig.put_block(rig.url, 0, b"a" * 10).status_code == 201
    assert rig.commit(rig.url, blockrules.block_id(0)).status_code == 201
    doc = json.loads(blocks(runtime, g).get_body())
    assert doc == {"committed": True, "blocks": [{"id": blockrules.block_id(0), "size": 10}],
                   "expiresOn": doc["expiresOn"]}


def test_anyone_else_gets_404_and_storage_is_not_asked(runtime: Runtime) -> None:
    g = grant(runtime)
    bob = Runtime(**{**vars(runtime), "authenticator": FixedCaller(BOB)})
    before = runtime.storage_requests.count
    response = blocks(bob, g)
    assert response.status_code == 404 and json.loads(response.get_body())["code"] == "upload_not_found"
    other = grant(runtime)
    assert blocks(runtime, g, upload_id=str(other["uploadId"])).status_code == 404  # the blobUri of another id
    assert runtime.storage_requests.count == before


def test_a_missing_or_foreign_blob_uri_is_a_clear_error(runtime: Runtime) -> None:
    g = grant(runtime)
    missing = blocks(runtime, {**g, "blobUri": ""})
    assert missing.status_code == 400 and json.loads(missing.get_body())["code"] == "invalid_blob_uri"
    foreign = blocks(runtime, {**g, "blobUri": "https://evil.example/uploads/" + quote("x/y.png")})
    assert foreign.status_code == 404


def test_it_spends_the_status_routes_budget_and_answers_preflights() -> None:
    route = api.ROUTES["upload_blocks"]
    assert route.cors and {m: e.admission for m, e in route.endpoints.items()} == {"GET": api.READ}
