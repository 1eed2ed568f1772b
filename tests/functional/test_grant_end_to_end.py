"""The registered function, end to end: a real bearer token from a local OIDC issuer (discovery + JWKS
over HTTP), real Azurite, and the upload made with nothing but the response."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from types import ModuleType

import azure.functions as func
import pytest
import requests

from tests.conftest import StorageEndpoint
from tests.support.functions import fresh_app, user_function
from valet.local.devidp import DevIssuer

pytestmark = pytest.mark.azurite


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer) -> Iterator[ModuleType]:
    with fresh_app(monkeypatch, {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value()}) as module:
        yield module


def call_grant(app: ModuleType, headers: dict[str, str], body: dict[str, object]) -> func.HttpResponse:
    req = func.HttpRequest(
        method="POST",
        url="https://valet.example/api/uploads",
        headers={"content-type": "application/json", **headers},
        body=json.dumps(body).encode(),
    )
    return user_function(app, "create_upload")(req)  # type: ignore[no-any-return]


BODY = {"filename": "../../photo.jpg", "contentType": "image/jpeg", "size": 4}


def test_bearer_token_gets_a_grant_and_the_upload_lands(
    app: ModuleType, issuer: DevIssuer, storage_endpoint: StorageEndpoint
) -> None:
    response = call_grant(app, {"authorization": f"Bearer {issuer.mint('alice')}"}, BODY)
    assert response.status_code == 201, response.get_body()
    grant = json.loads(response.get_body())
    put = requests.put(grant["uploadUrl"], data=b"\xff\xd8\xff\xe0", headers=grant["headers"],
                       verify=storage_endpoint.ca_bundle or True, timeout=10)
    assert put.status_code == 201
    assert "/photo.jpg" not in grant["blobUri"] and grant["blobUri"].endswith(".jpg")


def test_token_without_the_role_is_403(app: ModuleType, issuer: DevIssuer) -> None:
    response = call_grant(app, {"authorization": f"Bearer {issuer.mint('bob', roles=())}"}, BODY)
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]


def test_token_for_another_audience_is_401(app: ModuleType, issuer: DevIssuer) -> None:
    response = call_grant(app, {"authorization": f"Bearer {issuer.mint('eve', audience='api://other')}"}, BODY)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_callers_get_separate_partitions(app: ModuleType, issuer: DevIssuer) -> None:
    a = json.loads(call_grant(app, {"authorization": f"Bearer {issuer.mint('alice')}"}, BODY).get_body())
    b = json.loads(call_grant(app, {"authorization": f"Bearer {issuer.mint('bob')}"}, BODY).get_body())
    prefix = lambda g: g["blobUri"].rsplit("/", 4)[0]  # noqa: E731 - .../<tenant>/<caller>
    assert prefix(a) != prefix(b)


def test_burst_over_the_rate_limit_is_429(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str],
                                          issuer: DevIssuer) -> None:
    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value(),
           "VALET_RATE_LIMIT_PER_MINUTE": "1", "VALET_RATE_LIMIT_BURST": "3"}
    with fresh_app(monkeypatch, env) as module:
        token = issuer.mint("carol")
        statuses = [call_grant(module, {"authorization": f"Bearer {token}"}, BODY).status_code for _ in range(5)]
        last = call_grant(module, {"authorization": f"Bearer {token}"}, BODY)
    assert statuses[:3] == [201, 201, 201] and statuses[3:] == [429, 429]
    assert int(last.headers["Retry-After"]) >= 1


def call_status(app: ModuleType, token: str, upload_id: str, what: str = "upload_status") -> func.HttpResponse:
    suffix = "/download" if what == "upload_download" else ""
    req = func.HttpRequest(method="GET", url=f"https://valet.example/api/uploads/{upload_id}{suffix}",
                           headers={"authorization": f"Bearer {token}"}, body=b"", route_params={"uploadId": upload_id})
    return user_function(app, what)(req)  # type: ignore[no-any-return]


def test_a_subject_spelled_like_a_hashed_segment_gets_its_own_partition(app: ModuleType, issuer: DevIssuer) -> None:
    """Issue 24 item 6: a subject that is not a plain segment is hashed to ``h-<32 hex>``; a caller whose
    subject *is* that spelling shared the partition and read the other's status and download."""
    victim = "alice@example.com"  # not a plain segment: hashed
    spelled = "h-" + hashlib.sha256(victim.encode()).hexdigest()[:32]
    grant = json.loads(call_grant(app, {"authorization": f"Bearer {issuer.mint(victim, oid=victim)}"}, BODY).get_body())
    assert f"/u-{spelled}/" in grant["blobUri"]  # the victim's partition, as it always was
    thief = issuer.mint("mallory", oid=spelled)
    assert call_status(app, issuer.mint(victim, oid=victim), grant["uploadId"]).status_code == 200
    assert call_status(app, thief, grant["uploadId"]).status_code == 404
    assert call_status(app, thief, grant["uploadId"], "upload_download").status_code == 404
    own = json.loads(call_grant(app, {"authorization": f"Bearer {thief}"}, BODY).get_body())
    assert f"/u-{spelled}/" not in own["blobUri"]


def test_a_tid_claim_from_a_single_tenant_issuer_does_not_choose_the_partition(app: ModuleType,
                                                                                issuer: DevIssuer) -> None:
    """Only a multi-tenant (``{tenantid}``) issuer's ``tid`` names the tenant; any other issuer's partition
    comes from the issuer itself, so a token naming another directory's tenant lands in its issuer's."""
    tenants = ["11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"]
    uris = [json.loads(call_grant(app, {"authorization": f"Bearer {issuer.mint('alice', tid=t)}"}, BODY).get_body())
            ["blobUri"] for t in tenants]
    assert all(t not in uri for t in tenants for uri in uris)
    prefix = lambda uri: uri.rsplit("/", 4)[0]  # noqa: E731 - .../<tenant>/<caller>
    assert prefix(uris[0]) == prefix(uris[1])
