"""Fixtures for the fault tests: a fault proxy in front of the session's storage, and app settings that
send every storage request of the app through it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import azure.functions as func
import pytest

from tests.conftest import StorageEndpoint
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.functions import user_function
from valet.local.devidp import DevIssuer
from valet.settings import is_loopback_url


@pytest.fixture
def storage_proxy(storage_endpoint: StorageEndpoint, tmp_path: Path) -> Iterator[FaultProxy]:
    if not is_loopback_url(storage_endpoint.blob_url):
        pytest.skip("the fault proxy only fronts a loopback storage endpoint")
    with FaultProxy(storage_endpoint.blob_url, workdir=tmp_path, upstream_ca=storage_endpoint.ca_bundle) as proxy:
        yield proxy


@pytest.fixture
def proxied_env(valet_env: dict[str, str], storage_proxy: FaultProxy, issuer: DevIssuer) -> dict[str, str]:
    """``valet_env`` with the storage account URL (and CA) of the proxy, and the session issuer trusted.
    The proxy fronts the blob service only, so decision events are off here (sending them while the queue
    fails is tested in tests/integration/test_decision_events.py)."""
    assert storage_proxy.ca_bundle is not None
    return {**valet_env, "VALET_STORAGE_ACCOUNT_URL": storage_proxy.url,
            "VALET_STORAGE_CA_BUNDLE": storage_proxy.ca_bundle, "VALET_AUTH_ISSUERS": issuer.settings_value(),
            "VALET_DECISION_QUEUE": "none"}


BODY = {"filename": "photo.png", "contentType": "image/png", "size": 8}


def call_grant(app: ModuleType, token: str, body: dict[str, object] | None = None) -> func.HttpResponse:
    req = func.HttpRequest(method="POST", url="https://valet.example/api/uploads",
                           headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
                           body=json.dumps(body or BODY).encode())
    return user_function(app, "create_upload")(req)  # type: ignore[no-any-return]


def apply(proxy: FaultProxy, mode: str) -> None:
    """Put the proxy in one of the named storage/IdP failure modes (all requests, until healed)."""
    faults: dict[str, Callable[[], None]] = {
        "down": proxy.down,
        "reset": lambda: proxy.inject(Fault.reset()),
        "503": lambda: proxy.inject(Fault.unavailable(retry_after=30)),
        "500": lambda: proxy.inject(Fault.internal_error()),
        "delay": lambda: proxy.inject(Fault.delay(30)),
    }
    faults[mode]()


MODES = ("down", "reset", "503", "500", "delay")
