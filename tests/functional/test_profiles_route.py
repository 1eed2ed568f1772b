"""``GET /api/profiles`` and profile roles, through the registered functions with real requests, real
tokens from a local OIDC issuer and real API keys in the emulator's key store."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import ModuleType

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.conftest import unique_name
from tests.support.functions import fresh_app, user_function
from valet.auth import BlobKeyStore, KeyRecord, apikeys
from valet.local.devidp import DevIssuer

pytestmark = pytest.mark.azurite

ZIP = {"filename": "a.zip", "contentType": "application/zip", "size": 100, "profile": "archives"}


PEPPER = b"k" * 32


@pytest.fixture
def keys(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    container = blob_service.create_container(unique_name("keys"))
    yield container
    container.delete_container()


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer,
        keys: ContainerClient) -> Iterator[ModuleType]:
    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value(), "VALET_APIKEY_CONTAINER": keys.container_name,
           "VALET_APIKEY_PEPPER": base64.urlsafe_b64encode(PEPPER).decode()}
    with fresh_app(monkeypatch, env) as module:
        yield module


def api_key(keys: ContainerClient, scopes: tuple[str, ...]) -> str:
    key, parsed = apikeys.generate()
    BlobKeyStore(keys).put(KeyRecord(parsed.kid, "n", "svc", apikeys.hash_secret(PEPPER, parsed), "t",
                                     frozenset(scopes)))
    return key


def call(app: ModuleType, name: str, method: str, path: str, headers: dict[str, str],
         body: object = None) -> func.HttpResponse:
    req = func.HttpRequest(method=method, url=f"https://valet.example/api/{path}",
                           headers={"content-type": "application/json", **headers},
                           body=b"" if body is None else json.dumps(body).encode())
    return user_function(app, name)(req)  # type: ignore[no-any-return]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_profiles_lists_what_the_caller_may_use(app: ModuleType, issuer: DevIssuer) -> None:
    plain = call(app, "list_profiles", "GET", "profiles", bearer(issuer.mint("alice")))
    assert plain.status_code == 200 and plain.mimetype == "application/json"
    doc = json.loads(plain.get_body())
    assert doc["default"] == "images"
    assert [p["name"] for p in doc["profiles"]] == ["images", "documents"]
    images = doc["profiles"][0]
    assert images["maxBytes"] == 26214400 and images["types"]["image/jpeg"] == ["jpg", "jpeg"]

    everything = issuer.mint("carol", roles=("Uploads.Write", "Uploads.Archives", "Uploads.Large"))
    doc = json.loads(call(app, "list_profiles", "GET", "profiles", bearer(everything)).get_body())
    assert [p["name"] for p in doc["profiles"]] == ["images", "documents", "archives", "large"]


def test_profiles_needs_credentials_and_the_required_role(app: ModuleType, issuer: DevIssuer) -> None:
    anonymous = call(app, "list_profiles", "GET", "profiles", {})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"]
    no_role = call(app, "list_profiles", "GET", "profiles", bearer(issuer.mint("bob", roles=())))
    assert no_role.status_code == 403


def test_a_profile_needs_its_roles_for_a_grant(app: ModuleType, issuer: DevIssuer) -> None:
    refused = call(app, "create_upload", "POST", "uploads", bearer(issuer.mint("alice")), ZIP)
    assert refused.status_code == 403
    problem = json.loads(refused.get_body())
    assert problem["code"] == "insufficient_scope" and "archives" in problem["detail"]
    assert 'scope="Uploads.Archives"' in refused.headers["WWW-Authenticate"]
    large = call(app, "create_upload", "POST", "uploads", bearer(issuer.mint("alice")),
                 {**ZIP, "contentType": "application/octet-stream", "profile": "large"})
    assert large.status_code == 403

    allowed = call(app, "create_upload", "POST", "uploads",
                   bearer(issuer.mint("zoe", roles=("Uploads.Write", "Uploads.Archives"))), ZIP)
    assert allowed.status_code == 201, allowed.get_body()
    assert json.loads(allowed.get_body())["profile"] == "archives"


def test_api_key_scopes_count_as_roles(app: ModuleType, keys: ContainerClient) -> None:
    key = api_key(keys, ("Uploads.Write", "Uploads.Large"))
    ok = call(app, "create_upload", "POST", "uploads", {"x-api-key": key},
              {"filename": "b.bin", "contentType": "application/octet-stream", "size": 10, "profile": "large"})
    assert ok.status_code == 201, ok.get_body()
    listed = json.loads(call(app, "list_profiles", "GET", "profiles", {"x-api-key": key}).get_body())
    assert [p["name"] for p in listed["profiles"]] == ["images", "documents", "large"]
