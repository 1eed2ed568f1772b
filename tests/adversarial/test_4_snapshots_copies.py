"""Attack 4: what ``sp=c`` allows besides a Put Blob: snapshots and Copy Blob into the granted name.

Before the fix deleting a tombstone with a snapshot failed with 409 ``SnapshotsPresent`` and stopped the
whole sweep at that blob, and a Copy Blob from a URL the caller chose was decided like bytes the caller
had sent. A snapshot of the upload was quarantined (``snapshot_present``) until the decision moved to
three requests (issue 19): it holds the decided bytes, cannot be read with the grant, and goes with the
tombstone, as the first test shows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from tests.adversarial.kit import sas_request, where
from tests.integration.test_validation import Upload, assert_quarantined, containers, names_in, upload
from tests.support import samples
from valet.runtime import Runtime
from valet.validation.reasons import Outcome
from valet.validation.tombstones import sweep_tombstones

pytestmark = pytest.mark.azurite


def snapshots_of(blob_service: BlobServiceClient, container: str, name: str) -> list[str]:
    return [b.snapshot for b in blob_service.get_container_client(container).list_blobs(
        name_starts_with=name, include=["snapshots"]) if b.snapshot]


def later() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


def test_snapshot_before_the_decision_holds_the_decided_bytes_and_goes_with_the_tombstone(
        grant: Callable[..., Upload], runtime: Runtime, blob_service: BlobServiceClient) -> None:
    """The decision does not look for snapshots (no request says whether a blob has any, and the
    decision's requests are the product's latency and bill). What makes that safe is asserted here: the
    create-only SAS cannot change the blob, so the snapshot holds exactly the bytes that were decided; the
    grant cannot read the snapshot back (no free storage); the sweep deletes it with the tombstone."""
    data = samples.png()
    up = upload(grant, data)
    assert sas_request(up, "PUT", "&comp=snapshot").status_code == 201  # the create-only SAS allows it
    other = sas_request(up, "PUT", headers={"x-ms-blob-type": "BlockBlob", **up.headers}, data=samples.png(8, 8))
    assert other.status_code in (403, 409), other.text  # ... but no new bytes under the name
    uploads, accepted, _ = containers(runtime)
    (snapshot,) = snapshots_of(blob_service, uploads, up.name)

    decision = up.decide()
    assert (decision.outcome, decision.reason) == (Outcome.ACCEPTED, "ok")
    kept = blob_service.get_blob_client(uploads, up.name, snapshot=snapshot).download_blob().readall()
    assert kept == data == blob_service.get_blob_client(accepted, up.name).download_blob().readall()
    assert sas_request(up, "GET").status_code == 403
    assert sas_request(up, "GET", f"&snapshot={snapshot}").status_code == 403

    sealer = runtime.validation.validator.sealer
    assert sweep_tombstones(blob_service, uploads, limit=10, clock=later, sealer=sealer) == 1
    assert snapshots_of(blob_service, uploads, up.name) == []
    assert up.name not in names_in(blob_service, uploads)


def test_snapshot_of_the_tombstone_does_not_wedge_the_sweep(grant: Callable[..., Upload], runtime: Runtime,
                                                            blob_service: BlobServiceClient,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    ups = [upload(grant, samples.png()) for _ in range(3)]
    for up in ups:
        up.decide()
    assert sas_request(ups[0], "PUT", "&comp=snapshot").status_code == 201  # a snapshot of the tombstone
    uploads = containers(runtime)[0]
    held = blob_service.get_blob_client(uploads, ups[1].name).acquire_lease()  # a blob that cannot be deleted
    sealer = runtime.validation.validator.sealer
    with caplog.at_level(logging.WARNING, logger="valet.validation"):
        assert sweep_tombstones(blob_service, uploads, limit=10, clock=later, sealer=sealer) == 2
    assert names_in(blob_service, uploads) == [ups[1].name]  # skipped and logged, not the end of the run
    assert snapshots_of(blob_service, uploads, ups[0].name) == []
    assert any(ups[1].name in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    held.release()
    assert sweep_tombstones(blob_service, uploads, limit=10, clock=later, sealer=sealer) == 1


def test_copy_blob_into_the_granted_name_is_quarantined(grant: Callable[..., Upload], runtime: Runtime,
                                                        blob_service: BlobServiceClient) -> None:
    """On Azure the copy source may be any URL: storage fetches bytes the client never sent."""
    data = samples.png()
    public = blob_service.create_container(f"pub{runtime.settings.storage.uploads_container}", public_access="blob")
    try:
        source = public.get_blob_client("elsewhere.png")
        source.upload_blob(data)
        up = grant(size=len(data))
        copy = sas_request(up, "PUT", headers={"x-ms-copy-source": source.url,
                                               "x-ms-meta-valetgrant": up.headers["x-ms-meta-valetgrant"]})
        assert copy.status_code == 202, copy.text
        decision = assert_quarantined(up, blob_service, "copy_created")
        assert decision.evidence.startswith(f"head {len(data)} of {len(data)} bytes, sha256 ")
        assert where(up, blob_service)["accepted"] is False
    finally:
        public.delete_container()
