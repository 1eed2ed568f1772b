"""Attack 7: storage as a free locker.

Before the fix an upload over the profile cap (a SAS cannot limit size) was copied whole into
``quarantine`` and kept: any grant holder could park as many bytes as they liked. Now quarantine keeps the
record and bounded evidence (the head, at most the sniff window, and its sha256) for uploads over the cap
and for copy-created ones (see test_4); checked uploads within the cap are still copied whole, so an
operator can inspect exactly what was refused."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest
from azure.storage.blob import BlobServiceClient

from tests.integration.test_validation import Upload, assert_quarantined, containers
from tests.support import samples
from valet.runtime import Runtime

pytestmark = pytest.mark.azurite


def test_over_the_cap_keeps_only_bounded_evidence(grant: Callable[..., Upload], runtime: Runtime,
                                                  blob_service: BlobServiceClient) -> None:
    data = samples.png() + os.urandom(200 * 1024)  # the "tiny" profile allows 1 KiB
    up = grant(size=1000, profile="tiny")
    assert up.put(data).status_code == 201
    decision = assert_quarantined(up, blob_service, "too_large")
    held = blob_service.get_blob_client(containers(runtime)[2], up.name)
    head = held.download_blob().readall()
    sniff = runtime.settings.validation.sniff_bytes
    assert head == data[:sniff] and len(head) < len(data)
    assert decision.evidence == f"head {sniff} of {len(data)} bytes, sha256 {hashlib.sha256(head).hexdigest()}"
    assert held.get_blob_properties().metadata["valetevidence"] == decision.evidence


def test_within_the_cap_a_refused_upload_is_kept_whole(grant: Callable[..., Upload], runtime: Runtime,
                                                       blob_service: BlobServiceClient) -> None:
    data = samples.html()
    up = grant(size=len(data))
    assert up.put(data).status_code == 201
    decision = assert_quarantined(up, blob_service, "active_content")
    assert decision.evidence == ""
    assert blob_service.get_blob_client(containers(runtime)[2], up.name).download_blob().readall() == data
