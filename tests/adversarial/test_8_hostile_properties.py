"""Attack 8 (issue 24, items 1 and 2): whatever the uploader writes at creation (metadata values, index
tags, the access tier) is data for the validator, the status route, the reconciler and the sweep: never an
exception that stops them, never an upload that stays undecided.

Before the fix, ``x-ms-meta-valetseal: v1.<kid>.\\xe9`` made ``Sealer.verify`` raise ``TypeError`` in
every background function, and an upload PUT with ``x-ms-access-tier: Archive`` failed every ranged read
with ``BlobArchived`` and stayed ``retrying`` for ever."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from tests.adversarial.kit import status_of, where
from tests.integration.test_validation import Upload, assert_quarantined, containers
from tests.support import samples
from valet.grants.naming import parse_granted_name
from valet.runtime import Runtime
from valet.validation.reasons import Outcome
from valet.validation.reconcile import Reconciler
from valet.validation.tombstones import sweep_tombstones

pytestmark = pytest.mark.azurite


def hostile_seal(up: Upload, tail: str) -> dict[str, str]:
    facts = parse_granted_name(up.name)
    assert facts is not None  # the active key id is readable in the blob name
    return {**up.headers, "x-ms-meta-valetstate": "tombstone",
            "x-ms-meta-valetseal": f"v1.{facts.kid}.{tail}".encode().decode("latin-1")}


@pytest.mark.parametrize("tail", ["\xe9", "é" * 43, "A" * 42 + "\xff"])
def test_a_non_ascii_seal_is_quarantined_and_stops_nothing(tail: str, grant: Callable[..., Upload],
                                                           runtime: Runtime, blob_service: BlobServiceClient) -> None:
    uploads = containers(runtime)[0]
    bad = grant(size=len(samples.png()))
    assert bad.put(samples.png(), hostile_seal(bad, tail)).status_code == 201
    good = grant(size=len(samples.png()))
    assert good.put(samples.png()).status_code == 201

    assert status_of(runtime, bad)["status"] == "pending"  # was a 500 (TypeError)
    later = lambda: datetime.now(UTC) + timedelta(days=1)  # noqa: E731
    assert sweep_tombstones(blob_service, uploads, limit=10, clock=later,
                            sealer=runtime.validation.validator.sealer) == 0
    validator = runtime.validation.validator
    report = Reconciler(blob_service=blob_service, uploads=uploads, decide=validator.process,
                        is_decided=validator.is_tombstone,
                        error_tags=validator.tombstones.error_tags, min_age=timedelta(0), max_attempts=8, limit=50).run()
    assert report.failed == 0 and {bad.name, good.name} <= set(report.names)
    assert_quarantined(bad, blob_service, "reserved_metadata")
    assert good.decide().outcome is Outcome.ACCEPTED
    assert status_of(runtime, bad)["status"] == "quarantined"


def test_one_blob_that_fails_is_recorded_and_the_reconciler_goes_on(grant: Callable[..., Upload],
                                                                   runtime: Runtime,
                                                                   blob_service: BlobServiceClient) -> None:
    """Whatever the defect (here a check that raises a non-storage error for one blob), the run carries on."""
    uploads = containers(runtime)[0]
    ups = [grant(size=len(samples.png())) for _ in range(3)]
    for up in ups:
        assert up.put(samples.png()).status_code == 201
    validator = runtime.validation.validator

    def decide(name: str) -> object:
        if name == ups[0].name:
            raise ValueError("a defect met by one blob only")
        return validator.process(name)

    report = Reconciler(blob_service=blob_service, uploads=uploads, decide=decide,
                        is_decided=validator.is_tombstone,
                        error_tags=validator.tombstones.error_tags, min_age=timedelta(0), max_attempts=8, limit=50).run()
    assert report.failed == 1
    assert {ups[1].name, ups[2].name} <= set(report.names)


@pytest.mark.parametrize("tier", ["Archive"])
def test_an_archive_tier_upload_is_quarantined_not_wedged(tier: str, grant: Callable[..., Upload], runtime: Runtime,
                                                          blob_service: BlobServiceClient) -> None:
    up = grant(size=len(samples.png()))
    assert up.put(samples.png(), {**up.headers, "x-ms-access-tier": tier}).status_code == 201
    uploads, _, quarantine = containers(runtime)
    assert blob_service.get_blob_client(uploads, up.name).get_blob_properties().blob_tier == tier
    decision = assert_quarantined(up, blob_service, "unreadable")
    assert tier in decision.detail
    assert decision.evidence.startswith("head 0 of")  # nothing could be read; the record says so
    assert blob_service.get_blob_client(quarantine, up.name).get_blob_properties().size == 0
    assert status_of(runtime, up) == {"uploadId": up.upload_id, "status": "quarantined",
                                      "reason": "properties_not_allowed",
                                      "decidedAt": status_of(runtime, up)["decidedAt"]}
    assert where(up, blob_service)["uploads"]  # the tombstone holds the name


@pytest.mark.parametrize("tier", ["Cool", "Cold", "Hot"])
def test_a_readable_tier_is_decided_on_its_bytes(tier: str, grant: Callable[..., Upload],
                                                 blob_service: BlobServiceClient, runtime: Runtime) -> None:
    up = grant(size=len(samples.png()))
    assert up.put(samples.png(), {**up.headers, "x-ms-access-tier": tier}).status_code == 201
    assert up.decide().outcome is Outcome.ACCEPTED
