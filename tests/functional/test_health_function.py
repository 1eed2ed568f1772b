"""``GET /api/health`` called with real ``func.HttpRequest`` objects: 200 when the configuration loaded,
503 with ``Retry-After`` when it did not, and never a storage call (storage here is a closed port)."""

from __future__ import annotations

import json

import azure.functions as func

from valet import api
from valet.local.emulator import free_port
from valet.runtime import RuntimeHolder

ENV = {
    "VALET_STORAGE_ACCOUNT_URL": f"https://127.0.0.1:{free_port()}/devstoreaccount1",
    "VALET_STORAGE_CREDENTIAL": "emulator",
    "VALET_GRANT_SIGNING_KEYS": "k1:" + "A" * 43,
    "VALET_STORAGE_TIMEOUT_SECONDS": "1",
}
REQUEST = func.HttpRequest(method="GET", url="https://valet.example/api/health", headers={}, body=b"")


def test_health_is_200_when_the_configuration_loaded() -> None:
    response = api.health(RuntimeHolder(ENV), REQUEST)
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert body["status"] == "ok" and body["configuration"] == "loaded"
    assert body["delegationKey"] in ("ready", "pending")  # no key can be had here: pending, and no wait


def test_health_is_503_with_retry_after_when_the_configuration_did_not_load() -> None:
    response = api.health(RuntimeHolder({**ENV, "VALET_GRANT_SIGNING_KEYS": "not a key"}), REQUEST)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert json.loads(response.get_body()) == {"status": "unavailable", "configuration": "error"}
    assert b"VALET_" not in response.get_body()  # no setting names or values


def test_the_openapi_route_serves_the_packaged_document() -> None:
    response = api.openapi_document(REQUEST)
    assert response.status_code == 200 and json.loads(response.get_body())["openapi"].startswith("3.1")
