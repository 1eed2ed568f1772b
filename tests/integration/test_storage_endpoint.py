"""The session's storage endpoint is the Azurite its header announces: in a container when the container
path was chosen, the npm subprocess otherwise."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import PLAN, StorageEndpoint
from tests.support.azurite import LABEL
from valet.local.emulator import PROJECT_ROOT

pytestmark = pytest.mark.azurite


def test_the_endpoint_is_the_one_the_header_names(storage_endpoint: StorageEndpoint,
                                                   request: pytest.FixtureRequest) -> None:
    plan = request.config.stash[PLAN]
    assert storage_endpoint.how == plan.header()
    forced = os.environ.get("VALET_TEST_AZURITE", "auto")
    if forced in ("container", "process") and not os.environ.get("VALET_TEST_STORAGE_URL"):
        assert plan.kind == forced


def test_a_container_endpoint_is_served_from_the_container(storage_endpoint: StorageEndpoint,
                                                           request: pytest.FixtureRequest) -> None:
    plan = request.config.stash[PLAN]
    if plan.kind != "container":
        pytest.skip(f"this session uses {plan.header()}")
    import docker

    port = urlsplit(storage_endpoint.blob_url).port
    client = docker.from_env()
    try:
        running = client.containers.list(filters={"label": [f"{k}={v}" for k, v in LABEL.items()]})
        ours = [c for c in running if plan.image in c.image.tags
                and f"successfully listening at https://127.0.0.1:{port}" in c.logs().decode()]
        assert len(ours) == 1, [c.short_id for c in running]
        assert ours[0].attrs["HostConfig"]["NetworkMode"] == "host"
    finally:
        client.close()


def test_a_subprocess_endpoint_is_served_by_the_npm_azurite(storage_endpoint: StorageEndpoint,
                                                            request: pytest.FixtureRequest) -> None:
    plan = request.config.stash[PLAN]
    if plan.kind != "process":
        pytest.skip(f"this session uses {plan.header()}")
    port = urlsplit(storage_endpoint.blob_url).port
    listeners = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, timeout=10)
    if listeners.returncode != 0:
        pytest.skip("ss is not available to see who listens")
    pids = re.findall(r"pid=(\d+)", listeners.stdout)
    assert pids, listeners.stdout
    command = Path(f"/proc/{pids[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert str(PROJECT_ROOT / "node_modules" / "azurite") in command
