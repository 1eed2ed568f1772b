"""How many storage requests a decision costs, counted at the HTTP transport (issue 19): one listing
(properties, metadata, copy status, index tags and snapshots), one ranged GET pinned to the listed ETag,
one create-only copy carrying the record, one conditional tombstone write; a re-trigger on the tombstone
is the listing alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tests.adversarial.kit import decided, hooked_validation
from tests.conftest import StorageEndpoint
from tests.integration import test_validation
from tests.integration.test_validation import Upload, containers
from tests.support import samples
from valet.runtime import Runtime
from valet.validation import records
from valet.validation.reasons import Outcome
from valet.validation.records import Decision
from valet.validation.scanners import DEFENDER_TAG
from valet.validation.service import Validation
from valet.validation.validator import FIRST_TRY

pytestmark = pytest.mark.azurite
grant, runtime = test_validation.grant, test_validation.runtime  # the fixtures of the validation tests


class Requests:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: Any) -> None:
        req = request.http_request
        query = req.url.split("?", 1)[1] if "?" in req.url else ""
        kind = ("list" if "comp=list" in query else "tags" if "comp=tags" in query
                else "copy" if req.method == "PUT" and "x-ms-copy-source" in req.headers
                else "range" if req.method == "GET" else f"{req.method.lower()}")
        self.seen.append(kind)


class Announced:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, decision: Decision, container: str, name: str) -> None:
        self.sent.append((decision.upload_id, container))


def counted(runtime: Runtime, endpoint: StorageEndpoint, *, scanners: tuple[str, ...] = (),
            events: Announced | None = None) -> tuple[Validation, Requests]:
    seen = Requests()
    settings = replace(runtime.settings, validation=replace(runtime.settings.validation, scanners=scanners))
    validation = hooked_validation(runtime, endpoint, seen)
    if scanners or events is not None:
        validation = Validation.from_settings(settings, validation.validator.service, events)
    return validation, seen


def test_an_accepted_png_costs_four_blob_requests_and_a_retrigger_one(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    validation, seen = counted(runtime, storage_endpoint)
    up = grant(size=len(samples.png()))
    assert up.put(samples.png()).status_code == 201
    assert decided(validation, up).outcome is Outcome.ACCEPTED
    assert seen.seen == ["list", "range", "copy", "put"]
    seen.seen.clear()
    assert decided(validation, up).outcome is Outcome.ACCEPTED  # the tombstone's own trigger
    assert seen.seen == ["list"]


def test_defender_verdict_comes_with_the_listing(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    validation, seen = counted(runtime, storage_endpoint, scanners=("defender",))
    clean = grant(size=len(samples.png()))
    assert clean.put(samples.png(), {**clean.headers, "x-ms-tags": "Malware%20Scanning%20scan%20result=No%20threats%20found"
                                     }).status_code == 201
    decision = decided(validation, clean)
    assert decision.scan.startswith("defender:")
    assert seen.seen == ["list", "range", "copy", "put"]
    seen.seen.clear()
    bad = grant(size=len(samples.png()))
    tag = DEFENDER_TAG.replace(" ", "%20")
    assert bad.put(samples.png(), {**bad.headers, "x-ms-tags": f"{tag}=Malicious"}).status_code == 201
    decision = decided(validation, bad)
    assert (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "malware")
    assert "tags" not in seen.seen


def test_with_events_the_queue_gets_one_message_and_the_marker_one_request(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    events = Announced()
    validation, seen = counted(runtime, storage_endpoint, events=events)
    up = grant(size=len(samples.png()))
    assert up.put(samples.png()).status_code == 201
    decision = decided(validation, up)
    assert events.sent == [(decision.upload_id, containers(runtime)[1])]
    assert seen.seen == ["list", "range", "copy", "put", "tags"]


def test_an_older_upload_finishes_a_copy_an_earlier_try_left(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    """A try that crashed between its quarantine copy and its tombstone, found by a later try: the
    quarantine record stands (quarantine wins), also when this try alone would have accepted."""
    validation, _ = counted(runtime, storage_endpoint)
    up = grant(size=len(samples.png()))
    assert up.put(samples.png()).status_code == 201
    uploads, _accepted, quarantine = containers(runtime)
    service = validation.validator.service
    source = service.get_blob_client(uploads, up.name)
    earlier = Decision(outcome=Outcome.QUARANTINED, reason="malware", detail="an earlier verdict",
                       upload_id=up.upload_id, caller="earlier", decided_at=source.get_blob_properties().creation_time)
    service.get_blob_client(quarantine, up.name).start_copy_from_url(source.url, metadata=earlier.metadata())
    later = source.get_blob_properties().creation_time + FIRST_TRY + timedelta(seconds=1)
    validation.validator._clock = lambda: later  # the retry comes after the first try's window
    decision = decided(validation, up)
    assert (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "malware")
    assert records.is_tombstone(source.get_blob_properties().metadata)
