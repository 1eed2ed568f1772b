"""How many storage requests a decision costs, counted at the HTTP transport (issue 19): one ranged GET
of the head (which carries the properties, metadata, copy status and index tag count), one create-only
copy carrying the record, one conditional tombstone write; Get Blob Tags only when the tag count says a
tag exists (Defender's verdict); a re-trigger on the tombstone is the ranged GET alone."""

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


def test_an_accepted_png_costs_three_blob_requests_and_a_retrigger_one(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    validation, seen = counted(runtime, storage_endpoint)
    up = grant(size=len(samples.png()))
    assert up.put(samples.png()).status_code == 201
    assert decided(validation, up).outcome is Outcome.ACCEPTED
    assert seen.seen == ["range", "copy", "put"]
    seen.seen.clear()
    assert decided(validation, up).outcome is Outcome.ACCEPTED  # the tombstone's own trigger
    assert seen.seen == ["range"]


def test_an_empty_blob_costs_one_request_more(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    """A range of an empty blob is 416 with no properties: an empty upload (or an empty tombstone an
    earlier version wrote) takes a HEAD besides; still decided, still recognised."""
    validation, seen = counted(runtime, storage_endpoint)
    up = grant(size=len(samples.png()))
    assert up.put(b"").status_code == 201  # the SAS cannot hold the client to the declared size
    decision = decided(validation, up)
    assert (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "empty")
    assert seen.seen[:2] == ["range", "head"]
    uploads = containers(runtime)[0]
    source = validation.validator.service.get_blob_client(uploads, up.name)
    tomb = source.get_blob_properties()
    source.upload_blob(b"", overwrite=True, metadata=tomb.metadata)  # an empty tombstone, sealed as before
    seen.seen.clear()
    assert decided(validation, up).reason == "empty"
    assert seen.seen == ["range", "head"]


def test_defender_verdict_costs_one_tag_read(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    validation, seen = counted(runtime, storage_endpoint, scanners=("defender",))
    clean = grant(size=len(samples.png()))
    assert clean.put(samples.png(), {**clean.headers, "x-ms-tags": "Malware%20Scanning%20scan%20result=No%20threats%20found"
                                     }).status_code == 201
    decision = decided(validation, clean)
    assert decision.scan.startswith("defender:")
    assert seen.seen == ["range", "tags", "copy", "put"]  # the head's x-ms-tag-count said a tag exists
    seen.seen.clear()
    bad = grant(size=len(samples.png()))
    tag = DEFENDER_TAG.replace(" ", "%20")
    assert bad.put(samples.png(), {**bad.headers, "x-ms-tags": f"{tag}=Malicious"}).status_code == 201
    decision = decided(validation, bad)
    assert (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "malware")
    assert seen.seen == ["range", "tags", "copy", "put", "put"]  # quarantine sets octet-stream on its copy


def test_with_events_the_queue_gets_one_message_and_the_marker_one_request(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    events = Announced()
    validation, seen = counted(runtime, storage_endpoint, events=events)
    up = grant(size=len(samples.png()))
    assert up.put(samples.png()).status_code == 201
    decision = decided(validation, up)
    assert events.sent == [(decision.upload_id, containers(runtime)[1])]
    assert seen.seen == ["range", "copy", "put", "tags"]


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
