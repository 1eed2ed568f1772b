"""The storage clients read proxies and the CA bundle from the environment once, by requests' rules, and
then send with a session that does not scan the environment again on every request."""

from __future__ import annotations

import pytest
from azure.identity import DefaultAzureCredential

from valet.settings import StorageSettings
from valet.storage import _client_options, environment_http, make_blob_service

ACCOUNT = "https://valetuploads.blob.core.windows.net"


def test_nothing_set_means_no_proxy_and_the_default_trust_store() -> None:
    assert environment_http(ACCOUNT, {"PATH": "/bin", "HOME": "/root"}) == ({}, None)


def test_proxies_in_either_case_lower_case_winning() -> None:
    env = {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128", "HTTP_PROXY": "http://p:80"}
    assert environment_http(ACCOUNT, env) == ({"https": "http://lower:3128", "http": "http://p:80"}, None)
    assert environment_http(ACCOUNT, {"ALL_PROXY": "socks5://s:1080"}) == ({"all": "socks5://s:1080"}, None)


@pytest.mark.parametrize("no_proxy", [".core.windows.net", "valetuploads.blob.core.windows.net", "*",
                                      "example.org, .windows.net"])
def test_no_proxy_naming_the_account_bypasses_the_proxy(no_proxy: str) -> None:
    assert environment_http(ACCOUNT, {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": no_proxy}) == ({}, None)


def test_no_proxy_for_other_hosts_keeps_the_proxy() -> None:
    env = {"https_proxy": "http://p:3128", "no_proxy": "localhost,127.0.0.1,.example.org"}
    assert environment_http(ACCOUNT, env) == ({"https": "http://p:3128"}, None)


def test_the_ca_bundle_requests_would_use() -> None:
    assert environment_http(ACCOUNT, {"REQUESTS_CA_BUNDLE": "/etc/a.pem", "CURL_CA_BUNDLE": "/etc/b.pem"})[1] == \
        "/etc/a.pem"
    assert environment_http(ACCOUNT, {"CURL_CA_BUNDLE": "/etc/b.pem"})[1] == "/etc/b.pem"


def test_the_clients_do_not_trust_the_environment_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    storage = StorageSettings(account_url=ACCOUNT, credential="default", client_id=None, ca_bundle=None,
                              timeout_seconds=5, uploads_container="uploads", accepted_container="accepted",
                              quarantine_container="quarantine")
    credential = DefaultAzureCredential()  # never asked for a token here: nothing is sent
    options = _client_options(storage, credential, None, ACCOUNT)
    assert options["use_env_settings"] is False
    assert options["proxies"] == {"https": "http://proxy.invalid:3128"}
    client = make_blob_service(storage, credential)
    transport = client._pipeline._transport  # what the SDK built from those options
    transport.open()
    assert transport.session.trust_env is False
    client.close()
