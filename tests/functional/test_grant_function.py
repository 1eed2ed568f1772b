"""The decorated function and its handler, called with real ``func.HttpRequest`` objects.

Storage here is a closed loopback port: every case below must be answered before any storage request.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from types import ModuleType

import azure.functions as func
import pytest

from tests.support.fakes import FixedCaller
from tests.support.functions import fresh_app, functions, user_function
from valet import api
from valet.local.emulator import free_port
from valet.runtime import Runtime
from valet.settings import Settings

KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
ENV = {
    "VALET_STORAGE_ACCOUNT_URL": f"https://127.0.0.1:{free_port()}/devstoreaccount1",
    "VALET_STORAGE_CREDENTIAL": "emulator",
    "VALET_GRANT_SIGNING_KEYS": f"k1:{KEY}",
    "VALET_STORAGE_TIMEOUT_SECONDS": "1",
}


@pytest.fixture
def runtime() -> Runtime:
    return Runtime.from_settings(Settings.from_env(ENV), authenticator=FixedCaller())


@pytest.fixture
def function_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    with fresh_app(monkeypatch, ENV) as module:
        yield module


def request(body: bytes | str, content_type: str | None = "application/json") -> func.HttpRequest:
    headers = {"content-type": content_type} if content_type else {}
    raw = body.encode() if isinstance(body, str) else body
    return func.HttpRequest(method="POST", url="https://valet.example/api/uploads", headers=headers, body=raw)


def problem(response: func.HttpResponse) -> dict[str, object]:
    assert response.mimetype == "application/problem+json"
    doc = json.loads(response.get_body())
    assert doc["status"] == response.status_code
    return doc  # type: ignore[no-any-return]


def test_the_app_registers_the_grant_route(function_app: ModuleType) -> None:
    grant = functions(function_app)["create_upload"]
    trigger = grant.get_trigger()
    assert trigger.route == "uploads"
    assert list(trigger.methods) == [func.HttpMethod.POST, func.HttpMethod.OPTIONS]  # OPTIONS: CORS preflights
    assert trigger.auth_level == func.AuthLevel.ANONYMOUS  # valet authenticates callers itself


def test_a_request_without_credentials_is_refused_with_401(function_app: ModuleType) -> None:
    response = user_function(function_app, "create_upload")(request(json.dumps({"filename": "a.png", "contentType": "image/png", "size": 1})))
    assert response.status_code == 401
    assert problem(response)["code"] == "missing_credentials"


def test_misconfiguration_is_reported_without_details(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VALET_GRANT_SIGNING_KEYS", raising=False)
    with fresh_app(monkeypatch, {"VALET_STORAGE_ACCOUNT_URL": ENV["VALET_STORAGE_ACCOUNT_URL"]}) as module:
        response = user_function(module, "create_upload")(request("{}"))
    assert response.status_code == 500
    doc = problem(response)
    assert doc["code"] == "configuration_error"
    assert "VALET_" not in json.dumps(doc)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("not json", "application/json", 400, "invalid_json"),
        ('{"filename": "a.png", "contentType": "image/png"}', "application/json", 400, "invalid_size"),
        ('{"filename": "a.png", "contentType": "image/png", "size": 1}', "text/plain", 415, "unsupported_request_type"),
        ('{"filename": "a.html", "contentType": "text/html", "size": 1}', "application/json", 415, "content_type_not_allowed"),
        ('{"filename": "a.png", "contentType": "image/png", "size": 999999999999}', "application/json", 413,
         "size_exceeds_profile"),
        ('{"filename": "a.png", "contentType": "image/png", "size": 1, "profile": "nope"}', "application/json", 400,
         "unknown_profile"),
        ('{"filename": "a.png", "contentType": "image/png", "size": 0}', "application/json", 400, "empty_not_allowed"),
        ("x" * 20000, "application/json", 413, "request_too_large"),
    ],
)
def test_bad_requests_are_refused_before_any_storage_request(
    runtime: Runtime, body: str, content_type: str, status: int, code: str
) -> None:
    response = api.create_upload(lambda: runtime, request(body, content_type))
    assert response.status_code == status
    assert problem(response)["code"] == code
    assert runtime.storage_requests.count == 0


def test_storage_down_with_no_cached_key_is_a_503_with_retry_after(runtime: Runtime) -> None:
    response = api.create_upload(
        lambda: runtime, request('{"filename": "a.png", "contentType": "image/png", "size": 1}')
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    doc = problem(response)
    assert doc["code"] == "storage_unavailable"
    assert "Traceback" not in json.dumps(doc)


def test_unexpected_errors_are_an_opaque_500(runtime: Runtime) -> None:
    class Exploding:
        def authenticate(self, request: object) -> object:
            raise RuntimeError("secret detail sig=abc")

    runtime.authenticator = Exploding()  # type: ignore[assignment]
    response = api.create_upload(lambda: runtime, request("{}"))
    assert response.status_code == 500
    body = response.get_body().decode()
    assert "secret" not in body and "RuntimeError" not in body
    assert problem(response)["code"] == "internal_error"


@pytest.mark.parametrize(("body", "missing", "code"), [
    ({}, ["filename", "contentType", "size"], "invalid_filename"),
    ({"filename": "a.png"}, ["contentType", "size"], "invalid_content_type"),
    ({"contentType": "image/png", "filename": None}, ["filename", "size"], "invalid_filename"),
    ({"filename": "a.png", "contentType": "image/png"}, ["size"], "invalid_size"),
])
def test_every_missing_field_of_a_grant_request_is_named(runtime: Runtime, body: dict[str, object],
                                                        missing: list[str], code: str) -> None:
    """Issue 24 item 9: the problem named only the first missing field; now each one, in ``detail`` and
    in ``missing``, and the code stays the first one's (what clients already key on)."""
    doc = problem(api.create_upload(lambda: runtime, request(json.dumps(body))))
    assert (doc["status"], doc["code"], doc["missing"]) == (400, code, missing)
    assert all(f"'{name}'" in str(doc["detail"]) for name in missing)
