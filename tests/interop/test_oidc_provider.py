"""Tokens from an identity provider nobody here wrote: panva's certified ``oidc-provider`` (npm), run in
Node on loopback, issuing RFC 9068 client-credentials access tokens for audience ``valet`` with the
standard ``scope`` claim, signed with RS256 and ES256 keys from its JWKS. valet finds the keys by OIDC
discovery, honours ``scope``, survives a key rotation without a final 401, and ``valet dev`` trusts the
provider next to its own dev issuer."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.devstack import valet_dev
from tests.support.functions import fresh_app
from valet.local.devhost import FunctionHost
from valet.local.emulator import PROJECT_ROOT, free_port

pytestmark = pytest.mark.azurite

NODE = shutil.which("node")
IDP_SCRIPT = Path(__file__).parent / "js" / "idp.mjs"
CLIENT = {"client_id": "valet-interop", "client_secret": "interop-secret-not-a-real-one"}
MIN_REFETCH = 8  # seconds between two JWKS fetches in these tests (the default is 30)
GRANT = {"filename": "cat.png", "contentType": "image/png", "size": 68}


def rsa_jwk(kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                              as_dict=True)
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def ec_jwk(kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


class Provider:
    """oidc-provider in a Node subprocess; :meth:`restart` brings it back on the same port (same issuer)
    with another key set, as a provider rotating its signing key does."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None

    def start(self, keys: list[dict[str, Any]]) -> Provider:
        keyfile = self.workdir / "keys.json"
        keyfile.write_text(json.dumps({"keys": keys}))
        keyfile.chmod(0o600)
        self.proc = subprocess.Popen([str(NODE), str(IDP_SCRIPT), str(self.port), str(keyfile)], cwd=PROJECT_ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        for line in self.proc.stdout:  # the provider prints "ready <issuer>" once it listens
            if line.startswith("ready "):
                return self
            if time.monotonic() > deadline:
                break
        self.stop()
        raise AssertionError("oidc-provider did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self, keys: list[dict[str, Any]]) -> None:
        self.stop()
        self.start(keys)

    def token(self, resource: str = "urn:valet:rs256", scope: str | None = "Uploads.Write") -> str:
        form = {"grant_type": "client_credentials", "resource": resource, **CLIENT}
        if scope is not None:
            form["scope"] = scope
        response = requests.post(f"{self.issuer}/token", data=form, timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def trusted(self) -> str:
        return json.dumps([{"issuer": self.issuer, "audiences": ["valet"], "algorithms": ["RS256", "ES256"]}])


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    if NODE is None or not (PROJECT_ROOT / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("node or oidc-provider is not installed (bash scripts/setup.sh installs both)")
    idp = Provider(tmp_path).start([rsa_jwk("rsa-1"), ec_jwk("ec-1")])
    yield idp
    idp.stop()


@pytest.fixture
def app_host(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], provider: Provider
             ) -> Iterator[FunctionHost]:
    env = {**valet_env, "VALET_AUTH_ISSUERS": provider.trusted(),
           "VALET_AUTH_JWKS_MIN_REFETCH_SECONDS": str(MIN_REFETCH), "VALET_AUTH_TOKEN_CACHE_SECONDS": "0"}
    with fresh_app(monkeypatch, env) as module, FunctionHost(module.app, port=0) as host:
        yield host


def grant(host_url: str, token: str) -> requests.Response:
    return requests.post(f"{host_url}/api/uploads", json=GRANT, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("resource", ["urn:valet:rs256", "urn:valet:es256"])
def test_client_credentials_tokens_with_the_scope_claim_get_grants(app_host: FunctionHost, provider: Provider,
                                                                    resource: str) -> None:
    token = provider.token(resource)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == resource.rsplit(":", 1)[1].upper()
    response = grant(app_host.url, token)
    assert response.status_code == 201, response.text
    status = requests.get(response.json()["statusUrl"], headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "pending"


def test_a_token_without_the_scope_is_403_insufficient_scope(app_host: FunctionHost, provider: Provider) -> None:
    response = grant(app_host.url, provider.token(scope=None))
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"


def test_a_rotated_signing_key_gets_401_until_the_next_refetch_never_a_5xx(
    app_host: FunctionHost, provider: Provider
) -> None:
    assert grant(app_host.url, provider.token()).status_code == 201  # valet fetched the key set: rsa-1, ec-1
    provider.restart([rsa_jwk("rsa-2"), ec_jwk("ec-1")])  # the provider rotates; tokens now carry rsa-2
    rotated = provider.token()
    first = grant(app_host.url, rotated)
    assert first.status_code in (201, 401), first.text  # 201 if a refetch was allowed already
    if first.status_code == 401:  # the issuer is up: an unknown kid is a 401 (issue 24), at most one interval
        assert first.json()["code"] == "invalid_token" and "error_description" in first.headers["WWW-Authenticate"]
        time.sleep(MIN_REFETCH)
        assert grant(app_host.url, rotated).status_code == 201
    forged = rotated[: rotated.rindex(".") + 1] + "A" * 43  # the new kid with a bad signature: refused
    assert grant(app_host.url, forged).status_code == 401


def test_valet_dev_trusts_a_configured_provider_next_to_its_dev_issuer(provider: Provider, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with valet_dev(root, {"VALET_AUTH_ISSUERS": provider.trusted()}) as stack:
        assert grant(stack.url, stack.token).status_code == 201  # the dev issuer's token
        assert grant(stack.url, provider.token("urn:valet:es256")).status_code == 201  # and the real provider's
