"""How many storage requests a decision costs, counted at the HTTP transport (issue 19): one ranged GET
of the head (which carries the properties, metadata, copy status and index tag count), one create-only
copy carrying the record, one conditional tombstone write; Get Blob Tags only when the tag count says a
tag exists (Defender's verdict); a re-trigger on the tombstone is the ranged GET alone."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from azure.storage.blob import ContentSettings

from tests.adversarial.kit import decided, hooked_validation
from tests.conftest import StorageEndpoint
from tests.integration import test_validation
from tests.integration.test_cancel import call, put
from tests.integration.test_quota_batches_http import batch_status, post
from tests.integration.test_quota_grants import PROFILES as QUOTA_PROFILES
from tests.integration.test_quota_grants import quota
from tests.integration.test_validation import Upload, containers
from tests.support import samples
from tests.support.fakes import FixedCaller
from tests.support.quota import new_table_name, table_client
from valet.grants.naming import granted_blob_name, new_upload_id
from valet.grants.token import GRANT_HEADER
from valet.quotas.service import Quotas
from valet.runtime import Runtime
from valet.settings import Settings
from valet.storage import EmulatorCredential, RequestCounter
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


# -- with the quota table named (the templates and valet dev name it) ------------------------------------
#
# Batch and idempotent grants store rows in any profile, so a decision cannot guess which grants have one:
# the grant's signed blob name says (valet.grants.naming: ``r`` a row, ``p`` none). A plain grant's decision
# and cancel make no Table request; a grant with a row settles it.


class TableRequests(RequestCounter):
    """The quota table's requests by kind, counted at the transport."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __call__(self, request: Any) -> None:
        super().__call__(request)
        req = request.http_request
        self.seen.append("transaction" if req.url.split("?", 1)[0].endswith("/$batch")
                         else "read" if req.method == "GET" else req.method.lower())


@pytest.fixture
def quota_runtime(valet_env: dict[str, str], storage_endpoint: StorageEndpoint) -> Iterator[Runtime]:
    table = new_table_name()
    client = table_client(storage_endpoint.blob_url, storage_endpoint.table_url, storage_endpoint.ca_bundle, table)
    client.create_table()  # as the templates and valet dev create it
    env = {**valet_env, "VALET_PROFILES": json.dumps(QUOTA_PROFILES), "VALET_QUOTA_TABLE": table}
    if storage_endpoint.table_url:
        env["VALET_TABLE_SERVICE_URL"] = storage_endpoint.table_url
    rt = Runtime.from_settings(Settings.from_env(env), authenticator=FixedCaller())
    assert rt.quotas.tracks_unmetered  # the setting that used to cost every decision a Table read
    yield rt
    rt.blob_service.close()
    client.delete_table()
    client.close()


def settling(rt: Runtime, endpoint: StorageEndpoint) -> tuple[Validation, Requests, TableRequests]:
    """The runtime's decision side (its settings, its quota table) with both transports counted."""
    blobs, table = Requests(), TableRequests()
    settings = rt.settings
    assert settings.quota_store is not None
    quotas = Quotas.build(settings.quotas, settings.storage, settings.quota_store,
                          EmulatorCredential(settings.quota_store.table_url), counter=table)
    validation = Validation.from_settings(settings, hooked_validation(rt, endpoint, blobs).validator.service,
                                          None, quotas)
    return validation, blobs, table


def granted(rt: Runtime, profile: str, size: int, key: str | None = None) -> dict[str, Any]:
    body = {"filename": "cat.png", "contentType": "image/png", "size": size, "profile": profile}
    response = post(rt, body, key)
    assert response.status_code == 201, response.get_body()
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def blob_name(rt: Runtime, g: dict[str, Any]) -> str:
    return unquote(str(g["blobUri"]).split(f"/{rt.settings.storage.uploads_container}/", 1)[1])


def row_flag(name: str) -> str:
    return name.rsplit("/", 1)[1].split(".")[4]


def test_with_the_quota_table_a_plain_grant_decides_in_three_blob_requests_and_no_table_request(
        quota_runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    rt = quota_runtime
    validation, blobs, table = settling(rt, storage_endpoint)
    g = granted(rt, "free", len(samples.png()))
    assert row_flag(blob_name(rt, g)) == "np"  # the signed name: no row
    assert put(g, storage_endpoint, samples.png()) == 201
    decision = validation.on_blob(rt.settings.storage.uploads_container, blob_name(rt, g))
    assert decision is not None and decision.outcome is Outcome.ACCEPTED
    assert (blobs.seen, table.seen) == (["range", "copy", "put"], [])
    blobs.seen.clear()
    validation.on_blob(rt.settings.storage.uploads_container, blob_name(rt, g))  # a duplicate delivery
    assert (blobs.seen, table.seen) == (["range"], [])
    other = granted(rt, "free", 5)
    before = rt.table_requests.count
    assert call(rt, "DELETE", other["uploadId"], other["blobUri"]).status_code == 204
    assert rt.table_requests.count == before  # a plain grant's cancel: no Table request either


def test_a_quota_grant_still_settles_its_reservation(quota_runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    rt = quota_runtime
    validation, blobs, table = settling(rt, storage_endpoint)
    g = granted(rt, "metered", len(samples.png()))
    assert row_flag(blob_name(rt, g)) == "nr"
    assert put(g, storage_endpoint, samples.png()) == 201
    assert validation.on_blob(rt.settings.storage.uploads_container, blob_name(rt, g)) is not None
    assert blobs.seen == ["range", "copy", "put"]
    assert table.seen == ["read", "transaction"]  # its rows (one read), then one entity-group transaction
    assert quota(rt)[0]["used"] == {"bytesPerDay": len(samples.png()), "filesPerDay": 1}
    cancelled = granted(rt, "metered", 5)
    before = rt.table_requests.count
    assert call(rt, "DELETE", cancelled["uploadId"], cancelled["blobUri"]).status_code == 204
    assert rt.table_requests.count > before and quota(rt)[0]["reserved"]["pendingFiles"] == 0


def test_a_batch_member_and_an_idempotent_grant_without_quota_still_settle(
        quota_runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    rt = quota_runtime
    validation, _, table = settling(rt, storage_endpoint)
    size = len(samples.png())
    batch = post(rt, {"profile": "free", "files": [{"filename": "1.png", "contentType": "image/png", "size": size}]})
    assert batch.status_code == 201
    doc = json.loads(batch.get_body())
    single = granted(rt, "free", size, key="rowflag-1")
    uploads = rt.settings.storage.uploads_container
    # the batch member reads its grant row and its batch row, then writes both in one transaction
    for g, requests in ((doc["uploads"][0], ["read", "read", "transaction"]), (single, ["read", "transaction"])):
        assert row_flag(blob_name(rt, g)) == "nr"  # a row in a profile without a quota: the name says so
        assert put(g, storage_endpoint, samples.png()) == 201
        table.seen.clear()
        assert validation.on_blob(uploads, blob_name(rt, g)) is not None
        assert table.seen == requests
    stored = rt.quotas.stored_grant(FixedCaller().caller, single["uploadId"])
    assert stored is not None and stored.state != "reserved"  # settled: consumed by its decision
    status = batch_status(rt, doc["batchId"])
    assert json.loads(status.get_body())["status"] == "complete"


def test_a_client_cannot_forge_the_row_fact(quota_runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    """The fact is in the blob name, under its MAC, and the SAS pins the name: the client cannot upload to a
    name with another flag; the header of another grant quarantines the upload and settles nothing; an
    upload without the header still settles its row (the name alone carries the fact)."""
    rt = quota_runtime
    validation, _, table = settling(rt, storage_endpoint)
    uploads, data = rt.settings.storage.uploads_container, samples.png()
    plain, metered = granted(rt, "free", len(data)), granted(rt, "metered", len(data))
    flipped = str(plain["uploadUrl"]).replace(".np.", ".nr.", 1)
    assert flipped != plain["uploadUrl"]
    assert put({**plain, "uploadUrl": flipped}, storage_endpoint, data) == 403  # the SAS signs the name
    stolen = {**plain, "headers": {**plain["headers"], GRANT_HEADER: metered["headers"][GRANT_HEADER]}}
    assert put(stolen, storage_endpoint, data) == 201  # the metered grant's header on the plain upload
    decision = validation.on_blob(uploads, blob_name(rt, plain))
    assert decision is not None and (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "path_mismatch")
    assert table.seen == []  # nothing settled: not the plain grant (no row), not the metered one
    assert quota(rt)[0]["reserved"]["pendingFiles"] == 1
    bare = {**metered, "headers": {k: v for k, v in metered["headers"].items() if k != GRANT_HEADER}}
    assert put(bare, storage_endpoint, data) == 201  # the metered grant's upload without its header
    assert validation.on_blob(uploads, blob_name(rt, metered)) is not None
    assert table.seen == ["read", "transaction"]
    assert quota(rt)[0]["reserved"]["pendingFiles"] == 0


def test_a_grant_signed_before_names_said_settles_as_before(quota_runtime: Runtime,
                                                            storage_endpoint: StorageEndpoint) -> None:
    """A name without the fact (an older release's, still in its upload window at a deploy): the profile
    and settings decide, as before: with the table named, one settlement attempt."""
    rt = quota_runtime
    validation, blobs, table = settling(rt, storage_endpoint)
    keys, data = rt.settings.grant_keys, samples.png()
    upload_id = new_upload_id(datetime.now(UTC), os.urandom)
    name = granted_blob_name(partition=FixedCaller().caller.partition, upload_id=upload_id, profile="free",
                             size=len(data), deadline=datetime.now(UTC) + timedelta(minutes=3),
                             sha256_declared=False, content_type="image/png", extension="png",
                             container=rt.settings.storage.uploads_container, kid=keys.active,
                             key=keys.key(keys.active) or b"")
    assert row_flag(name) == "n"
    uploads = rt.settings.storage.uploads_container
    validation.validator.service.get_blob_client(uploads, name).upload_blob(  # as its SAS holder would
        data, content_settings=ContentSettings(content_type="image/png"))
    blobs.seen.clear()
    decision = validation.on_blob(uploads, name)
    assert decision is not None and decision.outcome is Outcome.ACCEPTED and decision.stored_row is None
    assert blobs.seen == ["range", "copy", "put"] and table.seen == ["read"]  # no row found: nothing to write
