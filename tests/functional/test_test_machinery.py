"""The machinery that gives the tests their Azurite: the engine and image scripts refuse clearly what they
cannot do, and the emulator harness refuses a taken port instead of racing for it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from valet.local.emulator import PROJECT_ROOT, Azurite, EmulatorError

SCRIPTS = PROJECT_ROOT / "scripts"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser")
def test_the_engine_script_says_why_it_cannot_start_an_engine_without_root() -> None:
    result = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(SCRIPTS / "container-engine.sh"), "start"],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ["PATH"], "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 3, result
    assert result.stdout == ""  # no state folder: nothing was started
    assert "needs root" in result.stderr


def test_the_engine_script_stop_without_a_state_is_a_no_op() -> None:
    result = subprocess.run(["bash", str(SCRIPTS / "container-engine.sh"), "stop"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 0, result


def test_the_image_script_refuses_a_busybox_that_is_not_static(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(SCRIPTS / "azurite-image.sh")], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock",
                                 "VALET_TEST_AZURITE_IMAGE": "valet-test/never-built:0", "VALET_BUSYBOX": "/bin/ls"})
    assert result.returncode == 1, result
    assert "statically linked busybox" in result.stderr


def test_a_given_port_that_is_taken_is_refused_with_its_number(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(EmulatorError, match=f"Port {port} is already in use"):
            Azurite(tmp_path, blob_port=port, queue_port=0).start()
