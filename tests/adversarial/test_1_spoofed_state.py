"""Attack 1: claim the validator's own state with metadata or tags the SAS lets the caller write.

The PUT carries the grant's headers plus ``x-ms-meta-valetstate: tombstone`` and
``x-ms-meta-valetoutcome: accepted`` (and, on Azurite, index tags via ``x-ms-tags``): before the fix, the
HTML page named ``.png`` was taken for a tombstone, never checked, never swept, and the status answered
``accepted``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from tests.adversarial.kit import status_of, where
from tests.integration.test_validation import Upload, assert_quarantined, containers
from tests.support import samples
from valet.runtime import Runtime
from valet.validation import records
from valet.validation.tombstones import sweep_tombstones
from valet.validation.trusted import SEAL

pytestmark = pytest.mark.azurite

SPOOFED = {"x-ms-meta-valetstate": "tombstone", "x-ms-meta-valetoutcome": "accepted",
           "x-ms-meta-valetreason": "ok", "x-ms-meta-valetuntil": "2000-01-01T00:00:00Z"}


def test_spoofed_tombstone_metadata_is_checked_and_quarantined(grant: Callable[..., Upload], runtime: Runtime,
                                                               blob_service: BlobServiceClient) -> None:
    data = samples.html()
    up = grant(size=len(data))
    assert up.put(data, {**up.headers, **SPOOFED}).status_code == 201
    assert status_of(runtime, up)["status"] == "pending"  # client-written metadata answers nothing
    decision = assert_quarantined(up, blob_service, "reserved_metadata")
    assert "valetstate" in decision.detail
    tomb = blob_service.get_blob_client(containers(runtime)[0], up.name)
    assert SEAL in tomb.get_blob_properties().metadata  # the real tombstone is sealed ...
    assert tomb.get_blob_tags()[records.STATE] == "tombstone"  # ... and findable by the sweep
    assert status_of(runtime, up)["status"] == "quarantined"


@pytest.mark.parametrize("header", ["X-Ms-Meta-ValetOutcome", "x-ms-meta-VALETSCAN", "x-ms-meta-valetseal"])
def test_any_app_metadata_name_in_any_case_makes_the_upload_suspect(
        header: str, grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data))
    assert up.put(data, {**up.headers, header: "v1.k1.AAAA"}).status_code == 201
    assert_quarantined(up, blob_service, "reserved_metadata")


def test_a_copied_seal_from_another_name_does_not_verify(grant: Callable[..., Upload], runtime: Runtime,
                                                         blob_service: BlobServiceClient) -> None:
    """Even a genuine seal (the attacker cannot read one, but say they could) is bound to its blob path."""
    real = grant(size=len(samples.png()))
    assert real.put(samples.png()).status_code == 201
    real.decide()
    genuine = blob_service.get_blob_client(containers(runtime)[0], real.name).get_blob_properties().metadata
    validator = runtime.validation.validator
    assert validator.is_tombstone(real.name, genuine)
    other = grant(size=10)
    assert not validator.is_tombstone(other.name, genuine)
    assert not validator.is_tombstone(real.name, {**genuine, "valetoutcome": "accepted", "valetreason": "x"})


def test_spoofed_tombstone_tags_are_not_swept_and_the_upload_is_still_decided(
        grant: Callable[..., Upload], runtime: Runtime, blob_service: BlobServiceClient) -> None:
    """Azurite accepts ``x-ms-tags`` with a create-only SAS: tags are attacker input too."""
    data = samples.png()
    up = grant(size=len(data))
    tags = "valetstate=tombstone&valetuntil=2000-01-01T00%3A00%3A00Z"
    assert up.put(data, {**up.headers, **SPOOFED, "x-ms-tags": tags}).status_code == 201
    uploads = containers(runtime)[0]
    later = lambda: datetime.now(UTC) + timedelta(days=1)  # noqa: E731
    assert sweep_tombstones(blob_service, uploads, limit=10, clock=later,
                            sealer=runtime.validation.validator.sealer) == 0
    assert where(up, blob_service)["uploads"]  # not deleted: the name stays occupied, the upload undecided
    assert_quarantined(up, blob_service, "reserved_metadata")


def test_malware_event_still_acts_on_a_spoofed_tombstone(grant: Callable[..., Upload], runtime: Runtime,
                                                         blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data))
    assert up.put(data, {**up.headers, **SPOOFED}).status_code == 201
    event = {"blobUri": f"{runtime.settings.storage.account_url}/{containers(runtime)[0]}/{up.name}",
             "scanResultType": "Malicious"}
    decision = runtime.validation.on_event("Microsoft.Security.MalwareScanningResult", event)
    assert decision is not None and decision.reason == "malware"
    assert where(up, blob_service) == {"uploads": True, "accepted": False, "quarantine": True}
    assert status_of(runtime, up)["reason"] == "malware_detected"
