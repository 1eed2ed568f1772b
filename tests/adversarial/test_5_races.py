"""Attack 5 (or bad luck): races between the invocations that decide one upload.

Before the fix, a Defender ``Malicious`` event handled while the blob trigger decided the same upload could
leave it in ``accepted`` and in ``quarantine`` at once, and the error record's unconditional tag rewrite
could wipe the tags of a tombstone written meanwhile, so the sweep never found it. The interleavings are
forced deterministically: a storage-client hook runs the other invocation just before a chosen request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import BlobServiceClient

from tests.adversarial.kit import OnRequest, decided, hooked_validation, status_of, where
from tests.conftest import StorageEndpoint
from tests.integration.test_validation import Upload, containers, upload
from tests.support import samples
from valet.runtime import Runtime
from valet.validation import records
from valet.validation.store import DecisionFailed
from valet.validation.tombstones import sweep_tombstones

pytestmark = pytest.mark.azurite
EVENT = "Microsoft.Security.MalwareScanningResult"


def tombstone_write(request: Any) -> bool:
    return request.method == "PUT" and request.headers.get("x-ms-meta-valetstate") == "tombstone"


def tag_write(request: Any) -> bool:
    return request.method == "PUT" and "comp=tags" in request.url


def malicious(runtime: Runtime, up: Upload) -> dict[str, str]:
    return {"blobUri": f"{runtime.settings.storage.account_url}/{containers(runtime)[0]}/{up.name}",
            "scanResultType": "Malicious"}


def assert_quarantine_won(runtime: Runtime, up: Upload, blob_service: BlobServiceClient) -> None:
    assert where(up, blob_service) == {"uploads": True, "accepted": False, "quarantine": True}
    quarantined = blob_service.get_blob_client(containers(runtime)[2], up.name).get_blob_properties().metadata
    assert quarantined["valetreason"] == "malware"
    assert status_of(runtime, up) | {"decidedAt": ""} == {
        "uploadId": up.upload_id, "status": "quarantined", "reason": "malware_detected", "decidedAt": ""}


def test_malware_event_lands_between_the_triggers_copy_and_its_tombstone(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint,
        blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.png())
    event = lambda: runtime.validation.on_event(EVENT, malicious(runtime, up))  # noqa: E731
    trigger = hooked_validation(runtime, storage_endpoint, OnRequest(tombstone_write, event))
    decision = decided(trigger, up)  # accepted and copied, then loses the tombstone to the quarantine
    assert decision.outcome.value == "quarantined"
    assert_quarantine_won(runtime, up, blob_service)


def test_trigger_lands_between_the_events_copy_and_its_tombstone(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint,
        blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.png())
    trigger = lambda: runtime.validation.validator.process(up.name)  # noqa: E731
    events = hooked_validation(runtime, storage_endpoint, OnRequest(tombstone_write, trigger))
    decision = events.on_event(EVENT, malicious(runtime, up))  # its tombstone loses to the acceptance
    assert decision is not None and decision.outcome.value == "quarantined"
    assert_quarantine_won(runtime, up, blob_service)


def test_error_record_racing_a_tombstone_keeps_the_tombstone_sweepable(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint,
        blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.png())
    finish = lambda: runtime.validation.validator.process(up.name)  # noqa: E731  # another invocation

    def hook(request: Any) -> None:
        if "x-ms-copy-source" in request.http_request.headers:
            raise ServiceRequestError("injected failure")  # this invocation fails at its copy ...
        on_tags(request)

    on_tags = OnRequest(tag_write, finish)  # ... and records the error just after the other one finished
    failing = hooked_validation(runtime, storage_endpoint, hook, retry_total=0)
    with pytest.raises(DecisionFailed):
        failing.validator.process(up.name)
    assert on_tags.fired
    uploads = containers(runtime)[0]
    tags = blob_service.get_blob_client(uploads, up.name).get_blob_tags()
    assert tags.get(records.STATE) == "tombstone" and records.UNTIL in tags
    assert sweep_tombstones(blob_service, uploads, limit=5, clock=lambda: datetime.now(UTC) + timedelta(days=1),
                            sealer=runtime.validation.validator.sealer) == 1
