"""Grants against a real Azurite: uploads with the returned URL and headers over plain HTTP, and the
misuse list refused by the emulator's own SAS checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest
import requests
from azure.storage.blob import BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.support import samples
from tests.support.fakes import ALICE, FixedCaller
from valet import api
from valet.grants.issuer import GrantIssuer
from valet.grants.token import GRANT_HEADER, GRANT_METADATA_KEY
from valet.runtime import Runtime
from valet.settings import Settings

pytestmark = pytest.mark.azurite

PNG = samples.png()


def post_grant(runtime: Runtime, body: dict[str, object]) -> func.HttpResponse:
    request = func.HttpRequest(
        method="POST",
        url="https://valet.example/api/uploads",
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
    )
    return api.create_upload(lambda: runtime, request)


def grant(runtime: Runtime, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"filename": "cat.png", "contentType": "image/png", "size": len(PNG)}
    body.update(overrides)
    response = post_grant(runtime, body)
    assert response.status_code == 201, response.get_body()
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def put(url: str, headers: dict[str, str], data: bytes, ca: str | None) -> requests.Response:
    return requests.put(url, data=data, headers=headers, verify=ca or True, timeout=10)


def test_upload_with_returned_url_and_headers_succeeds(
    runtime: Runtime, storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient
) -> None:
    g = grant(runtime)
    response = put(g["uploadUrl"], g["headers"], PNG, storage_endpoint.ca_bundle)  # type: ignore[arg-type]
    assert response.status_code == 201

    container = runtime.settings.storage.uploads_container
    blob_path = urlsplit(str(g["blobUri"])).path.split(f"/{container}/", 1)[1]
    props = blob_service.get_blob_client(container, blob_path).get_blob_properties()
    assert props.size == len(PNG)
    assert props.content_settings.content_type == "image/png"
    token = props.metadata[GRANT_METADATA_KEY]
    claims = runtime.settings.grant_keys.verify(token)
    assert claims.blob == blob_path and claims.upload_id == g["uploadId"] and claims.size == len(PNG)


def test_response_has_reference_sample_shape_and_upload_contract(runtime: Runtime) -> None:
    g = grant(runtime)
    assert g["uploadUrl"] == f"{g['blobUri']}?{g['signature']}"
    assert g["method"] == "PUT"
    headers = g["headers"]
    assert isinstance(headers, dict)
    assert headers["x-ms-blob-type"] == "BlockBlob"
    assert headers["x-ms-blob-content-type"] == "image/png"
    assert GRANT_HEADER in headers
    assert g["maxBytes"] == runtime.settings.policy.profile(None).max_bytes
    assert g["statusUrl"] == f"https://valet.example/api/uploads/{g['uploadId']}"
    blob_path = urlsplit(str(g["blobUri"])).path
    leaf = blob_path.rsplit("/", 1)[1]
    assert leaf.startswith(f"{g['uploadId']}.images.{len(PNG)}.") and leaf.endswith(".png")
    assert ALICE.partition in blob_path


def test_sas_is_create_only_single_blob_https_and_short_lived(runtime: Runtime) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    g = grant(runtime)  # the first grant fetches the delegation key: on a busy machine that takes seconds
    after = datetime.now(UTC)
    q = {k: v[0] for k, v in parse_qs(str(g["signature"]), strict_parsing=True).items()}
    assert q["sp"] == "c"
    assert q["sr"] == "b"
    assert q["spr"] == "https"
    assert "skoid" in q and "sktid" in q and "ske" in q  # user delegation SAS, not an account-key SAS
    expiry = datetime.strptime(q["se"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    start = datetime.strptime(q["st"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    key_expiry = datetime.strptime(q["ske"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(minutes=2, seconds=55) <= expiry - before <= after - before + timedelta(minutes=3, seconds=5)
    assert expiry <= key_expiry
    assert before - timedelta(minutes=15) <= start <= after - timedelta(minutes=15)  # 15 minutes back
    assert g["expiresOn"] == q["se"]


def test_start_time_is_left_out_when_skew_is_zero(valet_env: dict[str, str]) -> None:
    rt = Runtime.from_settings(
        Settings.from_env({**valet_env, "VALET_SAS_START_SKEW_MINUTES": "0"}), authenticator=FixedCaller()
    )
    assert "st" not in parse_qs(str(grant(rt)["signature"]))


class TestMisuseIsRefusedByStorage:
    @pytest.fixture
    def uploaded(self, runtime: Runtime, storage_endpoint: StorageEndpoint) -> dict[str, object]:
        g = grant(runtime)
        assert put(g["uploadUrl"], g["headers"], PNG, storage_endpoint.ca_bundle).status_code == 201  # type: ignore[arg-type]
        return g

    def test_overwrite(self, uploaded: dict[str, object], storage_endpoint: StorageEndpoint) -> None:
        again = put(uploaded["uploadUrl"], uploaded["headers"], b"evil", storage_endpoint.ca_bundle)  # type: ignore[arg-type]
        assert again.status_code == 403

    def test_read(self, uploaded: dict[str, object], storage_endpoint: StorageEndpoint) -> None:
        r = requests.get(str(uploaded["uploadUrl"]), verify=storage_endpoint.ca_bundle or True, timeout=10)
        assert r.status_code == 403
        assert PNG not in r.content

    def test_delete(self, uploaded: dict[str, object], storage_endpoint: StorageEndpoint,
                    runtime: Runtime, blob_service: BlobServiceClient) -> None:
        r = requests.delete(str(uploaded["uploadUrl"]), verify=storage_endpoint.ca_bundle or True, timeout=10)
        assert r.status_code == 403
        container = runtime.settings.storage.uploads_container
        assert len(list(blob_service.get_container_client(container).list_blobs())) == 1

    def test_list(self, uploaded: dict[str, object], storage_endpoint: StorageEndpoint, runtime: Runtime) -> None:
        container_url = str(uploaded["blobUri"]).split(f"/{runtime.settings.storage.uploads_container}/")[0]
        url = f"{container_url}/{runtime.settings.storage.uploads_container}?restype=container&comp=list&{uploaded['signature']}"
        r = requests.get(url, verify=storage_endpoint.ca_bundle or True, timeout=10)
        assert r.status_code == 403


def test_other_blob_name_with_the_same_signature_is_refused(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    g = grant(runtime)
    other = str(g["blobUri"]).rsplit("/", 1)[0] + "/someone-else.png"
    r = put(f"{other}?{g['signature']}", g["headers"], PNG, storage_endpoint.ca_bundle)  # type: ignore[arg-type]
    assert r.status_code == 403


def test_tampered_signature_is_refused(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    g = grant(runtime)
    head, _, sig = str(g["signature"]).partition("&sig=")
    assert sig
    forged = f"{head}&sig={'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    r = put(f"{g['blobUri']}?{forged}", g["headers"], PNG, storage_endpoint.ca_bundle)  # type: ignore[arg-type]
    assert r.status_code == 403


def test_widened_permissions_are_refused(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    g = grant(runtime)
    widened = str(g["signature"]).replace("sp=c", "sp=rcwd")
    r = requests.get(f"{g['blobUri']}?{widened}", verify=storage_endpoint.ca_bundle or True, timeout=10)
    assert r.status_code == 403


def test_expired_grant_is_refused(valet_env: dict[str, str], storage_endpoint: StorageEndpoint) -> None:
    settings = Settings.from_env({**valet_env, "VALET_SAS_TTL_MINUTES": "1", "VALET_SAS_START_SKEW_MINUTES": "0"})
    rt = Runtime.from_settings(settings, authenticator=FixedCaller())
    past = datetime.now(UTC) - timedelta(minutes=2)
    rt.grants = GrantIssuer(
        account_url=settings.storage.account_url,
        account_name=rt.blob_service.account_name or "",
        container=settings.storage.uploads_container,
        keys=rt.key_cache,
        signer=settings.grant_keys,
        policy=settings.policy,
        sas_ttl=settings.sas_ttl,
        sas_start_skew=settings.sas_start_skew,
        clock=lambda: past,
    )
    g = grant(rt)
    r = put(g["uploadUrl"], g["headers"], PNG, storage_endpoint.ca_bundle)  # type: ignore[arg-type]
    assert r.status_code == 403


def test_steady_state_grants_make_no_storage_requests(runtime: Runtime) -> None:
    grant(runtime)  # first grant may fetch the user delegation key
    after_first = runtime.storage_requests.count
    assert after_first <= 1
    for _ in range(200):
        grant(runtime)
    assert runtime.storage_requests.count == after_first
    assert runtime.key_cache.fetches == 1


def test_azurite_refuses_block_uploads_with_a_create_only_sas(runtime: Runtime,
                                                              storage_endpoint: StorageEndpoint) -> None:
    """Azure allows Put Block with ``sp=c`` since 2026-04-06 (see tests/live); Azurite 3.37 does not.
    This pins the documented difference: if it starts passing, the table in docs/local-development.md needs updating."""
    if storage_endpoint.how == "environment" and not storage_endpoint.blob_url.startswith("https://127."):
        pytest.skip("this checks the emulator's behaviour")
    g = grant(runtime)
    block_id = requests.utils.quote("YmxvY2stMDAwMDAx")
    r = requests.put(f"{g['uploadUrl']}&comp=block&blockid={block_id}", data=PNG,
                     verify=storage_endpoint.ca_bundle or True, timeout=10)
    assert r.status_code == 403
