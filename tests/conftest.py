"""Shared fixtures: a real storage endpoint for the whole session, and settings that point at it.

The storage endpoint is chosen in this order (details in ``tests/support/azurite.py``):

1. ``VALET_TEST_STORAGE_URL`` (with ``VALET_TEST_STORAGE_CA_BUNDLE`` for a self-signed emulator): an
   emulator the developer already runs; a non-loopback URL is used with ``DefaultAzureCredential``.
2. A Docker engine that answers: Azurite in a container (testcontainers), same flags as below.
3. The npm Azurite from ``package.json``, started here as a subprocess.

``VALET_TEST_AZURITE=container|process|auto`` forces a path; the session header says which one runs.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from tests.support.azurite import AzuriteUnavailable, Plan, plan_from, run_in_container
from valet.audit.flusher import close_all as close_audit_flushers
from valet.local.devidp import DevIssuer
from valet.local.emulator import Azurite
from valet.settings import is_loopback_url
from valet.storage import EmulatorCredential

ROOT = Path(__file__).resolve().parent.parent
PLAN = pytest.StashKey[Plan]()


@dataclass(frozen=True)
class StorageEndpoint:
    blob_url: str
    ca_bundle: str | None
    how: str  # the session header's line: which Azurite, and where it came from
    queue_url: str = ""  # empty: derived from blob_url as the app derives it (VALET_QUEUE_SERVICE_URL)
    table_url: str = ""  # empty: derived from blob_url as the app derives it (VALET_TABLE_SERVICE_URL)

    @property
    def credential_mode(self) -> str:
        return "emulator" if is_loopback_url(self.blob_url) else "default"


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[PLAN] = plan_from(os.environ, ROOT)
    except AzuriteUnavailable as exc:
        raise pytest.UsageError(f"azurite: {exc}") from None


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[PLAN].header()


@pytest.fixture(scope="session")
def storage_endpoint(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageEndpoint]:
    plan = request.config.stash[PLAN]
    if plan.kind == "environment":
        yield StorageEndpoint(os.environ["VALET_TEST_STORAGE_URL"].rstrip("/"),
                              os.environ.get("VALET_TEST_STORAGE_CA_BUNDLE"), plan.header(),
                              os.environ.get("VALET_TEST_QUEUE_URL", ""), os.environ.get("VALET_TEST_TABLE_URL", ""))
        return
    workdir = tmp_path_factory.mktemp("azurite")
    if plan.kind == "container":
        for blob_url, cert, queue_url, table_url in run_in_container(plan.image, workdir):
            yield StorageEndpoint(blob_url, str(cert), plan.header(), queue_url, table_url)
            close_audit_flushers()  # the runtimes' buffered audit records, while the emulator still answers
        return
    with Azurite(workdir) as azurite:
        yield StorageEndpoint(azurite.blob_url, str(azurite.cert), plan.header(), azurite.queue_url,
                              azurite.table_url)
        close_audit_flushers()


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
    names = {role: unique_name(role[:4]) for role in ("uploads", "accepted", "quarantine", "audit")}
    for name in names.values():
        blob_service.create_container(name)
    env = {
        "VALET_STORAGE_ACCOUNT_URL": storage_endpoint.blob_url,
        "VALET_STORAGE_CREDENTIAL": storage_endpoint.credential_mode,
        "VALET_UPLOADS_CONTAINER": names["uploads"],
        "VALET_ACCEPTED_CONTAINER": names["accepted"],
        "VALET_QUARANTINE_CONTAINER": names["quarantine"],
        "VALET_AUDIT_CONTAINER": names["audit"],  # the audit trail of every runtime these settings make
        "VALET_GRANT_SIGNING_KEYS": f"k1:{signing_key}",
    }
    if storage_endpoint.queue_url:
        env["VALET_QUEUE_SERVICE_URL"] = storage_endpoint.queue_url
    if storage_endpoint.ca_bundle:
        env["VALET_STORAGE_CA_BUNDLE"] = storage_endpoint.ca_bundle
    queue = _decision_queue(env)  # every decision made with these settings is announced on it
    env["VALET_DECISION_QUEUE"] = queue.queue_name
    yield env
    for name in names.values():
        blob_service.delete_container(name)
    queue.delete_queue()
    queue.close()


def _decision_queue(env: dict[str, str]) -> QueueClient:
    """A fresh decision-event queue for one test's settings, made with the app's own client factory."""
    from valet.settings import Settings
    from valet.storage import make_decision_queue

    storage = Settings.from_env({**env, "VALET_DECISION_QUEUE": unique_name("events")}).storage
    credential = EmulatorCredential(storage.account_url) if storage.credential == "emulator" else None
    if credential is None:  # pragma: no cover - live Azure only
        from azure.identity import DefaultAzureCredential

        queue = make_decision_queue(storage, DefaultAzureCredential())
    else:
        queue = make_decision_queue(storage, credential)
    queue.create_queue()
    return queue


@pytest.fixture(scope="session")
def issuer() -> Iterator[DevIssuer]:
    """A development OIDC issuer (discovery + JWKS over real HTTP on loopback) minting real RS256 tokens."""
    with DevIssuer() as idp:
        yield idp
