"""``valet upload FILE``: the client's ``valet-upload`` (:mod:`valet_client.cli`) with this checkout's
defaults: the emulator certificate that ``valet dev`` made, for a loopback service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from valet.local.emulator import PROJECT_ROOT
from valet_client.cli import main as valet_upload

LOCAL_CA = PROJECT_ROOT / ".valet" / "azurite" / "tls" / "cert.pem"


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, environ: dict[str, str] | None = None) -> int:
    return valet_upload(argv, out=out, environ=environ, prog="valet upload", local_ca=LOCAL_CA)
