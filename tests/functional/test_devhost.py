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
from valet.local.devhost import FunctionHost
from valet.local.devidp import DevIssuer

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
                         headers={"Content-Type": "application/json"}, timeout=10).status_code == 400


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({"Content-Type": "text/plain"}, 415, "unsupported_request_type"),  # what a cross-site form or fetch can send
    ({}, 415, "unsupported_request_type"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_request_type"),
    ({"Content-Type": "application/json", "Origin": "https://evil.example"}, 403, "origin_not_allowed"),
    ({"Content-Type": "application/json", "Origin": "null"}, 403, "origin_not_allowed"),
    ({"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, 403, "origin_not_allowed"),
    ({"Content-Type": "text/plain", "Origin": "https://evil.example"}, 403, "origin_not_allowed"),
])
def test_the_admin_endpoint_refuses_cross_site_requests(host: FunctionHost, headers: dict[str, str], status: int,
                                                        code: str) -> None:
    calls: list[str] = []
    kind, user = host.others["sweep_tombstones"]
    host.others["sweep_tombstones"] = (kind, lambda timer: calls.append("ran"))
    response = requests.post(f"{host.url}/admin/functions/sweep_tombstones", data=b'{"input": ""}', headers=headers,
                             timeout=10)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert calls == []  # the function never ran
    allowed = requests.post(f"{host.url}/admin/functions/sweep_tombstones", data=b'{"input": ""}', timeout=10,
                            headers={"Content-Type": "application/json; charset=utf-8", "Origin": host.url})
    assert allowed.status_code == 202 and calls == ["ran"]


def test_the_host_refuses_non_loopback_addresses(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str]) -> None:
    with fresh_app(monkeypatch, valet_env) as module, pytest.raises(ValueError):
        FunctionHost(module.app, host="0.0.0.0", port=0)


def test_timer_functions_are_listed_with_their_schedules(host: FunctionHost) -> None:
    from valet.local.ncrontab import Schedule

    assert host.schedules == {"sweep_tombstones": "0 */5 * * * *", "reconcile_uploads": "30 */5 * * * *"}
    for expression in host.schedules.values():
        Schedule(expression)  # the runner can schedule it locally


def test_failed_authentication_floods_are_throttled_per_peer_whatever_x_forwarded_for_says(
        host: FunctionHost) -> None:
    statuses = []
    for n in range(40):  # a spoofed X-Forwarded-For must not buy a fresh budget: the host records the peer
        response = requests.get(f"{host.url}/api/uploads/01a2038f-b780-7e5c-84dd-1b52881fb558", timeout=10,
                                headers={"Authorization": "Bearer a.b.c", "X-Forwarded-For": f"198.51.100.{n}"})
        statuses.append(response.status_code)
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}  # VALET_AUTH_FAILURES_BURST, default 20
    assert response.json()["code"] == "too_many_failures" and int(response.headers["Retry-After"]) >= 1
