"""``valet dev`` as a subprocess on free ports, for tests that drive the whole local stack over real HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from valet.local.emulator import PROJECT_ROOT, free_port


def read_env(path: Path) -> dict[str, str]:
    """``.valet/dev.env`` as a shell reads it (values quoted when they hold spaces)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value.strip('"') for name, value in pairs}


@dataclass
class DevStack:
    """A running ``valet dev``: the process, what it wrote to ``.valet/dev.env``, and its root folder."""

    proc: subprocess.Popen[str]
    env: dict[str, str]
    root: Path

    @property
    def url(self) -> str:
        return self.env["VALET_URL"]

    @property
    def token(self) -> str:
        return self.env["VALET_DEV_TOKEN"]

    @property
    def api_key(self) -> str:
        return self.env["VALET_DEV_API_KEY"]

    @property
    def ca(self) -> str:
        """The emulator's self-signed certificate, for HTTPS calls to storage."""
        return str(self.root / ".valet" / "azurite" / "tls" / "cert.pem")


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that were all free just now (``valet dev
    --instances`` serves on a port and the ones after it, and binds them all at once as it starts)."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports found")


@contextmanager
def valet_dev(root: Path, extra_env: dict[str, str] | None = None, startup_timeout: float = 90,
              output: IO[str] | None = None, args: Sequence[str] = ()) -> Iterator[DevStack]:
    """Start ``valet dev --root root`` on free ports and wait until it has written its ``dev.env``.

    Its output goes to a pipe (read it after stopping the process), or to ``output`` (a file) when the
    run is long or busy enough to fill a pipe nobody reads."""
    shutil.copy(PROJECT_ROOT / "local.settings.sample.json", root / "local.settings.sample.json")
    app_port = free_ports(int(args[args.index("--instances") + 1]) if "--instances" in args else 1)
    env = {**os.environ, "VALET_STORAGE_ACCOUNT_URL": "https://127.0.0.1:0/devstoreaccount1",  # Azurite binds
           **(extra_env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "valet", "dev", "--port", str(app_port), "--root", str(root), *args],
        cwd=PROJECT_ROOT, env=env, stdout=output or subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    dev_env = root / ".valet" / "dev.env"
    deadline = time.monotonic() + startup_timeout
    while not dev_env.exists() or "VALET_URL" not in dev_env.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            said = proc.stdout.read() if proc.stdout else Path(output.name).read_text()[-3000:] if output else ""
            if proc.stdout is not None:
                proc.stdout.close()  # not left for the collector: its warning would fail whichever test runs then
            proc.wait(timeout=10)
            raise AssertionError(f"valet dev did not start: {said}")
        time.sleep(0.2)
    try:
        yield DevStack(proc, read_env(dev_env), root)
    finally:
        if proc.poll() is None:  # SIGINT first: valet dev then stops Azurite, which SIGKILL would orphan
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
