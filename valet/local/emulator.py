"""Azurite, the storage emulator, as the tests and the local runner start it.

HTTPS with a self-signed certificate made here (``--oauth basic`` needs HTTPS), OAuth on, API version
check skipped (the SDK speaks a newer version than Azurite 3.37 knows), telemetry off, loopback only.
Azurite comes from the project's ``package.json`` (``npm ci``), so its version is pinned, and ``npm ci``
applies ``patches/azurite+<version>.patch`` (patch-package, failing on a version mismatch): Azurite then
authorizes Put Block and Put Block List with a create-only SAS as Azure does since service version
2026-04-06 (docs/local-development.md). An Azurite without the patch is refused here, by name.

Ports: given ports are used as they are (``valet dev``); a port left at 0 is bound by Azurite itself (the
kernel picks a free one) and read back from what Azurite prints, so no other process can take it between
a choice and the bind. The test session's container path reads the same lines from the container's log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # valet/local/emulator.py -> the checkout
ACCOUNT = "devstoreaccount1"
# Flags both the subprocess and the container start Azurite with (see the module docstring).
AZURITE_FLAGS = ("--oauth", "basic", "--skipApiVersionCheck", "--disableTelemetry", "--loose")
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at \w+://[^\s/]+:(\d+)")


class EmulatorError(RuntimeError):
    """Azurite could not be started; the message says why and what to do."""


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
            return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "valet local Azurite")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def listening_ports(output: str) -> dict[str, int]:
    """The ports Azurite says it listens on, by service ("blob", "queue", "table"), from its output."""
    return {match.group(1).lower(): int(match.group(2)) for match in _LISTENING.finditer(output)}


def pinned_version(root: Path = PROJECT_ROOT) -> str:
    """The Azurite version ``package.json`` pins."""
    return str(json.loads((root / "package.json").read_text())["dependencies"]["azurite"])


def patch_file(root: Path = PROJECT_ROOT) -> Path:
    """valet's patch of the pinned Azurite (applied by ``npm ci``'s postinstall, patch-package)."""
    return root / "patches" / f"azurite+{pinned_version(root)}.patch"


def patched_version(root: Path = PROJECT_ROOT) -> str:
    """The pinned version and the patch it carries, e.g. ``3.37.0-valet.1a2b3c4d5e``: the local image's tag
    (``scripts/azurite-image.sh`` computes the same), so an image built before a patch change is not reused."""
    digest = hashlib.sha256(patch_file(root).read_bytes()).hexdigest()[:10]
    return f"{pinned_version(root)}-valet.{digest}"


PATCH_MARK = "createAuthorizesBlocks"  # a name the patch adds; its file below
_PATCHED_FILE = ("dist", "src", "blob", "authentication", "OperationBlobSASPermission.js")


def check_patched(root: Path = PROJECT_ROOT) -> None:
    """Refuse an Azurite that ``npm ci`` did not patch (a copy installed by hand, a symlinked tree)."""
    installed = root.joinpath("node_modules", "azurite", *_PATCHED_FILE)
    if installed.exists() and PATCH_MARK not in installed.read_text(encoding="utf-8"):
        raise EmulatorError(f"node_modules/azurite lacks valet's patch ({patch_file(root).relative_to(root)}): "
                            f"run `npm ci` in {root}.")


def azurite_arguments(*, host: str, blob_port: int, queue_port: int, table_port: int, location: str,
                      cert: str, key: str) -> list[str]:
    """Azurite's command-line arguments after the program, the same for the subprocess and the container."""
    return [
        "--blobHost", host, "--blobPort", str(blob_port),
        "--queueHost", host, "--queuePort", str(queue_port),
        "--tableHost", host, "--tablePort", str(table_port),
        "--location", location, "--cert", cert, "--key", key,
        *AZURITE_FLAGS,
    ]


def azurite_command(root: Path = PROJECT_ROOT) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise EmulatorError("Node.js is not installed (need `node` on PATH, version 20 or later).")
    script = root / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
    if not script.exists():
        raise EmulatorError(f"Azurite is not installed: run `npm ci` in {root}.")
    check_patched(root)
    return [node, str(script)]


@dataclass
class Azurite:
    """A running Azurite (blob, queue and table services)."""

    workdir: Path
    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    root: Path = PROJECT_ROOT
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    cert: Path | None = None
    log_path: Path | None = None
    _log_start: int = field(default=0, repr=False)

    @property
    def blob_url(self) -> str:
        return f"https://127.0.0.1:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_url(self) -> str:
        return f"https://127.0.0.1:{self.queue_port}/{ACCOUNT}"

    @property
    def table_url(self) -> str:
        return f"https://127.0.0.1:{self.table_port}/{ACCOUNT}"

    def start(self, timeout: float = 60.0) -> Azurite:
        command = azurite_command(self.root)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert, key = make_certificate(self.workdir / "tls")
        for port in (self.blob_port, self.queue_port, self.table_port):
            if port and port_in_use(port):
                raise EmulatorError(f"Port {port} is already in use; stop what holds it or pick another.")
        self.log_path = self.workdir / "azurite.log"
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0  # earlier runs' lines
        args = [*command, *azurite_arguments(
            host="127.0.0.1", blob_port=self.blob_port, queue_port=self.queue_port, table_port=self.table_port,
            location=str(self.workdir / "data"), cert=str(self.cert), key=str(key))]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            self._wait_listening(deadline)
            self._wait_handshake(deadline)
        except EmulatorError:
            self.stop()
            raise

    def _wait_listening(self, deadline: float) -> None:
        """Wait until Azurite says where blob, queue and table listen; take the ports it bound."""
        assert self.log_path is not None and self.process is not None
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                output = log.read().decode(errors="replace")
            ports = listening_ports(output)
            if "blob" in ports and "queue" in ports and "table" in ports:
                self.blob_port, self.queue_port, self.table_port = ports["blob"], ports["queue"], ports["table"]
                return
            if self.process.poll() is not None:
                hint = " (a port is already in use)" if "EADDRINUSE" in output else ""
                raise EmulatorError(
                    f"Azurite exited with code {self.process.returncode}{hint}; see {self.log_path}")
            time.sleep(0.1)
        raise EmulatorError(f"Azurite did not start in time; see {self.log_path}")

    def _wait_handshake(self, deadline: float) -> None:
        context = ssl.create_default_context(cafile=str(self.cert))
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmulatorError(f"Azurite exited with code {self.process.returncode}; see {self.log_path}")
            try:
                for port in (self.blob_port, self.queue_port, self.table_port):
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                        with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                            pass
                return
            except OSError:
                time.sleep(0.2)
        raise EmulatorError(f"Azurite did not answer over TLS in time; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
