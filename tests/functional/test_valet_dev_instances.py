"""``valet dev --instances N``: N app hosts as separate processes on consecutive ports, one storage, one
issuer, one set of keys; ``VALET_URLS`` lists them; the quota table exists as the templates create it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from azure.data.tables import TableServiceClient

from tests.support.devstack import valet_dev
from tests.support.samples import png
from valet.local.emulator import port_in_use
from valet.storage import EmulatorCredential

pytestmark = pytest.mark.azurite


def test_three_instances_share_storage_issuer_and_keys_and_stop_together(tmp_path: Path) -> None:
    with valet_dev(tmp_path, args=["--instances", "3"]) as stack:
        urls = stack.env["VALET_URLS"].split()
        assert len(urls) == 3 and urls[0] == stack.url
        ports = [int(u.rsplit(":", 1)[1]) for u in urls]
        assert ports == [ports[0], ports[0] + 1, ports[0] + 2]
        children = _children(stack.proc.pid)
        assert len(children) == 2 and all(argv[0] == "--fd" for argv in children.values())
        # each instance alone holds its port's listening socket (valet dev reserved them, then let go)
        listening = _listening_inodes()
        assert sorted(listening[p] in _socket_inodes(pid) for pid in children for p in ports[1:]) == [
            False, False, True, True]
        assert not any(listening[p] in _socket_inodes(stack.proc.pid) for p in ports[1:])

        body = {"filename": "a.png", "contentType": "image/png", "size": len(png())}
        auth = {"Authorization": f"Bearer {stack.token}"}
        grants = [requests.post(f"{u}/api/uploads", json=body, headers=auth, timeout=10) for u in urls]
        assert [g.status_code for g in grants] == [201, 201, 201], [g.text for g in grants]
        key = requests.post(f"{urls[2]}/api/uploads", json=body, headers={"X-API-Key": stack.api_key}, timeout=10)
        assert key.status_code == 201, key.text
        # a grant made by one instance is known to the others (same signing keys, same storage)
        upload_id = grants[1].json()["uploadId"]
        for u in (urls[0], urls[2]):
            status = requests.get(f"{u}/api/uploads/{upload_id}", headers=auth, timeout=10)
            assert status.status_code == 200 and status.json()["status"] == "pending", status.text

        table_url = _table_url(stack.root)
        tables = TableServiceClient(table_url, credential=EmulatorCredential(table_url), connection_verify=stack.ca)
        assert "valetquotas" in {t.name for t in tables.list_tables()}
        tables.close()
    assert not any(port_in_use(p) for p in ports)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def _children(parent: int) -> dict[int, list[str]]:
    """The instance processes ``parent`` started (Linux /proc): pid -> the arguments after the module."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and "valet.local.instance" in argv:
            found[int(stat.parent.name)] = [a for a in argv[argv.index("valet.local.instance") + 1:] if a]
    return found


def _listening_inodes() -> dict[int, str]:
    """Loopback TCP ports in LISTEN state -> their socket inode (Linux /proc/net/tcp)."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":
            out[int(fields[1].rsplit(":", 1)[1], 16)] = fields[9]
    return out


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def _table_url(root: Path) -> str:
    """The Table endpoint of the stack's Azurite, from its log (the dev env lists app URLs only)."""
    from valet.local.emulator import ACCOUNT, listening_ports

    ports = listening_ports((root / ".valet" / "azurite" / "azurite.log").read_text(errors="replace"))
    return f"https://127.0.0.1:{ports['table']}/{ACCOUNT}"


def test_instances_must_be_between_1_and_16() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "valet", "dev", "--instances", "0"], capture_output=True, text=True,
                         timeout=60, env={**os.environ}, check=False)
    assert out.returncode == 2 and "--instances" in out.stderr
