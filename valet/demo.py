"""``python -m valet demo``: the whole flow on this machine, then everything stops.

Starts Azurite (HTTPS, OAuth, pinned in package.json) and a development OIDC issuer, loads the app's own
registered functions from ``function_app.py`` with settings pointing at them, and then, as a client
would: gets a grant with a bearer token, uploads a real PNG with only the grant's ``uploadUrl`` and
``headers``, shows that storage refuses the misuse a leaked URL invites, runs the blob-triggered
validator on the uploads (as the Functions host would on a new blob) and reads the outcome from the
status endpoint: the PNG accepted, an HTML page disguised as a PNG quarantined. Exit code 0 only when
every step behaved as it should.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import secrets
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import requests

from valet.devidp import DevIssuer
from valet.emulator import Azurite
from valet.storage import EmulatorCredential


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


class Demo:
    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.failures = 0

    def check(self, ok: bool, what: str) -> None:
        self.out(f"  {'ok  ' if ok else 'FAIL'} {what}")
        self.failures += 0 if ok else 1

    def run(self, workdir: Path) -> int:
        with Azurite(workdir / "azurite") as azurite, DevIssuer() as issuer:
            self.out(f"Azurite at {azurite.blob_url} (HTTPS, OAuth); dev issuer at {issuer.issuer}")
            env = {
                "VALET_STORAGE_ACCOUNT_URL": azurite.blob_url,
                "VALET_STORAGE_CREDENTIAL": "emulator",
                "VALET_STORAGE_CA_BUNDLE": str(azurite.cert),
                "VALET_GRANT_SIGNING_KEYS": "demo:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                "VALET_AUTH_ISSUERS": issuer.settings_value(),
            }
            provision(azurite, env)
            os.environ.update(env)
            sys.modules.pop("function_app", None)
            app = importlib.import_module("function_app")
            functions = {f.get_function_name(): f.get_user_function() for f in app.app.get_functions()}
            grant_fn, status_fn, validate_fn = (
                functions["create_upload"], functions["upload_status"], functions["validate_upload"]
            )
            verify = str(azurite.cert)
            token = issuer.mint("demo-user")

            self.out("\n1. Grant: POST /api/uploads with a bearer token")
            png = tiny_png()
            grant = self.grant(grant_fn, token, {"filename": "hello.png", "contentType": "image/png", "size": len(png)})
            if grant is None:
                return 1
            self.out(f"  uploadId {grant['uploadId']}, expires {grant['expiresOn']}, blob {grant['blobUri']}")

            self.out("\n2. Upload: PUT straight to storage with uploadUrl + headers")
            r = requests.put(grant["uploadUrl"], data=png, headers=grant["headers"], verify=verify, timeout=30)
            self.check(r.status_code == 201, f"upload accepted by storage ({r.status_code})")

            self.out("\n3. Misuse of the same URL is refused by storage itself")
            again = requests.put(grant["uploadUrl"], data=b"evil", headers=grant["headers"], verify=verify, timeout=30)
            self.check(again.status_code == 403, f"overwrite refused ({again.status_code})")
            read = requests.get(grant["uploadUrl"], verify=verify, timeout=30)
            self.check(read.status_code == 403, f"read refused ({read.status_code})")
            other = grant["blobUri"].rsplit("/", 1)[0] + "/other.png?" + grant["signature"]
            elsewhere = requests.put(other, data=png, headers=grant["headers"], verify=verify, timeout=30)
            self.check(elsewhere.status_code == 403, f"another blob name refused ({elsewhere.status_code})")

            self.out("\n4. Validation: the blob trigger decides, the status endpoint tells the client")
            disguised = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
            fake = self.grant(grant_fn, token, {"filename": "cute-cat.png", "contentType": "image/png",
                                                "size": len(disguised)})
            if fake is None:
                return 1
            r = requests.put(fake["uploadUrl"], data=disguised, headers=fake["headers"], verify=verify, timeout=30)
            self.check(r.status_code == 201, f"disguised HTML uploaded as image/png ({r.status_code})")
            for g, expected in ((grant, "accepted"), (fake, "quarantined")):
                container, name = blob_location(g["blobUri"], azurite.blob_url)
                validate_fn(BlobRef(container, name))
                status = status_fn(func.HttpRequest(
                    method="GET", url=g["statusUrl"], headers={"authorization": f"Bearer {token}"},
                    route_params={"uploadId": g["uploadId"]}, body=b""))
                doc = json.loads(status.get_body())
                reason = f", reason {doc['reason']}" if doc.get("reason") else ""
                self.check(doc.get("status") == expected, f"{name.rsplit('/', 1)[-1]}: {doc.get('status')}{reason}")

            self.out("\n5. The grant API refuses what the profile does not allow, before any SAS exists")
            bad = grant_fn(self.request(token, {"filename": "x.html", "contentType": "text/html", "size": 10}))
            self.check(bad.status_code == 415, f"text/html refused ({bad.status_code})")
            anon = grant_fn(self.request(None, {"filename": "a.png", "contentType": "image/png", "size": 1}))
            self.check(anon.status_code == 401, f"no credentials refused ({anon.status_code})")

        self.out(f"\n{'Demo passed' if not self.failures else f'Demo FAILED ({self.failures} checks)'}; "
                 "everything it started has stopped.")
        return 0 if not self.failures else 1

    def request(self, token: str | None, body: dict[str, Any]) -> func.HttpRequest:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        return func.HttpRequest(method="POST", url="http://127.0.0.1:7071/api/uploads", headers=headers,
                                body=json.dumps(body).encode())

    def grant(self, fn: Callable[[func.HttpRequest], func.HttpResponse], token: str,
              body: dict[str, Any]) -> dict[str, Any] | None:
        response = fn(self.request(token, body))
        self.check(response.status_code == 201, f"grant issued ({response.status_code})")
        if response.status_code != 201:
            self.out(response.get_body().decode())
            return None
        return json.loads(response.get_body())  # type: ignore[no-any-return]


class BlobRef:
    """What the blob trigger hands the function: the blob's container and name."""

    def __init__(self, container_name: str, blob_name: str) -> None:
        self.container_name, self.blob_name = container_name, blob_name


def blob_location(blob_uri: str, account_url: str) -> tuple[str, str]:
    from urllib.parse import unquote

    container, _, name = blob_uri[len(account_url) + 1:].partition("/")
    return container, unquote(name)


def provision(azurite: Azurite, env: dict[str, str]) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(azurite.blob_url, credential=EmulatorCredential(azurite.blob_url),
                                connection_verify=str(azurite.cert))
    for name in ("uploads", "accepted", "quarantine", "valet-apikeys"):
        try:
            service.create_container(env.get(f"VALET_{name.upper()}_CONTAINER", name))
        except ResourceExistsError:
            pass


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="valet-demo-") as tmp:
        return Demo().run(Path(tmp))
