"""The app's own CORS (preflights and response headers for allowed origins only) and the upload page's
routes, called with real ``func.HttpRequest`` objects. Storage is a closed loopback port: nothing here may
need it (the grant succeeds only once the delegation key is cached, which these cases never reach)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable

import azure.functions as func
import pytest

from tests.support.fakes import FixedCaller
from tests.support.functions import fresh_app, functions, user_function
from valet import api
from valet.errors import ConfigurationError
from valet.local.devhost import _route_pattern
from valet.local.emulator import free_port
from valet.runtime import Runtime
from valet.settings import Settings

KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
PAGE = "https://app.example.com"
STORAGE = f"https://127.0.0.1:{free_port()}/devstoreaccount1"
ENV = {
    "VALET_STORAGE_ACCOUNT_URL": STORAGE,
    "VALET_STORAGE_CREDENTIAL": "emulator",
    "VALET_GRANT_SIGNING_KEYS": f"k1:{KEY}",
    "VALET_STORAGE_TIMEOUT_SECONDS": "1",
    "VALET_CORS_ORIGINS": f"{PAGE}, http://localhost:5173",
}


def runtime_with(**extra: str) -> Callable[[], Runtime]:
    runtime = Runtime.from_settings(Settings.from_env({**ENV, **extra}), authenticator=FixedCaller())
    return lambda: runtime


def req(method: str, url: str = "https://valet.example/api/uploads", headers: dict[str, str] | None = None,
        body: bytes = b"", route_params: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(method=method, url=url, headers=headers or {}, body=body, route_params=route_params or {})


def preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": method,
            "access-control-request-headers": "authorization,content-type"}


def test_preflight_from_an_allowed_origin_is_answered_204_with_the_route_methods() -> None:
    response = api.create_upload(runtime_with(), req("OPTIONS", headers=preflight_headers(PAGE)))
    assert response.status_code == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == PAGE
    assert headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"
    assert set(headers["Access-Control-Allow-Headers"].split(", ")) == {"authorization", "content-type", "x-api-key", "idempotency-key"}
    assert headers["Access-Control-Max-Age"] == "600"
    assert headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in headers  # header credentials only, never cookies

    status = api.upload_status(runtime_with(), req("OPTIONS", headers=preflight_headers(PAGE, "GET"),
                                                   route_params={"uploadId": "x"}))
    assert status.status_code == 204 and status.headers["Access-Control-Allow-Methods"] == "DELETE, GET, OPTIONS"


@pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.com.evil.example",
                                    "http://app.example.com", "null", ""])
def test_preflight_from_any_other_origin_is_refused_403(origin: str) -> None:
    response = api.create_upload(runtime_with(), req("OPTIONS", headers=preflight_headers(origin)))
    assert response.status_code == 403
    assert json.loads(response.get_body())["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_origin_is_trusted_when_none_is_configured() -> None:
    response = api.create_upload(runtime_with(VALET_CORS_ORIGINS=""), req("OPTIONS", headers=preflight_headers(PAGE)))
    assert response.status_code == 403


def test_plain_options_lists_the_methods() -> None:
    response = api.create_upload(runtime_with(), req("OPTIONS"))
    assert response.status_code == 204 and response.headers["Allow"] == "POST, OPTIONS"


def test_responses_errors_included_are_readable_by_allowed_origins_only() -> None:
    bad = b'{"filename": "a.png", "contentType": "image/png", "size": -1}'
    allowed = api.create_upload(runtime_with(), req("POST", headers={"origin": PAGE, "content-type": "application/json"},
                                                    body=bad))
    assert allowed.status_code == 400  # the page can read why: the problem detail is exposed to it
    assert allowed.headers["Access-Control-Allow-Origin"] == PAGE
    assert allowed.headers["Vary"] == "Origin"
    assert "retry-after" in allowed.headers["Access-Control-Expose-Headers"]

    foreign = api.create_upload(runtime_with(), req("POST", headers={"origin": "https://evil.example",
                                                                     "content-type": "application/json"}, body=bad))
    assert foreign.status_code == 400
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert foreign.headers["Vary"] == "Origin"


def test_a_misconfigured_app_trusts_no_origin() -> None:
    def broken() -> Runtime:
        raise ConfigurationError("The service is misconfigured; see the application log.")

    preflight = api.create_upload(broken, req("OPTIONS", headers=preflight_headers(PAGE)))
    assert preflight.status_code == 403
    actual = api.create_upload(broken, req("POST", headers={"origin": PAGE}))
    assert actual.status_code == 500 and "Access-Control-Allow-Origin" not in actual.headers


def test_upload_page_is_off_unless_enabled() -> None:
    response = api.upload_page(runtime_with(), req("GET", "https://valet.example/api/ui"))
    assert response.status_code == 404


@pytest.mark.parametrize(("asset", "media_type", "marker"), [
    ("", "text/html", b'<form id="valet-upload"'),
    ("valet-upload.js", "text/javascript", b"export async function requestGrant"),
    ("valet-upload.css", "text/css", b"progress"),
])
def test_upload_page_serves_its_files_under_a_strict_policy(asset: str, media_type: str, marker: bytes) -> None:
    response = api.upload_page(runtime_with(VALET_UI_ENABLED="true", VALET_PUBLIC_BASE_URL="http://127.0.0.1:7071"),
                               req("GET", f"https://valet.example/api/ui/{asset}", route_params={"asset": asset}))
    assert response.status_code == 200
    assert response.mimetype == media_type
    assert marker in response.get_body()
    policy = dict(part.split(" ", 1) for part in response.headers["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"].split() == ["'self'", STORAGE.rsplit("/", 1)[0], "http://127.0.0.1:7071"]
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("asset", ["index.html", "../settings.py", "valet-upload.js.map", "%2e%2e"])
def test_upload_page_serves_nothing_else(asset: str) -> None:
    response = api.upload_page(runtime_with(VALET_UI_ENABLED="true"),
                               req("GET", f"https://valet.example/api/ui/{asset}", route_params={"asset": asset}))
    assert response.status_code == 404


def test_ui_setting_must_be_a_boolean() -> None:
    with pytest.raises(ConfigurationError, match="VALET_UI_ENABLED must be true or false"):
        Settings.from_env({**ENV, "VALET_UI_ENABLED": "maybe"})


def test_function_app_registers_options_and_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_app(monkeypatch, {**ENV, "VALET_UI_ENABLED": "true"}) as module:
        index = functions(module)
        assert {"create_upload", "upload_status", "upload_page"} <= set(index)
        page = user_function(module, "upload_page")(req("GET", "https://valet.example/api/ui"))
        assert page.status_code == 200 and page.mimetype == "text/html"
        preflight = user_function(module, "create_upload")(req("OPTIONS", headers=preflight_headers(PAGE)))
        assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == PAGE


def test_dev_host_route_with_an_optional_last_segment() -> None:
    pattern = _route_pattern("api", "ui/{asset?}")
    assert pattern.match("/api/ui") and pattern.match("/api/ui/")
    match = pattern.match("/api/ui/valet-upload.js")
    assert match is not None and match.group("asset") == "valet-upload.js"
    assert pattern.match("/api/ui/a/b") is None and pattern.match("/api/uix") is None


