"""More app instances for ``valet dev --instances N``: each a separate process, as Functions runs them.

Every extra instance is ``python -m valet.local.instance --fd N``, N a listening socket on its port that
``valet dev`` bound before it started anything, with the environment ``valet dev`` built (the same
storage, issuer, keys and settings): it imports ``function_app`` itself, so it shares nothing with the
others but what an Azure instance would share, and serves the HTTP routes (and the admin endpoint) until
SIGTERM/SIGINT. The blob watcher and the timers run on the first instance only, as a blob trigger or timer
fires on one instance in Azure.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from valet.local.emulator import PROJECT_ROOT, EmulatorError


def start_instances(listeners: Sequence[socket.socket], env: Mapping[str, str],
                    timeout: float = 60.0) -> list[subprocess.Popen[bytes]]:
    """Start one instance per listener (bound and listening on loopback: ``valet dev`` reserves every
    instance's port before it starts anything, so no other process can take one meanwhile), hand each its
    socket, and wait until each answers HTTP; on any failure stop those started. The listeners are closed
    here once their instance serves (the instance holds its own copy)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for listener in listeners:
            fd = listener.fileno()
            procs.append(subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [sys.executable, "-m", "valet.local.instance", "--fd", str(fd)],
                cwd=PROJECT_ROOT, env=dict(env), stdin=subprocess.DEVNULL, pass_fds=(fd,)))
        deadline = time.monotonic() + timeout
        for listener, proc in zip(listeners, procs, strict=True):
            port = int(listener.getsockname()[1])
            while not _answers(port):
                if proc.poll() is not None:
                    raise EmulatorError(f"the app instance on port {port} exited with code {proc.returncode}")
                if time.monotonic() > deadline:
                    raise EmulatorError(f"the app instance on port {port} did not start in time")
                time.sleep(0.1)
    except BaseException:
        stop_instances(procs)
        raise
    finally:
        for listener in listeners:
            listener.close()
    return procs


def _answers(port: int) -> bool:
    """Whether an instance serves HTTP on ``port`` (its socket listens from the start, so a connection
    alone proves nothing: a request waits in the backlog until the instance accepts it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/api/health")
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def stop_instances(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m valet.local.instance",
                                     description="One more app instance for valet dev (HTTP routes only)")
    parser.add_argument("--fd", type=int, required=True, help="a listening loopback socket valet dev passes")
    args = parser.parse_args(argv)
    from valet.local.devhost import FunctionHost

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sys.path.insert(0, str(PROJECT_ROOT))
    function_app = importlib.import_module("function_app")
    host = FunctionHost(function_app.app, listener=socket.socket(fileno=args.fd)).start()
    print(f"valet dev: instance {os.getpid()} on {host.url}/api", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
