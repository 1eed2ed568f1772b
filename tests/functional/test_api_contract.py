"""The OpenAPI document (``valet/openapi.json``) is what the running app serves, names every HTTP function
the app registers, and describes what ``valet dev`` answers to hand-picked requests: every status the
grant and status routes give (429 included, with the rate limit on), headers such as ``Retry-After``,
``WWW-Authenticate`` and ``Allow``, and the problem+json bodies. The fuzzer (test_api_fuzz.py) covers
what generated requests reach; these cases pin the ones it rarely draws (control and bidi characters,
huge sizes, oversized bodies, nesting, the rate limit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis

from tests.support.devstack import DevStack, valet_dev
from tests.support.functions import fresh_app, functions
from valet import openapi
from valet.local.emulator import PROJECT_ROOT, free_port

pytestmark = pytest.mark.azurite

DOCUMENT = PROJECT_ROOT / "valet" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(DOCUMENT)
GOOD = {"filename": "photo.png", "contentType": "image/png", "size": 1234}
BURST = 100
FAILURES = 60


def test_the_document_is_valid_openapi_3_1_with_both_security_schemes() -> None:
    SCHEMA.validate()  # the OpenAPI 3.1 meta-schema
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1.")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyAuth"] == {**schemes["apiKeyAuth"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert doc["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    for path in ("/api/health", "/api/openapi.json"):
        assert doc["paths"][path]["get"]["security"] == [], path  # anonymous


def test_the_document_names_every_http_function_of_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"VALET_STORAGE_ACCOUNT_URL": f"https://127.0.0.1:{free_port()}/devstoreaccount1",
           "VALET_STORAGE_CREDENTIAL": "emulator", "VALET_GRANT_SIGNING_KEYS": "k1:" + "A" * 43}
    with fresh_app(monkeypatch, env) as module:
        routes = set()
        for fn in functions(module).values():
            trigger = fn.get_trigger()
            if trigger.get_binding_name() == "httpTrigger":
                # An optional last segment ("ui/{asset?}") is two paths in OpenAPI, with and without it.
                route = str(trigger.route)
                paths = {route.split("/{")[0], route.replace("?}", "}")} if route.endswith("?}") else {route}
                routes |= {(f"/api/{path}", str(m.value).lower()) for path in paths for m in trigger.methods}
    documented = {(path, method) for path, item in openapi.document()["paths"].items() for method in item}
    assert routes == documented


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # Rate limits on, with a burst that the cases below stay within and the last test spends.
    # The read budget (status, profiles) and the per-address failure budget likewise; the last two tests
    # spend them (every request here comes from 127.0.0.1, one address).
    # Refills of one a minute: the budget tests then spend their bucket whatever the machine's speed (at
    # 120/min a loaded machine refilled the bucket as fast as the test could spend it).
    env = {"VALET_RATE_LIMIT_BURST": str(BURST), "VALET_STATUS_RATE_LIMIT_BURST": str(BURST),
           "VALET_RATE_LIMIT_PER_MINUTE": "1", "VALET_STATUS_RATE_LIMIT_PER_MINUTE": "1",
           "VALET_AUTH_FAILURES_BURST": str(FAILURES)}
    with valet_dev(tmp_path_factory.mktemp("contract"), extra_env=env) as running:
        yield running


def resolve(node: Any) -> Any:
    """Follow local ``$ref``s (``#/components/...``)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = openapi.document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def conforms(method: str, path: str, response: requests.Response) -> requests.Response:
    """The status is documented for the operation, with its required headers; content type and body as
    documented (schemathesis' validation, which checks a documented status's content type and schema)."""
    responses = openapi.document()["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in responses, f"{method} {path}: {response.status_code} is not documented"
    documented = resolve(responses[str(response.status_code)])
    for name, header in documented.get("headers", {}).items():
        if resolve(header).get("required"):
            assert response.headers.get(name), f"{method} {path} {response.status_code}: no {name} header"
    SCHEMA[path][method].validate_response(response)
    return response


def bearer(stack: DevStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token}"}


def grant(stack: DevStack, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None,
          content_type: str = "application/json") -> requests.Response:
    data = raw if raw is not None else json.dumps(body).encode()
    response = requests.post(f"{stack.url}/api/uploads", data=data, timeout=10,
                             headers={"content-type": content_type, **(bearer(stack) if headers is None else headers)})
    return conforms("POST", "/api/uploads", response)


def code(response: requests.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.status_code, response.json()["code"]


def test_the_app_serves_the_document_from_the_repository(stack: DevStack) -> None:
    response = conforms("GET", "/api/openapi.json", requests.get(f"{stack.url}/api/openapi.json", timeout=10))
    assert response.content == Path(DOCUMENT).read_bytes()


def test_health_is_anonymous_and_says_the_configuration_loaded(stack: DevStack) -> None:
    response = conforms("GET", "/api/health", requests.get(f"{stack.url}/api/health", timeout=10))
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["configuration"] == "loaded"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("filename", [
    "\u202egnp.exe",             # right-to-left override
    "a\x00b\x1f\x7f.png",        # control characters
    "../../etc/passwd",
    "CON.png",
    "\U0001f600" * 1024,         # 1,024 astral characters (12 KiB as JSON escapes)
    "\u0301\u0301.png",          # combining marks only
    "\ud800.png",                # a lone surrogate (valid JSON, not valid UTF-8)
])
def test_any_filename_with_a_visible_character_is_kept_sanitized_and_granted(stack: DevStack, filename: str) -> None:
    response = grant(stack, {**GOOD, "filename": filename})
    assert response.status_code == 201, response.text
    assert "etc" not in response.json()["blobUri"] and "exe" not in response.json()["blobUri"]


@pytest.mark.parametrize(("body", "expected"), [
    ({**GOOD, "filename": " \t\u3000"}, (400, "invalid_filename")),
    ({**GOOD, "filename": "a" * 1025}, (400, "invalid_filename")),
    ({**GOOD, "filename": 7}, (400, "invalid_filename")),
    ({**GOOD, "contentType": "image/png\x00"}, (400, "invalid_content_type")),
    ({**GOOD, "contentType": "image/png\r\nX-Injected: 1"}, (400, "invalid_content_type")),
    ({**GOOD, "contentType": "imag\u00e9/png"}, (400, "invalid_content_type")),
    ({**GOOD, "contentType": "image/" + "p" * 300}, (400, "invalid_content_type")),
    ({**GOOD, "contentType": "image/svg+xml"}, (415, "content_type_not_allowed")),
    ({**GOOD, "size": 10**30}, (413, "size_exceeds_profile")),
    ({**GOOD, "size": 2**63}, (413, "size_exceeds_profile")),
    ({**GOOD, "size": -1}, (400, "invalid_size")),
    ({**GOOD, "size": 1.5}, (400, "invalid_size")),
    ({**GOOD, "size": "1234"}, (400, "invalid_size")),
    ({**GOOD, "size": True}, (400, "invalid_size")),
    ({**GOOD, "size": 0}, (400, "empty_not_allowed")),
    ({**GOOD, "sha256": "z" * 64}, (400, "invalid_sha256")),
    ({**GOOD, "profile": "nope"}, (400, "unknown_profile")),
    ({**GOOD, "content_type": "image/png"}, (400, "unknown_field")),
    ([GOOD], (400, "invalid_json")),
])
def test_bad_grant_requests_get_a_documented_4xx_problem(stack: DevStack, body: Any, expected: tuple[int, str]) -> None:
    assert code(grant(stack, body)) == expected


@pytest.mark.parametrize(("raw", "content_type", "expected"), [
    (b"[" * 8000 + b"]" * 8000, "application/json", (400, "invalid_json")),
    (b'{"filename": "a.png", "contentType": "image/png", "size": 1e400}', "application/json", (400, "invalid_size")),
    (b"\xff\xfe\x00", "application/json", (400, "invalid_json")),
    (json.dumps({**GOOD, "filename": "a" * 20_000}).encode(), "application/json", (413, "request_too_large")),
    (json.dumps(GOOD).encode(), "text/plain", (415, "unsupported_request_type")),
])
def test_malformed_bodies_get_a_documented_4xx_problem(stack: DevStack, raw: bytes, content_type: str,
                                                       expected: tuple[int, str]) -> None:
    assert code(grant(stack, None, raw=raw, content_type=content_type)) == expected


def test_a_grant_and_its_status_conform_with_both_credentials(stack: DevStack) -> None:
    response = grant(stack, {**GOOD, "sha256": None, "profile": None})
    assert response.status_code == 201 and response.headers["location"] == response.json()["statusUrl"]
    status = conforms("GET", "/api/uploads/{uploadId}", requests.get(response.json()["statusUrl"], headers=bearer(stack),
                                                                      timeout=10))
    assert status.json()["status"] == "pending"
    other = conforms("GET", "/api/uploads/{uploadId}", requests.get(
        response.json()["statusUrl"], headers={"X-API-Key": stack.api_key}, timeout=10))
    assert code(other) == (404, "upload_not_found")  # another caller
    by_key = grant(stack, GOOD, headers={"X-API-Key": stack.api_key})
    assert by_key.status_code == 201


@pytest.mark.parametrize("upload_id", ["nope", "ea01d3ac-36be-7017-b9d0-65add90aa1dd", "0" * 5000])
def test_malformed_upload_ids_are_400(stack: DevStack, upload_id: str) -> None:
    response = requests.get(f"{stack.url}/api/uploads/{upload_id}", headers=bearer(stack), timeout=10)
    assert code(conforms("GET", "/api/uploads/{uploadId}", response)) == (400, "invalid_upload_id")


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, "missing_credentials"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_request"),
    ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
    ({"X-API-Key": "valet_nope"}, "invalid_api_key"),
])
def test_bad_credentials_are_401_with_a_challenge_on_both_routes(stack: DevStack, headers: dict[str, str],
                                                                 expected: str) -> None:
    refused = grant(stack, GOOD, headers=headers)
    assert code(refused) == (401, expected) and refused.headers["www-authenticate"]
    status = conforms("GET", "/api/uploads/{uploadId}", requests.get(
        f"{stack.url}/api/uploads/01a2038f-b780-7e5c-84dd-1b52881fb558", headers=headers, timeout=10))
    assert code(status) == (401, expected) and status.headers["www-authenticate"]


def test_an_api_key_in_the_query_string_is_refused(stack: DevStack) -> None:
    response = requests.post(f"{stack.url}/api/uploads", params={"apiKey": stack.api_key}, json=GOOD, timeout=10)
    assert code(conforms("POST", "/api/uploads", response)) == (401, "apikey_in_query_not_allowed")


@pytest.mark.parametrize(("method", "path", "template"), [
    ("DELETE", "/api/uploads", "/api/uploads"),
    ("PUT", "/api/uploads/01a2038f-b780-7e5c-84dd-1b52881fb558", "/api/uploads/{uploadId}"),
    ("POST", "/api/health", "/api/health"),
])
def test_other_methods_are_405_with_allow(stack: DevStack, method: str, path: str, template: str) -> None:
    response = requests.request(method, f"{stack.url}{path}", timeout=10)
    assert response.status_code == 405 and response.headers["allow"]
    documented = next(iter(SCHEMA[template].values()))
    documented.validate_response(response)


def test_profiles_lists_what_the_caller_may_use_and_needs_credentials(stack: DevStack) -> None:
    for headers in (bearer(stack), {"X-API-Key": stack.api_key}):
        listed = conforms("GET", "/api/profiles", requests.get(f"{stack.url}/api/profiles", headers=headers, timeout=10))
        assert listed.status_code == 200 and listed.json()["default"] == "images"
        assert [p["name"] for p in listed.json()["profiles"]] == ["images", "documents"]
    refused = conforms("GET", "/api/profiles", requests.get(f"{stack.url}/api/profiles", timeout=10))
    assert code(refused) == (401, "missing_credentials")
    gated = grant(stack, {"filename": "a.zip", "contentType": "application/zip", "size": 10, "profile": "archives"})
    assert code(gated) == (403, "insufficient_scope") and "Uploads.Archives" in gated.headers["www-authenticate"]


def test_a_caller_over_its_status_budget_gets_429_with_retry_after(stack: DevStack) -> None:
    # Spends the API key's read budget (its own bucket, apart from the grant budget the next test spends).
    url = f"{stack.url}/api/uploads/01a2038f-b780-7e5c-84dd-1b52881fb558"
    statuses = []
    for _ in range(BURST + 20):
        response = conforms("GET", "/api/uploads/{uploadId}", requests.get(url, headers={"X-API-Key": stack.api_key},
                                                                          timeout=10))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert code(response) == (429, "rate_limited") and int(response.headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {404}, statuses
    profiles = conforms("GET", "/api/profiles", requests.get(f"{stack.url}/api/profiles",
                                                             headers={"X-API-Key": stack.api_key}, timeout=10))
    assert code(profiles) == (429, "rate_limited")  # the same read budget


def test_a_caller_over_its_rate_limit_gets_429_with_retry_after(stack: DevStack) -> None:
    # Near the end on purpose: it spends the API key's burst. The limit covers grants, not status reads.
    statuses = []
    for _ in range(BURST + 20):
        response = grant(stack, GOOD, headers={"X-API-Key": stack.api_key})
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert code(response) == (429, "rate_limited")
            assert int(response.headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {201}, statuses


def test_an_address_with_too_many_failures_gets_429_on_every_route(stack: DevStack) -> None:
    # Last on purpose: it spends 127.0.0.1's failure budget, so every caller from here waits.
    forged = {"X-API-Key": "valet_" + "A" * 12 + "_" + "B" * 43 + "_" + "C" * 6}
    statuses = []
    for _ in range(FAILURES + 5):
        response = grant(stack, GOOD, headers={"Authorization": "Bearer not.a.jwt"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses
    assert code(response) == (429, "too_many_failures") and int(response.headers["retry-after"]) >= 1
    for method, path, url in (("GET", "/api/uploads/{uploadId}", "/api/uploads/01a2038f-b780-7e5c-84dd-1b52881fb558"),
                              ("GET", "/api/profiles", "/api/profiles")):
        response = conforms(method, path, requests.get(f"{stack.url}{url}", headers=forged, timeout=10))
        assert code(response) == (429, "too_many_failures")
    behind = grant(stack, GOOD)  # a valid caller behind the same address waits too
    assert code(behind) == (429, "too_many_failures")
