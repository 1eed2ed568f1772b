"""Staged bytes count toward the quota while the upload window is open (issue 29), against Azurite with
the patched emulator (Put Block with a create-only SAS): a grant declares 100 bytes, its holder stages
MiBs and never commits. Once the app sees them (``GET .../blocks``, or the staged sweep), the grant holds
max(declared, staged) bytes of ``bytesPerDay``; after the window the discard and the sweep free them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.conftest import StorageEndpoint
from tests.integration.test_quota_grants import post, quota
from tests.integration.test_upload_blocks import blocks
from tests.support import blockrules
from tests.support.fakes import FixedCaller
from tests.support.quota import Clock, new_table_name, table_client
from valet.clock import utcnow
from valet.grants.naming import parse_granted_name
from valet.quotas.service import BlobPresence
from valet.quotas.store import QuotaStore
from valet.runtime import Runtime
from valet.settings import Settings
from valet.validation.staged import StagedDiscard

pytestmark = pytest.mark.azurite

MIB = 1024 * 1024
LIMIT = 8 * MIB
PROFILES = {"default": "free", "profiles": {
    "free": {"maxBytes": LIMIT, "types": {"image/png": ["png"]}},
    "metered": {"maxBytes": LIMIT, "types": {"image/png": ["png"]}, "quota": {"bytesPerDay": LIMIT}},
}}


@pytest.fixture
def table(storage_endpoint: StorageEndpoint) -> Iterator[str]:
    name = new_table_name()
    client = table_client(storage_endpoint.blob_url, storage_endpoint.table_url, storage_endpoint.ca_bundle, name)
    client.create_table()
    yield name
    client.delete_table()
    client.close()


@pytest.fixture
def runtime(valet_env: dict[str, str], storage_endpoint: StorageEndpoint, table: str) -> Iterator[Runtime]:
    env = {**valet_env, "VALET_PROFILES": json.dumps(PROFILES), "VALET_QUOTA_TABLE": table,
           "VALET_UPLOAD_WINDOW_MINUTES": "0"}  # the window is the SAS lifetime: minutes, not hours
    if storage_endpoint.table_url:
        env["VALET_TABLE_SERVICE_URL"] = storage_endpoint.table_url
    rt = Runtime.from_settings(Settings.from_env(env), authenticator=FixedCaller())
    yield rt
    rt.blob_service.close()


def granted(runtime: Runtime, profile: str, size: int) -> dict[str, object]:
    response = post(runtime, profile, size)
    assert response.status_code == 201, response.get_body()
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def stage(runtime: Runtime, g: dict[str, object], endpoint: StorageEndpoint, mib: int) -> blockrules.Rig:
    """The abuse: ``mib`` MiB staged with the grant's own create-only uploadUrl, never committed."""
    rig = blockrules.rig_for(runtime, g, endpoint.ca_bundle or True)
    chunk = os.urandom(MIB)
    for n in range(mib):
        r = rig.put_block(rig.url, n, chunk)
        assert r.status_code == 201, (r.status_code, r.headers.get("x-ms-error-code"))
    return rig


def bytes_of(runtime: Runtime) -> tuple[int, int]:
    (caller,) = quota(runtime)
    return caller["reserved"]["bytesPerDay"], caller["remaining"]["bytesPerDay"]  # type: ignore[index]


def test_blocks_staged_far_beyond_the_declared_size_are_charged_after_one_blocks_call_and_freed_after_the_window(
        runtime: Runtime, storage_endpoint: StorageEndpoint, table: str) -> None:
    clock = Clock(utcnow())
    client = table_client(storage_endpoint.blob_url, storage_endpoint.table_url, storage_endpoint.ca_bundle, table)
    uploads = runtime.blob_service.get_container_client(runtime.settings.storage.uploads_container)
    runtime.quotas.store = QuotaStore(client, clock=clock, uploaded=BlobPresence(uploads))  # a clock to move
    abuse = granted(runtime, "metered", 100)
    rig = stage(runtime, abuse, storage_endpoint, 6)
    assert bytes_of(runtime) == (100, LIMIT - 100)  # storage took 6 MiB; the app has not seen them yet

    doc = json.loads(blocks(runtime, abuse).get_body())
    assert doc["committed"] is False and sum(b["size"] for b in doc["blocks"]) == 6 * MIB
    assert bytes_of(runtime) == (6 * MIB, 2 * MIB)  # max(declared, staged) while the window is open
    refused = post(runtime, "metered", 3 * MIB)
    body = json.loads(refused.get_body())
    assert refused.status_code == 429 and body["code"] == "quota_exceeded", body
    assert body["quota"]["reserved"]["bytesPerDay"] == 6 * MIB
    assert json.loads(blocks(runtime, abuse).get_body())["blocks"] == doc["blocks"]
    assert bytes_of(runtime) == (6 * MIB, 2 * MIB)  # seen again: charged once

    facts = parse_granted_name(rig.owner.blob_name)
    assert facts is not None
    clock.now = facts.deadline + timedelta(minutes=6)
    discard = StagedDiscard(blob_service=runtime.blob_service, uploads=runtime.settings.storage.uploads_container,
                            is_decided=runtime.validation.validator.is_tombstone, grace=timedelta(minutes=5),
                            clock=clock, observe=runtime.quotas.staged_observer())
    assert rig.owner.blob_name in discard.run().names
    assert runtime.quotas.sweep().released == 1
    assert bytes_of(runtime) == (0, LIMIT)
    assert post(runtime, "metered", 3 * MIB).status_code == 201


def test_the_staged_sweep_charges_open_uploads_it_lists(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    abuse = granted(runtime, "metered", 100)
    stage(runtime, abuse, storage_endpoint, 5)
    honest = granted(runtime, "metered", 2 * MIB)
    stage(runtime, honest, storage_endpoint, 1)  # half of what it declared, so far
    assert bytes_of(runtime) == (100 + 2 * MIB, LIMIT - 100 - 2 * MIB)

    report = runtime.validation.discard_staged()  # the sweep's timer, inside both windows
    assert report.observed == 2 and report.discarded == 0
    assert bytes_of(runtime) == (7 * MIB, 1 * MIB)  # 5 MiB for the abuse, the declared 2 MiB for the honest one
    refused = post(runtime, "metered", 2 * MIB)
    assert refused.status_code == 429, refused.get_body()


def test_plain_grants_cost_no_table_request_and_honest_staging_one_read(
        runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    plain = granted(runtime, "free", 100)
    stage(runtime, plain, storage_endpoint, 2)
    before = runtime.table_requests.count
    assert blocks(runtime, plain).status_code == 200
    assert runtime.table_requests.count == before  # no quota: the Table is not asked

    honest = granted(runtime, "metered", 2 * MIB)
    stage(runtime, honest, storage_endpoint, 1)
    before = runtime.table_requests.count
    assert blocks(runtime, honest).status_code == 200
    assert runtime.table_requests.count == before + 1  # one read: nothing beyond what it declared

    abuse = granted(runtime, "metered", 100)
    stage(runtime, abuse, storage_endpoint, 1)
    before = runtime.table_requests.count
    assert blocks(runtime, abuse).status_code == 200
    assert runtime.table_requests.count == before + 2  # the read, and one transaction that charges it
