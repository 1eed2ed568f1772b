"""A development-only OIDC issuer: discovery and JWKS served on loopback, tokens minted locally.

Local runs need bearer tokens that valet validates exactly as it validates Entra ID tokens (discovery,
JWKS, RS256, issuer, audience, roles). This issuer is trusted only when the local tooling puts it in
``VALET_AUTH_ISSUERS``; it binds to 127.0.0.1 only, and its key lives in the project's ignored
``.valet/`` folder (or in memory).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

DEV_AUDIENCE = "api://valet-dev"
DEV_TENANT = "0d0d0d0d-0000-4000-8000-00000000de71"


class DevIssuer:
    def __init__(self, *, port: int = 0, key_file: Path | None = None) -> None:
        self._key = _load_or_create_key(key_file)
        self.kid = "dev-" + uuid.uuid5(uuid.NAMESPACE_OID, self._public_pem()).hex[:12]
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"DevIssuer(issuer={self.issuer!r})"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/dev"

    def settings_value(self, audience: str = DEV_AUDIENCE) -> str:
        """The ``VALET_AUTH_ISSUERS`` entry that trusts this issuer."""
        return json.dumps([{"issuer": self.issuer, "audiences": [audience]}])

    def mint(
        self,
        subject: str = "dev-user",
        *,
        roles: Iterable[str] = ("Uploads.Write",),
        audience: str = DEV_AUDIENCE,
        lifetime_seconds: int = 3600,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.issuer}#{subject}")),
            "tid": DEV_TENANT,
            "roles": list(roles),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            **extra,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def start(self) -> DevIssuer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="valet-dev-idp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> DevIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _public_pem(self) -> str:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/dev/.well-known/openid-configuration":
                    body = {"issuer": issuer.issuer, "jwks_uri": f"{issuer.issuer}/keys",
                            "id_token_signing_alg_values_supported": ["RS256"]}
                elif self.path == "/dev/keys":
                    jwk = json.loads(RSAAlgorithm.to_jwk(issuer._key.public_key()))
                    body = {"keys": [{**jwk, "kid": issuer.kid, "use": "sig", "alg": "RS256"}]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _load_or_create_key(path: Path | None) -> rsa.RSAPrivateKey:
    if path is not None and path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
        )
        path.chmod(0o600)
    return key
