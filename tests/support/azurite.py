"""Which storage endpoint the test session uses, and starting Azurite in a container.

Order: ``VALET_TEST_STORAGE_URL`` (an endpoint someone already runs); Azurite in a container through
testcontainers when a Docker engine answers; the npm Azurite as a subprocess otherwise.
``VALET_TEST_AZURITE=container|process|auto`` (default ``auto``) forces a path; ``container`` makes the
session fail, with the reason, when the container path cannot be used.

The image is ``VALET_TEST_AZURITE_IMAGE`` when set; otherwise the one ``scripts/azurite-image.sh`` builds
from the pinned and patched npm package (tagged with the patch's digest, see
:func:`valet.local.emulator.patched_version`). Microsoft's image is not used by default: it lacks valet's
patch (create-only block uploads), so the tests of that rule would fail on it. Either image is started the same way: the
``azurite`` command, the host network, loopback only, and every port 0, so Azurite binds free ports itself
and the session reads them from the container's log (a port another process holds cannot be chosen).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valet.local.emulator import ACCOUNT, azurite_arguments, listening_ports, make_certificate, patched_version

MODES = ("auto", "container", "process")
MICROSOFT_IMAGE = "mcr.microsoft.com/azure-storage/azurite"
LOCAL_IMAGE = "valet-local/azurite"  # scripts/azurite-image.sh
LABEL = {"valet.tests": "azurite"}  # scripts/container-engine.sh stop removes leftovers by this label
SESSION_PID_LABEL = "valet.tests.pid"  # the pytest process: its container is a leftover once it is gone
LOCAL_BUILD_MARK = "valet: built locally"  # the import message scripts/azurite-image.sh sets


class AzuriteUnavailable(RuntimeError):
    """The path that was asked for cannot be used; the message says why."""


@dataclass(frozen=True)
class Engine:
    """What the Docker engine offers: whether it answers (and why not), and which images it has."""

    answers: bool
    reason: str = ""
    images: Mapping[str, str] | None = None  # tag -> where it came from


@dataclass(frozen=True)
class Plan:
    kind: str  # "environment" | "container" | "process"
    image: str = ""
    origin: str = ""
    note: str = ""

    def header(self) -> str:
        if self.kind == "environment":
            return f"azurite: endpoint from VALET_TEST_STORAGE_URL ({self.origin})"
        if self.kind == "container":
            return f"azurite: testcontainers {self.image} ({self.origin}; host network)"
        return f"azurite: npm subprocess {self.image} (node_modules/azurite{'; ' + self.note if self.note else ''})"


def choose(environ: Mapping[str, str], engine: Engine | None, version: str) -> Plan:
    """Pure: the plan for these settings and this engine (``None``: not probed, not needed)."""
    mode = environ.get("VALET_TEST_AZURITE", "auto") or "auto"
    if mode not in MODES:
        raise AzuriteUnavailable(f"VALET_TEST_AZURITE={mode!r}: use one of {', '.join(MODES)}")
    given = environ.get("VALET_TEST_STORAGE_URL", "")
    if given:
        return Plan("environment", origin=re.sub(r"^(\w+://[^/?#]*).*$", r"\1", given))
    if mode == "process":
        return Plan("process", version, note="VALET_TEST_AZURITE=process")
    if engine is None or not engine.answers:
        reason = engine.reason if engine is not None else "not probed"
        if mode == "container":
            raise AzuriteUnavailable(f"VALET_TEST_AZURITE=container, but {reason}")
        return Plan("process", version, note=f"auto: {reason}")
    images = dict(engine.images or {})
    wanted = environ.get("VALET_TEST_AZURITE_IMAGE", "")
    if wanted:
        return Plan("container", wanted, images.get(wanted, "not on this engine yet: testcontainers pulls it"))
    image = f"{LOCAL_IMAGE}:{version}"
    if image in images:
        return Plan("container", image, images[image])
    missing = f"the patched image {image} is not built (bash scripts/azurite-image.sh)"
    if mode == "container":
        raise AzuriteUnavailable(f"VALET_TEST_AZURITE=container, but {missing}")
    return Plan("process", version, note=f"auto: {missing}")


def probe_engine(candidates: list[str]) -> Engine:
    """Ask the Docker engine (through the Docker SDK testcontainers uses) whether it answers, and which
    of ``candidates`` it has and where each came from."""
    if importlib.util.find_spec("testcontainers") is None:
        return Engine(False, "testcontainers is not installed (pip install -e '.[test]')")
    import docker  # testcontainers depends on it
    from docker.errors import DockerException, ImageNotFound

    client, failure = None, ""
    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except DockerException as exc:
        failure = f"no Docker engine answers ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
    if failure:
        if client is not None:
            client.close()
        with warnings.catch_warnings():  # docker-py leaves the socket of a failed version check unclosed:
            warnings.simplefilter("ignore", ResourceWarning)  # collect it here, not during the first test
            gc.collect()
        return Engine(False, failure)
    images: dict[str, str] = {}
    try:
        for tag in candidates:
            try:
                attrs = client.images.get(tag).attrs
            except ImageNotFound:
                continue
            comment = str(attrs.get("Comment") or "")
            if comment.startswith(LOCAL_BUILD_MARK):
                images[tag] = comment.removeprefix("valet: ")
            elif attrs.get("RepoDigests"):
                images[tag] = f"pulled, {attrs['RepoDigests'][0].rsplit('@', 1)[-1][:19]}"
            else:
                images[tag] = "present on the engine"
    finally:
        client.close()
    return Engine(True, images=images)


def plan_from(environ: Mapping[str, str], root: Path) -> Plan:
    version = patched_version(root)
    mode = environ.get("VALET_TEST_AZURITE", "auto")
    engine = None
    if not environ.get("VALET_TEST_STORAGE_URL") and mode != "process":
        wanted = environ.get("VALET_TEST_AZURITE_IMAGE", "")
        engine = probe_engine([wanted] if wanted else [f"{LOCAL_IMAGE}:{version}"])
    return choose(environ, engine, version)


def run_in_container(image: str, workdir: Path, timeout: int = 90) -> Iterator[tuple[str, Path, str, str]]:
    """Azurite from ``image`` on the host network; yields (blob URL, CA certificate, queue URL, table URL) and
    removes the container afterwards."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk's image may not be pullable
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    cert, _ = make_certificate(workdir / "tls")
    command = ["azurite", *azurite_arguments(
        host="127.0.0.1", blob_port=0, queue_port=0, table_port=0, location="/tmp/azurite",
        cert="/tls/cert.pem", key="/tls/key.pem")]
    kwargs: dict[str, Any] = {"network_mode": "host", "labels": {**LABEL, SESSION_PID_LABEL: str(os.getpid())}}
    container = (
        DockerContainer(image, **kwargs)
        .with_volume_mapping(str(cert.parent), "/tls", "ro")
        .with_command(command)
        .waiting_for(LogMessageWaitStrategy("Table service is successfully listening").with_startup_timeout(timeout))
    )
    with container:
        out, err = container.get_logs()
        ports = listening_ports((out + err).decode(errors="replace"))
        if "blob" not in ports:
            raise AzuriteUnavailable(f"Azurite in {image} did not say where it listens: {out[-500:]!r}")
        queue = f"https://127.0.0.1:{ports['queue']}/{ACCOUNT}" if "queue" in ports else ""
        table = f"https://127.0.0.1:{ports['table']}/{ACCOUNT}" if "table" in ports else ""
        yield f"https://127.0.0.1:{ports['blob']}/{ACCOUNT}", cert, queue, table
