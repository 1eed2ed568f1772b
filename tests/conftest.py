"""Shared fixtures: a real storage endpoint for the whole session, and settings that point at it.

The storage endpoint is chosen in this order:

1. ``VALET_TEST_STORAGE_URL`` (with ``VALET_TEST_STORAGE_CA_BUNDLE`` for a self-signed emulator): an
   emulator the developer already runs; a non-loopback URL is used with ``DefaultAzureCredential``.
2. A Docker engine that answers: Azurite in a container (testcontainers), same flags as below.
3. The npm Azurite from ``package.json``, started here as a subprocess (the path CI uses).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from valet.devidp import DevIssuer
from valet.emulator import ACCOUNT, Azurite, make_certificate
from valet.settings import is_loopback_url
from valet.storage import EmulatorCredential

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StorageEndpoint:
    blob_url: str
    ca_bundle: str | None
    how: str
    queue_url: str = ""  # empty: derived from blob_url as the app derives it (VALET_QUEUE_SERVICE_URL)

    @property
    def credential_mode(self) -> str:
        return "emulator" if is_loopback_url(self.blob_url) else "default"


def _docker_answers() -> bool:
    """A Docker engine that answers, and testcontainers installed to drive it."""
    import importlib.util

    if shutil.which("docker") is None or importlib.util.find_spec("testcontainers") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _azurite_in_docker(workdir: Path) -> Iterator[StorageEndpoint]:
    from testcontainers.core.container import DockerContainer  # type: ignore[import-not-found]

    cert, key = make_certificate(workdir / "tls")
    container = (
        DockerContainer("mcr.microsoft.com/azure-storage/azurite:3.37.0")
        .with_volume_mapping(str(cert.parent), "/tls", "ro")
        .with_exposed_ports(10000)
        .with_command(
            "azurite-blob --blobHost 0.0.0.0 --cert /tls/cert.pem --key /tls/key.pem --oauth basic "
            "--skipApiVersionCheck --disableTelemetry --loose"
        )
    )
    with container:
        port = container.get_exposed_port(10000)
        yield StorageEndpoint(f"https://127.0.0.1:{port}/{ACCOUNT}", str(cert), "docker")


@pytest.fixture(scope="session")
def storage_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageEndpoint]:
    given = os.environ.get("VALET_TEST_STORAGE_URL")
    if given:
        yield StorageEndpoint(given.rstrip("/"), os.environ.get("VALET_TEST_STORAGE_CA_BUNDLE"), "environment",
                              os.environ.get("VALET_TEST_QUEUE_URL", ""))
        return
    workdir = tmp_path_factory.mktemp("azurite")
    if _docker_answers():
        yield from _azurite_in_docker(workdir)
        return
    with Azurite(workdir) as azurite:
        yield StorageEndpoint(azurite.blob_url, str(azurite.cert), "npm", azurite.queue_url)


@pytest.fixture(scope="session")
def blob_service(storage_endpoint: StorageEndpoint) -> BlobServiceClient:
    if storage_endpoint.credential_mode == "emulator":
        credential = EmulatorCredential(storage_endpoint.blob_url)
    else:  # pragma: no cover - live Azure only
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return BlobServiceClient(
        storage_endpoint.blob_url, credential=credential, connection_verify=storage_endpoint.ca_bundle or True
    )


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture
def container_client(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    """A fresh, empty container for one test."""
    client = blob_service.create_container(unique_name("t"))
    yield client
    client.delete_container()


@pytest.fixture
def signing_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@pytest.fixture
def valet_env(
    storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient, signing_key: str
) -> Iterator[dict[str, str]]:
    """Settings for a valet pointed at the test storage, with its own fresh containers."""
    names = {role: unique_name(role[:4]) for role in ("uploads", "accepted", "quarantine")}
    for name in names.values():
        blob_service.create_container(name)
    env = {
        "VALET_STORAGE_ACCOUNT_URL": storage_endpoint.blob_url,
        "VALET_STORAGE_CREDENTIAL": storage_endpoint.credential_mode,
        "VALET_UPLOADS_CONTAINER": names["uploads"],
        "VALET_ACCEPTED_CONTAINER": names["accepted"],
        "VALET_QUARANTINE_CONTAINER": names["quarantine"],
        "VALET_GRANT_SIGNING_KEYS": f"k1:{signing_key}",
    }
    if storage_endpoint.queue_url:
        env["VALET_QUEUE_SERVICE_URL"] = storage_endpoint.queue_url
    if storage_endpoint.ca_bundle:
        env["VALET_STORAGE_CA_BUNDLE"] = storage_endpoint.ca_bundle
    yield env
    for name in names.values():
        blob_service.delete_container(name)



@pytest.fixture(scope="session")
def issuer() -> Iterator[DevIssuer]:
    """A development OIDC issuer (discovery + JWKS over real HTTP on loopback) minting real RS256 tokens."""
    with DevIssuer() as idp:
        yield idp
