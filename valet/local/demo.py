"""``python -m valet demo``: the whole flow on this machine with the reference client, then everything stops.

Runs ``valet dev`` (Azurite with HTTPS and OAuth, the development issuer and API key, the app's own
registered functions on a real HTTP port, the watched blob trigger) in a temporary folder on free ports,
then acts as a client would with the reference client (:mod:`valet_client`): uploads a real PNG and an
HTML page disguised as a PNG and waits for the validator's verdicts, shows that storage refuses the
misuse a leaked upload URL invites, and that the API refuses a disallowed type and a caller without
credentials. Exit code 0 only when every step behaved as it should.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import requests

from valet.local import dev
from valet.local.emulator import PROJECT_ROOT, free_port
from valet_client import UploadError, ValetClient

DISGUISED_HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def tiny_png() -> bytes:
    """A real 4x4 PNG (the validator parses images: a bare signature is quarantined)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 128, 0)).save(out, "PNG")
    return out.getvalue()


class Demo:
    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.failures = 0

    def check(self, ok: bool, what: str) -> None:
        self.out(f"  {'ok  ' if ok else 'FAIL'} {what}")
        self.failures += 0 if ok else 1

    def run(self, workdir: Path) -> int:
        shutil.copy(PROJECT_ROOT / "local.settings.sample.json", workdir / "local.settings.sample.json")
        os.environ["VALET_STORAGE_ACCOUNT_URL"] = "https://127.0.0.1:0/devstoreaccount1"  # Azurite binds
        ready, stop, codes = threading.Event(), threading.Event(), []
        stack = threading.Thread(
            target=lambda: codes.append(dev.run(free_port(), root=workdir, ready=ready, stop=stop)),
            name="valet-demo-stack",
        )
        self.out("Starting the local stack (valet dev) ...")
        stack.start()
        while not ready.wait(0.2):
            if not stack.is_alive():
                self.out("the local stack did not start")
                return 1
        try:
            self.walk_through(workdir)
        finally:
            stop.set()
            stack.join(timeout=60)
        self.out(f"\n{'Demo passed' if not self.failures else f'Demo FAILED ({self.failures} checks)'}; "
                 "everything it started has stopped.")
        return 0 if not self.failures and codes == [0] else 1

    def walk_through(self, workdir: Path) -> None:
        env = dict(line.split("=", 1) for line in (workdir / ".valet" / "dev.env").read_text().splitlines())
        ca = str(workdir / ".valet" / "azurite" / "tls" / "cert.pem")
        client = ValetClient(env["VALET_URL"], token=env["VALET_DEV_TOKEN"], storage_verify=ca)
        files = workdir / "files"
        files.mkdir()
        (files / "hello.png").write_bytes(tiny_png())
        (files / "cute-cat.png").write_bytes(DISGUISED_HTML)

        self.out("\n1. Upload with the reference client: grant, PUT straight to storage, wait for the verdict")
        for name, expected in (("hello.png", "accepted"), ("cute-cat.png", "quarantined")):
            try:
                result = client.upload(files / name, wait_timeout=60)
            except UploadError as exc:
                self.check(False, f"{name}: {exc}")
                continue
            reason = f", reason {result.reason}" if result.reason else ""
            self.check(result.status == expected, f"{name}: {result.status}{reason}")

        self.out("\n2. Misuse of an upload URL is refused by storage itself")
        data = tiny_png()
        grant = client.grant(filename="again.png", content_type="image/png", size=len(data))
        first = requests.put(grant["uploadUrl"], data=data, headers=grant["headers"], verify=ca, timeout=30)
        self.check(first.status_code == 201, f"upload accepted by storage ({first.status_code})")
        again = requests.put(grant["uploadUrl"], data=b"evil", headers=grant["headers"], verify=ca, timeout=30)
        self.check(again.status_code == 403, f"overwrite refused ({again.status_code})")
        read = requests.get(grant["uploadUrl"], verify=ca, timeout=30)
        self.check(read.status_code == 403, f"read refused ({read.status_code})")
        other = grant["blobUri"].rsplit("/", 1)[0] + "/other.png?" + grant["signature"]
        elsewhere = requests.put(other, data=data, headers=grant["headers"], verify=ca, timeout=30)
        self.check(elsewhere.status_code == 403, f"another blob name refused ({elsewhere.status_code})")

        self.out("\n3. The grant API refuses what the profile does not allow, before any SAS exists")
        try:
            client.grant(filename="x.html", content_type="text/html", size=10)
            self.check(False, "text/html was granted")
        except UploadError as exc:
            self.check(exc.code == "content_type_not_allowed", f"text/html refused ({exc.code})")
        anonymous = requests.post(f"{env['VALET_URL']}/api/uploads", timeout=30,
                                  json={"filename": "a.png", "contentType": "image/png", "size": 1})
        self.check(anonymous.status_code == 401, f"no credentials refused ({anonymous.status_code})")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="valet-demo-") as tmp:
        return Demo().run(Path(tmp))
