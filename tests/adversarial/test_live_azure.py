"""The part of attack 5 only real Azure can show: Set Blob Tags honours ``If-Match`` (Azurite 3.37 ignores
it, so there the validator's re-check restores a tombstone's tags; see test_5_races.py). Runs only when a
live account is configured (``VALET_LIVE_STORAGE_URL``, ``VALET_LIVE_CONTAINER``, as tests/live)."""

from __future__ import annotations

import os
import secrets

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError

pytestmark = pytest.mark.live_azure

URL = os.environ.get("VALET_LIVE_STORAGE_URL")
CONTAINER = os.environ.get("VALET_LIVE_CONTAINER")


def test_set_blob_tags_with_a_stale_etag_is_refused() -> None:
    if not URL or not CONTAINER:
        pytest.skip("no live Azure account configured (VALET_LIVE_STORAGE_URL, VALET_LIVE_CONTAINER)")
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import BlobServiceClient

    blob = BlobServiceClient(URL, credential=DefaultAzureCredential()).get_blob_client(
        CONTAINER, f"adversarial/{secrets.token_hex(8)}.bin")
    stale = blob.upload_blob(b"upload")["etag"]
    blob.upload_blob(b"", overwrite=True, tags={"valetstate": "tombstone"})  # a tombstone lands meanwhile
    try:
        with pytest.raises(ResourceModifiedError):
            blob.set_blob_tags({"valetstate": "error"}, etag=stale, match_condition=MatchConditions.IfNotModified)
        assert blob.get_blob_tags() == {"valetstate": "tombstone"}
    finally:
        blob.delete_blob()
