"""Shared helpers for the auth tests: a real local IdP over HTTP, keys, tokens, requests."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import azure.functions as func
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER_TENANT = "99999999-8888-7777-6666-555555555555"
AUDIENCE = "api://valet"


@dataclass
class FakeIdP:
    """A JWKS + discovery server on 127.0.0.1 with failure switches and request counters."""

    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    mode: str = "ok"  # ok | fail | slow
    slow_seconds: float = 5.0
    hits: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base}/{TENANT}/v2.0"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                idp.hits[self.path] += 1
                if idp.mode == "slow":
                    idp._stop.wait(idp.slow_seconds)
                if idp.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                if self.path.endswith("/.well-known/openid-configuration"):
                    issuer = self.path[: -len("/.well-known/openid-configuration")]
                    body: Any = {"issuer": idp.base + issuer, "jwks_uri": idp.base + "/jwks"}
                    if "organizations" in issuer:
                        body["issuer"] = idp.base + "/{tenantid}/v2.0"
                elif self.path == "/jwks":
                    body = idp.jwks
                else:
                    body = {"hit": self.path}
                data = json.dumps(body).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        return Handler


def serve(idp: FakeIdP) -> Iterator[FakeIdP]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), idp.handler())
    server.daemon_threads = True
    idp.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        idp._stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Any
    alg: str

    def jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.RSAAlgorithm if self.alg.startswith(("RS", "PS")) else jwt.algorithms.ECAlgorithm
        data: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig", alg=self.alg)
        return data


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")


def claims(issuer: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "subject-1",
        "oid": str(uuid.UUID(int=7)),
        "tid": TENANT,
        "azp": "client-app",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 600,
        "roles": ["Uploads.Write"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(key: SigningKey, payload: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
    hdr: dict[str, Any] = {"kid": key.kid}
    hdr.update(headers or {})
    return jwt.encode(dict(payload), key.private, algorithm=key.alg, headers=hdr)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Mapping[str, Any], payload: Mapping[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def request(
    headers: Mapping[str, str] | None = None,
    url: str = "https://valet.example/api/uploads",
    params: Mapping[str, str] | None = None,
) -> func.HttpRequest:
    return func.HttpRequest(
        method="POST", url=url, headers=dict(headers or {}), params=dict(params or {}), body=b""
    )


def bearer(tok: str) -> func.HttpRequest:
    return request({"Authorization": f"Bearer {tok}"})
