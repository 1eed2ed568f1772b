"""The create-only block rules of service version 2026-04-06, as raw HTTP checks that run unchanged
against the patched Azurite (tests/integration/test_create_only_blocks.py) and a live Azure account
(tests/live/test_live_create_only_blocks.py, ``live_azure``).

Each check takes a :class:`Rig`: a fresh grant for a new blob (its create-only ``uploadUrl``), the CA
bundle to trust, the app's own client for that blob (to look, never to upload), and a way to sign another
SAS for the same blob with the app's user delegation key.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import requests
from azure.storage.blob import BlobClient, BlobSasPermissions

from valet.clock import utcnow
from valet.grants.delegation import blob_sas
from valet.runtime import Runtime

BLOCK_VERSION = "2026-10-06"  # what the SDKs send; create-only blocks need 2026-04-06 or later


def raw_id(n: int) -> str:
    """The block id as the SDK's get_block_list returns it (base64-decoded)."""
    return f"rule-{n:06d}"


def block_id(n: int) -> str:
    """The block id on the wire (base64)."""
    return base64.b64encode(raw_id(n).encode()).decode()


def block_list(*ids: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?><BlockList>'
            + "".join(f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>").encode()


@dataclass
class Rig:
    grant: dict[str, object]
    verify: bool | str
    owner: BlobClient  # the app's identity, on the granted blob
    sign: Callable[[BlobSasPermissions], str]  # another SAS for the same blob: "<blobUri>?<sas>"

    @property
    def url(self) -> str:
        return str(self.grant["uploadUrl"])

    def put_block(self, url: str, n: int, data: bytes) -> requests.Response:
        return requests.put(f"{url}&comp=block&blockid={quote(block_id(n), safe='')}", data=data,
                            headers={"x-ms-version": BLOCK_VERSION}, verify=self.verify, timeout=60)

    def commit(self, url: str, *ids: str) -> requests.Response:
        headers = {k: v for k, v in dict(self.grant["headers"]).items()  # type: ignore[call-overload]
                   if k.lower() != "x-ms-blob-type"}
        return requests.put(f"{url}&comp=blocklist", data=block_list(*ids),
                            headers={**headers, "x-ms-version": BLOCK_VERSION}, verify=self.verify, timeout=60)


def rig_for(runtime: Runtime, grant: dict[str, object], verify: bool | str) -> Rig:
    container = runtime.settings.storage.uploads_container
    name = str(grant["blobUri"]).split(f"/{container}/", 1)[1]

    def sign(permission: BlobSasPermissions) -> str:
        now = utcnow()
        key = runtime.key_cache.get(now + timedelta(minutes=5))
        sas = blob_sas(key, account=runtime.blob_service.account_name or "", container=container, name=name,
                       permission=permission, now=now, expires=now + timedelta(minutes=5),
                       skew=timedelta(minutes=5))
        return f"{grant['blobUri']}?{sas}"

    return Rig(grant, verify, runtime.blob_service.get_blob_client(container, name), sign)


def put_block_with_create_only(rig: Rig, data: bytes) -> None:
    r = rig.put_block(rig.url, 0, data)
    assert r.status_code == 201, (r.status_code, r.headers.get("x-ms-error-code"))
    uncommitted = rig.owner.get_block_list("uncommitted")[1]
    assert [(b.id, b.size) for b in uncommitted] == [(raw_id(0), len(data))]


def put_block_list_creating_a_new_blob(rig: Rig, parts: list[bytes]) -> None:
    for n, part in enumerate(parts):
        assert rig.put_block(rig.url, n, part).status_code == 201
    r = rig.commit(rig.url, *(block_id(n) for n in range(len(parts))))
    assert r.status_code == 201, (r.status_code, r.headers.get("x-ms-error-code"))
    committed = rig.owner.get_block_list("committed")[0]
    assert [b.id for b in committed] == [raw_id(n) for n in range(len(parts))]
    assert rig.owner.download_blob().readall() == b"".join(parts)


def put_block_list_over_an_existing_blob_is_refused(rig: Rig, first: bytes, second: bytes) -> None:
    put_block_list_creating_a_new_blob(rig, [first])
    assert rig.put_block(rig.url, 1, second).status_code == 201  # staging touches no committed byte
    r = rig.commit(rig.url, block_id(1))
    assert r.status_code == 403 and r.headers.get("x-ms-error-code") == "UnauthorizedBlobOverwrite", (
        r.status_code, r.headers.get("x-ms-error-code"))
    assert rig.owner.download_blob().readall() == first  # the committed blob is untouched


def other_permissions_are_unchanged(rig: Rig, data: bytes) -> None:
    for letters in ("r", "a", "t", "d"):  # none of these ever authorized a block
        perm = BlobSasPermissions.from_string(letters)
        r = rig.put_block(rig.sign(perm), 0, data)
        assert r.status_code == 403, (letters, r.status_code)
        assert r.headers.get("x-ms-error-code") == "AuthorizationPermissionMismatch", letters
    write = rig.sign(BlobSasPermissions(write=True))  # w stages and commits, and may replace a blob
    assert rig.put_block(write, 0, data).status_code == 201
    assert rig.commit(write, block_id(0)).status_code == 201
    assert rig.put_block(write, 1, data[::-1]).status_code == 201
    assert rig.commit(write, block_id(1)).status_code == 201
    assert rig.owner.download_blob().readall() == data[::-1]


def reading_stays_refused(rig: Rig, data: bytes) -> None:
    put_block_list_creating_a_new_blob(rig, [data])
    for suffix in ("", "&comp=blocklist&blocklisttype=all", "&comp=metadata"):
        r = requests.get(f"{rig.url}{suffix}", headers={"x-ms-version": BLOCK_VERSION}, verify=rig.verify, timeout=60)
        assert r.status_code == 403, (suffix, r.status_code)
    head = requests.head(rig.url, headers={"x-ms-version": BLOCK_VERSION}, verify=rig.verify, timeout=60)
    assert head.status_code == 403
