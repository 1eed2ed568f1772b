"""``valet keys`` against Azurite: create prints the key once, the key then authenticates a grant over
HTTPS, list never shows it, revoke takes effect (cache TTL 0 here), rotate overlaps."""

from __future__ import annotations

import json
import re

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

from valet import api
from valet.local import keys
from valet.runtime import Runtime
from valet.settings import Settings

pytestmark = pytest.mark.azurite

BODY = json.dumps({"filename": "a.png", "contentType": "image/png", "size": 10}).encode()


@pytest.fixture
def env(valet_env: dict[str, str], blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch,
        signing_key: str) -> dict[str, str]:
    container = blob_service.create_container(f"keys-{signing_key[:8].lower().replace('_', 'a').replace('-', 'b')}")
    full = {**valet_env, "VALET_APIKEY_PEPPER": signing_key, "VALET_APIKEY_CACHE_SECONDS": "0",
            "VALET_APIKEY_CONTAINER": container.container_name}
    for name, value in full.items():
        monkeypatch.setenv(name, value)
    return full


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = keys.main(list(argv))
    return code, capsys.readouterr().out


def grant_status(runtime: Runtime, key: str, url: str = "https://valet.example/api/uploads") -> int:
    req = func.HttpRequest(method="POST", url=url, headers={"content-type": "application/json", "x-api-key": key},
                           body=BODY)
    return api.create_upload(lambda: runtime, req).status_code


def test_key_lifecycle(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "create", "--owner", "billing-svc", "--name", "nightly", "--tenant", "contoso")
    assert code == 0
    key = re.search(r"api key \(shown once, store it now\): (\S+)", out).group(1)  # type: ignore[union-attr]
    kid = re.search(r"key id: (\S+)", out).group(1)  # type: ignore[union-attr]

    runtime = Runtime.from_settings(Settings.from_env(env))
    assert grant_status(runtime, key) == 201
    assert grant_status(runtime, key, url="http://valet.example/api/uploads") == 401  # plain HTTP refused

    code, listing = run(capsys, "list")
    secret = key[len(f"valet_{kid}_"):key.rindex("_")]  # the secret itself may contain "_"
    assert secret and code == 0 and kid in listing and key not in listing and secret not in listing

    code, out = run(capsys, "rotate", kid, "--overlap-hours", "1")
    assert code == 0
    new_key = re.search(r"api key \(shown once, store it now\): (\S+)", out).group(1)  # type: ignore[union-attr]
    assert grant_status(runtime, key) == 201 and grant_status(runtime, new_key) == 201  # overlap

    assert run(capsys, "revoke", kid)[0] == 0
    assert grant_status(runtime, key) == 401
    assert grant_status(runtime, new_key) == 201
