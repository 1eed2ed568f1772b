"""Create-only block uploads on the patched Azurite (patches/azurite+3.37.0.patch), pinned rule by rule
with raw HTTP; the same checks run against Azure in tests/live/test_live_create_only_blocks.py."""

from __future__ import annotations

import json
import os

import azure.functions as func
import pytest

from tests.conftest import StorageEndpoint
from tests.support import blockrules, samples
from valet import api
from valet.runtime import Runtime

pytestmark = pytest.mark.azurite

DATA = samples.png() + os.urandom(4096)


def rig(runtime: Runtime, storage_endpoint: StorageEndpoint) -> blockrules.Rig:
    req = func.HttpRequest(method="POST", url="https://valet.example/api/uploads",
                           headers={"content-type": "application/json"},
                           body=json.dumps({"filename": "a.png", "contentType": "image/png",
                                            "size": len(DATA)}).encode())
    response = api.create_upload(lambda: runtime, req)
    assert response.status_code == 201, response.get_body()
    return blockrules.rig_for(runtime, json.loads(response.get_body()), storage_endpoint.ca_bundle or True)


def test_put_block_with_create_only_sas_is_allowed(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    blockrules.put_block_with_create_only(rig(runtime, storage_endpoint), DATA)


def test_put_block_list_with_create_only_sas_creates_a_new_blob(runtime: Runtime,
                                                                 storage_endpoint: StorageEndpoint) -> None:
    blockrules.put_block_list_creating_a_new_blob(rig(runtime, storage_endpoint), [DATA[:100], DATA[100:]])


def test_put_block_list_over_an_existing_blob_is_unauthorized_blob_overwrite(
        runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    blockrules.put_block_list_over_an_existing_blob_is_refused(rig(runtime, storage_endpoint), DATA, DATA[::-1])


def test_other_permissions_authorize_blocks_as_before(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    blockrules.other_permissions_are_unchanged(rig(runtime, storage_endpoint), DATA)


def test_a_create_only_sas_still_cannot_read(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    blockrules.reading_stays_refused(rig(runtime, storage_endpoint), DATA)
