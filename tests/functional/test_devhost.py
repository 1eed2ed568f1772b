"""The app's registered functions served over real HTTP by the development host, with Core Tools' admin
endpoint for non-HTTP functions; real Azurite and a real bearer token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
import requests

from tests.conftest import StorageEndpoint
from tests.support.functions import fresh_app
from tests.support.samples import EICAR, malware_event, png
from valet.devhost import FunctionHost
from valet.devidp import DevIssuer

pytestmark = pytest.mark.azurite


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer) -> Iterator[FunctionHost]:
    with fresh_app(monkeypatch, {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value()}) as module:
        with FunctionHost(module.app, port=0) as server:
            yield server


def blob_path(grant: dict[str, str], env: dict[str, str]) -> str:
    container = env["VALET_UPLOADS_CONTAINER"]
    return f"{container}/{unquote(grant['blobUri'].split(f'/{container}/', 1)[1])}"


def test_grant_upload_validate_and_status_over_http(host: FunctionHost, issuer: DevIssuer,
                                                     storage_endpoint: StorageEndpoint,
                                                     valet_env: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {issuer.mint('alice')}"}
    data = png()
    r = requests.post(f"{host.url}/api/uploads", json={"filename": "a.png", "contentType": "image/png",
                                                       "size": len(data)}, headers=auth, timeout=10)
    assert r.status_code == 201 and r.headers["Content-Type"].startswith("application/json")
    grant = r.json()
    assert grant["statusUrl"].startswith(host.url + "/api/uploads/")
    put = requests.put(grant["uploadUrl"], data=data, headers=grant["headers"],
                       verify=storage_endpoint.ca_bundle or True, timeout=10)
    assert put.status_code == 201
    assert requests.get(grant["statusUrl"], headers=auth, timeout=10).json()["status"] == "pending"

    admin = requests.post(f"{host.url}/admin/functions/validate_upload",
                          json={"input": blob_path(grant, valet_env)}, timeout=30)
    assert admin.status_code == 202
    status = requests.get(grant["statusUrl"], headers=auth, timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "accepted"


def test_event_grid_malware_event_through_the_admin_endpoint(host: FunctionHost, issuer: DevIssuer,
                                                             storage_endpoint: StorageEndpoint,
                                                             valet_env: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {issuer.mint('bob')}"}
    grant = requests.post(f"{host.url}/api/uploads", json={"filename": "t.txt", "contentType": "text/plain",
                                                           "size": len(EICAR), "profile": "documents"},
                          headers=auth, timeout=10).json()
    assert requests.put(grant["uploadUrl"], data=EICAR, headers=grant["headers"],
                        verify=storage_endpoint.ca_bundle or True, timeout=10).status_code == 201
    requests.post(f"{host.url}/admin/functions/validate_upload",
                  json={"input": blob_path(grant, valet_env)}, timeout=30)
    assert requests.get(grant["statusUrl"], headers=auth, timeout=10).json()["status"] == "accepted"

    accepted_uri = grant["blobUri"].replace(f"/{valet_env['VALET_UPLOADS_CONTAINER']}/",
                                            f"/{valet_env['VALET_ACCEPTED_CONTAINER']}/")
    event = malware_event(accepted_uri)
    r = requests.post(f"{host.url}/admin/functions/malware_scan_result", json={"input": json.dumps(event)},
                      timeout=30)
    assert r.status_code == 202
    status = requests.get(grant["statusUrl"], headers=auth, timeout=10).json()
    assert status["status"] == "quarantined" and status["reason"] == "malware_detected"


def test_unknown_routes_methods_and_functions(host: FunctionHost) -> None:
    assert requests.get(f"{host.url}/api/nothing-here", timeout=10).status_code == 404
    assert requests.delete(f"{host.url}/api/uploads", timeout=10).status_code == 405
    assert requests.post(f"{host.url}/admin/functions/nope", json={"input": ""}, timeout=10).status_code == 404
    assert requests.post(f"{host.url}/admin/functions/sweep_tombstones", data=b"{not json",
                         timeout=10).status_code == 400


def test_the_host_refuses_non_loopback_addresses(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str]) -> None:
    with fresh_app(monkeypatch, valet_env) as module, pytest.raises(ValueError):
        FunctionHost(module.app, host="0.0.0.0", port=0)


def test_timer_functions_are_listed_with_their_schedules(host: FunctionHost) -> None:
    from valet.ncrontab import Schedule

    assert host.schedules == {"sweep_tombstones": "0 */5 * * * *", "reconcile_uploads": "30 */5 * * * *"}
    for expression in host.schedules.values():
        Schedule(expression)  # the runner can schedule it locally
