"""AuthSettings.from_env and the rate limiter."""

from __future__ import annotations

import json
import threading

import pytest

from valet.auth import AuthSettings, RateLimiter
from valet.errors import ConfigurationError, TooManyRequests

TID = "11111111-2222-3333-4444-555555555555"


def issuers(*entries: dict[str, object]) -> dict[str, str]:
    return {"VALET_AUTH_ISSUERS": json.dumps(list(entries))}


def test_defaults() -> None:
    s = AuthSettings.from_env({})
    assert s.issuers == () and not s.apikeys_enabled
    assert s.required_roles == frozenset({"Uploads.Write"})
    assert (s.leeway_seconds, s.http_timeout_seconds, s.jwks_min_refetch_seconds) == (60, 3.0, 30.0)
    assert (s.apikey_allow_query, s.allow_insecure_http, s.apikey_cache_seconds) == (False, False, 60.0)
    assert (s.rate_limit_per_minute, s.apikey_container) == (120, "valet-apikeys")


def test_issuer_defaults_and_discovery() -> None:
    s = AuthSettings.from_env(issuers(
        {"issuer": f"https://login.microsoftonline.com/{TID}/v2.0", "audiences": ["api://valet"]},
        {"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0", "audiences": ["api://valet"],
         "tenants": [TID.upper()]},
    ))
    single, multi = s.issuers
    assert single.algorithms == ("RS256",)
    assert single.discovery_url == f"https://login.microsoftonline.com/{TID}/v2.0/.well-known/openid-configuration"
    assert multi.discovery_url == (
        "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration"
    )
    assert multi.tenants == frozenset({TID})


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"VALET_AUTH_ISSUERS": "{not json"}, "VALET_AUTH_ISSUERS"),
        (issuers({"issuer": "https://idp.example", "audiences": ["a"], "algorithms": ["HS256"]}),
         "VALET_AUTH_ISSUERS"),
        (issuers({"issuer": "https://idp.example", "audiences": ["a"], "algorithms": ["none"]}),
         "VALET_AUTH_ISSUERS"),
        (issuers({"issuer": "https://idp.example", "audiences": []}), "VALET_AUTH_ISSUERS"),
        (issuers({"issuer": "http://idp.example", "audiences": ["a"]}), "VALET_AUTH_ISSUERS"),
        (issuers({"issuer": "https://idp.example/{tenantid}", "audiences": ["a"]}), "VALET_AUTH_ISSUERS"),
        (issuers({"issuer": "https://idp.example", "audiences": ["a"], "discovery": False}),
         "VALET_AUTH_ISSUERS"),
        (issuers({"issuer": "https://idp.example", "audiences": ["a"], "tenants": ["x"]}),
         "VALET_AUTH_ISSUERS"),
        ({"VALET_AUTH_LEEWAY_SECONDS": "301"}, "VALET_AUTH_LEEWAY_SECONDS"),
        ({"VALET_AUTH_LEEWAY_SECONDS": "abc"}, "VALET_AUTH_LEEWAY_SECONDS"),
        ({"VALET_AUTH_HTTP_TIMEOUT_SECONDS": "0"}, "VALET_AUTH_HTTP_TIMEOUT_SECONDS"),
        ({"VALET_APIKEY_PEPPER": "c2hvcnQ="}, "VALET_APIKEY_PEPPER"),
        ({"VALET_APIKEY_PEPPER": "not base64 !!!"}, "VALET_APIKEY_PEPPER"),
        ({"VALET_APIKEY_ALLOW_QUERY": "maybe"}, "VALET_APIKEY_ALLOW_QUERY"),
        ({"VALET_TRUSTED_PROXIES": "10.0.0.0/33"}, "VALET_TRUSTED_PROXIES"),
        ({"VALET_AUTH_REQUIRED_ROLES": " , "}, "VALET_AUTH_REQUIRED_ROLES"),
        ({"VALET_RATE_LIMIT_PER_MINUTE": "-1"}, "VALET_RATE_LIMIT_PER_MINUTE"),
    ],
)
def test_invalid_settings_name_the_setting_not_the_value(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        AuthSettings.from_env(env)
    assert setting in info.value.detail
    for value in env.values():
        if len(value) > 6:
            assert value not in info.value.detail


def test_pepper_is_decoded_and_not_in_repr() -> None:
    pepper = "A" * 42 + "_-"  # base64url
    s = AuthSettings.from_env({"VALET_APIKEY_PEPPER": pepper})
    assert s.apikeys_enabled and s.apikey_pepper is not None and len(s.apikey_pepper) >= 32
    assert pepper not in repr(s) and "apikey_pepper" not in repr(s)


def test_rate_limiter_refills_and_evicts_idle_buckets() -> None:
    now = [0.0]
    limiter = RateLimiter(60, 2, max_callers=3, monotonic=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(TooManyRequests) as info:
        limiter.check("a")
    assert info.value.headers["Retry-After"] == "1"
    for caller in "bcdef":
        limiter.check(caller)
    assert len(limiter) <= 3
    now[0] += 10
    limiter.check("z")
    assert len(limiter) == 1


def test_rate_limiter_is_thread_safe() -> None:
    limiter = RateLimiter(60, 100, monotonic=lambda: 0.0)
    allowed = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            try:
                limiter.check("same")
            except TooManyRequests:
                continue
            with lock:
                allowed.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 100


def test_every_auth_setting_is_documented_in_its_module_and_the_configuration_table() -> None:
    from valet.auth import settings as module
    from valet.local.emulator import PROJECT_ROOT

    page = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    table = page[page.index("## App settings"):page.index("## Profiles")]
    names = {v for v in vars(module).values() if isinstance(v, str) and v.startswith("VALET_")}
    assert {"VALET_AUTH_FAILURES_PER_MINUTE", "VALET_STATUS_RATE_LIMIT_BURST"} <= names
    assert not {n for n in names if n not in (module.__doc__ or "")}
    assert not {n for n in names if f"`{n}`" not in table and n not in table}
