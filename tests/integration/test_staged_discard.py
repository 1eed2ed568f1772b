"""Staged bytes are not free: the abuse (stage far more than declared, never commit) against Azurite, and
the discard once the upload window closed."""

from __future__ import annotations

import os
from datetime import timedelta
from urllib.parse import quote

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from tests.conftest import StorageEndpoint
from tests.integration.test_upload_blocks import grant
from tests.support import blockrules
from valet.grants.naming import parse_granted_name
from valet.runtime import Runtime
from valet.validation.staged import StagedDiscard

pytestmark = pytest.mark.azurite

MIB = 1024 * 1024


def discard(runtime: Runtime, at: object) -> StagedDiscard:
    validator = runtime.validation.validator
    return StagedDiscard(blob_service=runtime.blob_service, uploads=runtime.settings.storage.uploads_container,
                         is_decided=validator.is_tombstone, grace=timedelta(minutes=5), clock=lambda: at)  # type: ignore[arg-type,return-value]


def test_blocks_staged_far_beyond_the_declared_size_and_never_committed_are_discarded_after_the_window(
        runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    declared = 100
    abuse = grant(runtime, declared)
    rig = blockrules.rig_for(runtime, abuse, storage_endpoint.ca_bundle or True)
    chunk = os.urandom(MIB)
    for n in range(24):  # 24 MiB staged for a 100-byte grant: storage takes it, nothing sees it
        assert rig.put_block(rig.url, n, chunk).status_code == 201
    staged = rig.owner.get_block_list("uncommitted")[1]
    assert sum(b.size for b in staged) == 24 * MIB
    # An honest upload that committed, and one still in its window: neither is touched.
    honest = grant(runtime, 10)
    honest_rig = blockrules.rig_for(runtime, honest, storage_endpoint.ca_bundle or True)
    assert honest_rig.put_block(honest_rig.url, 0, b"h" * 10).status_code == 201
    assert honest_rig.commit(honest_rig.url, blockrules.block_id(0)).status_code == 201

    facts = parse_granted_name(rig.owner.blob_name)
    assert facts is not None
    still_open = discard(runtime, facts.deadline - timedelta(minutes=1)).run()
    assert rig.owner.blob_name not in still_open.names
    assert sum(b.size for b in rig.owner.get_block_list("uncommitted")[1]) == 24 * MIB

    report = discard(runtime, facts.deadline + timedelta(minutes=6)).run()
    assert rig.owner.blob_name in report.names
    assert honest_rig.owner.blob_name not in report.names
    with pytest.raises(ResourceNotFoundError):
        rig.owner.get_block_list("all")  # the 24 MiB are gone
    assert honest_rig.owner.download_blob().readall() == b"h" * 10
    listed = runtime.blob_service.get_container_client(runtime.settings.storage.uploads_container).list_blobs(
        name_starts_with=rig.owner.blob_name, include=["uncommittedblobs"])
    assert list(listed) == []


def test_after_the_window_the_grant_url_can_stage_nothing(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    """The SAS never outlives the window (renewals stop at it), so what was discarded cannot come back."""
    g = grant(runtime, 100)
    facts = parse_granted_name(str(g["blobUri"]).split(f"/{runtime.settings.storage.uploads_container}/", 1)[1])
    assert facts is not None
    se = requests.utils.unquote(str(g["signature"]).split("se=", 1)[1].split("&", 1)[0])
    assert se <= facts.deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert quote(se, safe="")  # the SAS expiry is on or before the window's end
