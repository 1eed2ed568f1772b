"""Deciding uploads against a real Azurite: real grants, real PUTs with the returned URL and headers,
real server-side copies and tombstones. The only stand-ins are the caller (FixedCaller) and, for the
storage-failure cases, a pipeline policy that fails chosen requests."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline import PipelineRequest
from azure.storage.blob import BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.support import samples
from tests.support.fakes import ALICE, FixedCaller
from valet import api
from valet.caller import Caller
from valet.grants.naming import parse_upload_id
from valet.grants.token import GRANT_HEADER, GRANT_METADATA_KEY, GrantKeyRing
from valet.runtime import Runtime
from valet.settings import Settings
from valet.storage import EmulatorCredential
from valet.validation import records
from valet.validation.reasons import Outcome
from valet.validation.records import Decision
from valet.validation.scanners import DEFENDER_TAG
from valet.validation.service import Validation
from valet.validation.status import StatusReader
from valet.validation.store import DecisionFailed
from valet.validation.tombstones import sweep_tombstones

pytestmark = pytest.mark.azurite

PROFILES = json.loads((Path(__file__).parents[2] / "valet" / "default_profiles.json").read_text())
PROFILES["profiles"]["tiny"] = {"maxBytes": 1024, "types": {"image/png": ["png"]}}
PROFILES["profiles"]["strictdocs"] = {"maxBytes": 1024 * 1024, "types": {"application/pdf": ["pdf"]}}  # no PDF actions
PROFILES["profiles"]["smallzip"] = {
    "maxBytes": 10 * 1024 * 1024, "types": {"application/zip": ["zip"]},
    "archive": {"maxEntries": 5, "maxTotalBytes": 50 * 1024 * 1024, "maxRatio": 100},
}
BOB = Caller(kind="bearer", issuer=ALICE.issuer, subject="bbbbbbbb-0000-0000-0000-000000000002", tenant=ALICE.tenant)


@pytest.fixture
def runtime(valet_env: dict[str, str]) -> Iterator[Runtime]:
    env = {**valet_env, "VALET_PROFILES": json.dumps(PROFILES)}
    rt = Runtime.from_settings(Settings.from_env(env), authenticator=FixedCaller())
    yield rt
    rt.audit.close()
    rt.blob_service.close()


class Upload:
    def __init__(self, runtime: Runtime, grant: dict[str, object], ca: str | None) -> None:
        self.runtime, self.grant, self.ca = runtime, grant, ca
        container = runtime.settings.storage.uploads_container
        self.name = urlsplit(str(grant["blobUri"])).path.split(f"/{container}/", 1)[1]
        self.upload_id = str(grant["uploadId"])

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.grant["headers"])  # type: ignore[call-overload]

    def put(self, data: bytes, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.put(str(self.grant["uploadUrl"]), data=data, headers=headers or self.headers,
                            verify=self.ca or True, timeout=30)

    def decide(self) -> Decision:
        decision = self.runtime.validation.validator.process(self.name)
        assert decision is not None
        return decision


@pytest.fixture
def grant(runtime: Runtime, storage_endpoint: StorageEndpoint) -> Callable[..., Upload]:
    def make(**body: object) -> Upload:
        request = {"filename": "cat.png", "contentType": "image/png", "size": 0, **body}
        response = api.create_upload(lambda: runtime, func.HttpRequest(
            method="POST", url="https://valet.example/api/uploads",
            headers={"content-type": "application/json"}, body=json.dumps(request).encode()))
        assert response.status_code == 201, response.get_body()
        return Upload(runtime, json.loads(response.get_body()), storage_endpoint.ca_bundle)
    return make


def upload(grant: Callable[..., Upload], data: bytes, **body: object) -> Upload:
    up = grant(size=len(data), **body)
    assert up.put(data).status_code == 201
    return up


def containers(runtime: Runtime) -> tuple[str, str, str]:
    s = runtime.settings.storage
    return s.uploads_container, s.accepted_container, s.quarantine_container


def names_in(blob_service: BlobServiceClient, container: str) -> list[str]:
    return [b.name for b in blob_service.get_container_client(container).list_blobs()]


def assert_quarantined(up: Upload, blob_service: BlobServiceClient, reason: str) -> Decision:
    decision = up.decide()
    assert (decision.outcome, decision.reason) == (Outcome.QUARANTINED, reason)
    uploads, accepted, quarantine = containers(up.runtime)
    props = blob_service.get_blob_client(quarantine, up.name).get_blob_properties()
    assert props.metadata["valetoutcome"] == "quarantined"
    assert props.metadata["valetreason"] == reason
    assert GRANT_METADATA_KEY not in props.metadata  # the record never carries the grant token
    assert blob_service.get_blob_client(quarantine, up.name).get_blob_tags()["valetreason"] == reason
    assert up.name not in names_in(blob_service, accepted)
    tomb = blob_service.get_blob_client(uploads, up.name).get_blob_properties()
    assert tomb.size == len(records.TOMBSTONE_BODY) and records.is_tombstone(tomb.metadata)
    return decision


# -- accepted -------------------------------------------------------------------------------------------

def test_good_png_is_accepted_with_its_record_and_a_tombstone(grant: Callable[..., Upload],
                                                               blob_service: BlobServiceClient,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    data = samples.png()
    up = upload(grant, data)
    with caplog.at_level(logging.INFO, logger="valet.audit"):
        decision = up.decide()
    assert (decision.outcome, decision.reason) == (Outcome.ACCEPTED, "ok")
    uploads, accepted, quarantine = containers(up.runtime)
    copy = blob_service.get_blob_client(accepted, up.name)
    assert copy.download_blob().readall() == data
    meta = copy.get_blob_properties().metadata
    assert meta["valetuploadid"] == up.upload_id
    assert meta["valetcaller"] == ALICE.id
    assert meta["valetdetectedtype"] == "image/png" and meta["valetdeclaredtype"] == "image/png"
    assert meta["valetsize"] == str(len(data))
    assert {"valetgrantedat", "valetgrantexpires", "valetdecidedat", "valetcreatedat"} <= set(meta)
    tomb = blob_service.get_blob_client(uploads, up.name).get_blob_properties()
    assert tomb.size == len(records.TOMBSTONE_BODY) and tomb.metadata["valetstate"] == "tombstone"
    assert tomb.metadata["valetoutcome"] == "accepted"
    until = records.parse_timestamp(tomb.metadata["valetuntil"])
    assert until is not None and until >= datetime.fromisoformat(str(up.grant["expiresOn"]).replace("Z", "+00:00"))
    assert names_in(blob_service, quarantine) == []
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "decision"]
    assert (record.upload_id, record.outcome, record.reason, record.caller) == (up.upload_id, "accepted", "ok", ALICE.id)
    token = up.headers[GRANT_HEADER]
    assert all(token not in str(v) for v in vars(record).values())


def test_good_pdf_with_declared_sha256_is_accepted(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = samples.pdf()
    digest = hashlib.sha256(data).hexdigest()
    up = upload(grant, data, filename="a.pdf", contentType="application/pdf", profile="documents", sha256=digest)
    decision = up.decide()
    assert (decision.outcome, decision.sha256) == (Outcome.ACCEPTED, digest)
    accepted = containers(up.runtime)[1]
    assert blob_service.get_blob_client(accepted, up.name).get_blob_properties().metadata["valetsha256"] == digest


def test_small_zip_within_limits_is_accepted(grant: Callable[..., Upload]) -> None:
    data = samples.zip_file({"a.txt": b"hello " * 100, "b.txt": b"world"})
    up = upload(grant, data, filename="a.zip", contentType="application/zip", profile="archives")
    assert up.decide().outcome is Outcome.ACCEPTED


# -- quarantined ----------------------------------------------------------------------------------------

def test_html_renamed_png_is_active_content(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.html())
    decision = assert_quarantined(up, blob_service, "active_content")
    assert decision.detected_type == "text/html"


def test_svg_with_script_is_active_content(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    assert_quarantined(upload(grant, samples.svg_with_script()), blob_service, "active_content")


def test_size_differing_from_declared(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data) + 10)
    assert up.put(data).status_code == 201
    assert_quarantined(up, blob_service, "size_mismatch")


def test_over_the_profile_maximum(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = grant(size=1000, profile="tiny")
    assert up.put(samples.png() + bytes(2000)).status_code == 201
    assert_quarantined(up, blob_service, "too_large")


def test_empty_file(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = grant(size=100)
    assert up.put(b"").status_code == 201
    assert_quarantined(up, blob_service, "empty")


def test_wrong_sha256(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.png(), sha256="0" * 64)
    decision = assert_quarantined(up, blob_service, "sha256_mismatch")
    assert decision.sha256 == hashlib.sha256(samples.png()).hexdigest()


def test_an_upload_with_only_the_grant_url_is_decided_from_the_name(grant: Callable[..., Upload],
                                                                    blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data))
    assert up.put(data, {"x-ms-blob-type": "BlockBlob"}).status_code == 201  # what a plain SDK upload sends
    decision = up.decide()
    assert (decision.outcome, decision.reason, decision.declared_type) == (Outcome.ACCEPTED, "ok", "image/png")
    assert decision.upload_id == up.upload_id and decision.caller == ALICE.partition


def test_a_url_only_upload_of_the_wrong_size_or_html_is_quarantined(grant: Callable[..., Upload],
                                                                   blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data) + 1)
    assert up.put(data, {"x-ms-blob-type": "BlockBlob"}).status_code == 201
    assert_quarantined(up, blob_service, "size_mismatch")
    html = samples.html()
    up = grant(size=len(html))
    assert up.put(html, {"x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": "application/octet-stream"}
                  ).status_code == 201
    assert_quarantined(up, blob_service, "active_content")


def test_a_url_only_upload_of_a_grant_with_sha256_needs_the_header(grant: Callable[..., Upload],
                                                                   blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert up.put(data, {"x-ms-blob-type": "BlockBlob"}).status_code == 201
    decision = assert_quarantined(up, blob_service, "missing_grant")
    assert decision.upload_id == up.upload_id  # taken from the blob name for the record


@pytest.mark.parametrize("style", [str.lower, str.title, str.upper])
def test_grant_header_names_in_any_case(grant: Callable[..., Upload], style: Callable[[str], str]) -> None:
    data = samples.png()
    up = grant(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert up.put(data, {style(k): v for k, v in up.headers.items()}).status_code == 201
    decision = up.decide()
    assert (decision.outcome, decision.sha256) == (Outcome.ACCEPTED, hashlib.sha256(data).hexdigest())


def test_octet_stream_is_not_declared_but_another_type_is_a_mismatch(grant: Callable[..., Upload],
                                                                      blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data))
    assert up.put(data, {**up.headers, "x-ms-blob-content-type": "application/octet-stream"}).status_code == 201
    assert up.decide().outcome is Outcome.ACCEPTED
    up = grant(size=len(data))
    assert up.put(data, {**up.headers, "x-ms-blob-content-type": "text/html"}).status_code == 201
    assert_quarantined(up, blob_service, "content_type_mismatch")


def test_forged_grant_header(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data))
    real = up.runtime.settings.grant_keys.verify(up.headers[GRANT_HEADER])
    forger = GrantKeyRing({"k1": b"f" * 32}, "k1")  # same key id, attacker's key
    assert up.put(data, {**up.headers, GRANT_HEADER: forger.sign(real)}).status_code == 201
    assert_quarantined(up, blob_service, "bad_grant")


def test_blob_at_a_path_never_granted(grant: Callable[..., Upload], runtime: Runtime,
                                      blob_service: BlobServiceClient) -> None:
    data = samples.png()
    donor = grant(size=len(data))  # a genuine grant token, for another name
    uploads, _, quarantine = containers(runtime)
    name = f"{ALICE.partition}/2026/01/01/not-granted.png"
    blob_service.get_blob_client(uploads, name).upload_blob(
        data, metadata={GRANT_METADATA_KEY: donor.headers[GRANT_HEADER]})
    decision = runtime.validation.validator.process(name)
    assert decision is not None and decision.reason == "path_mismatch"
    assert blob_service.get_blob_client(quarantine, name).get_blob_properties().metadata["valetreason"] == "path_mismatch"
    bare = f"{ALICE.partition}/2026/01/01/bare.png"
    blob_service.get_blob_client(uploads, bare).upload_blob(data)
    assert runtime.validation.validator.process(bare).reason == "missing_grant"  # type: ignore[union-attr]


def test_eicar_with_defender_malicious_tag(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.EICAR, filename="e.txt", contentType="text/plain", profile="documents")
    uploads = containers(up.runtime)[0]
    blob_service.get_blob_client(uploads, up.name).set_blob_tags({DEFENDER_TAG: "Malicious"})
    decision = assert_quarantined(up, blob_service, "malware")
    assert decision.scan == "defender:Malicious"


def test_defender_clean_tag_is_recorded_on_acceptance(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.png())
    blob_service.get_blob_client(containers(up.runtime)[0], up.name).set_blob_tags({DEFENDER_TAG: "No threats found"})
    decision = up.decide()
    assert (decision.outcome, decision.scan) == (Outcome.ACCEPTED, "defender:No threats found")


def test_malware_event_after_acceptance_moves_to_quarantine(grant: Callable[..., Upload], runtime: Runtime,
                                                            blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.EICAR, filename="e.txt", contentType="text/plain", profile="documents")
    assert up.decide().outcome is Outcome.ACCEPTED  # Defender had not answered yet
    uploads, accepted, quarantine = containers(runtime)
    event = {"blobUri": f"{runtime.settings.storage.account_url}/{uploads}/{up.name}",
             "scanResultType": "Malicious", "scanFinishedTimeUtc": "2026-01-01T00:00:00.000Z"}
    for _ in range(2):  # Event Grid delivers at least once
        decision = runtime.validation.on_event("Microsoft.Security.MalwareScanningResult", event)
        assert decision is not None and (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "malware")
    assert up.name not in names_in(blob_service, accepted)
    meta = blob_service.get_blob_client(quarantine, up.name).get_blob_properties().metadata
    assert (meta["valetreason"], meta["valetprevious"]) == ("malware", "accepted")
    tomb = blob_service.get_blob_client(uploads, up.name).get_blob_properties().metadata
    assert (tomb["valetstate"], tomb["valetoutcome"]) == ("tombstone", "quarantined")
    assert runtime.validation.status.status(ALICE.partition, up.upload_id)["reason"] == "malware_detected"


def test_malware_event_before_the_validator_quarantines(grant: Callable[..., Upload], runtime: Runtime,
                                                        blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.EICAR, filename="e.txt", contentType="text/plain", profile="documents")
    event = {"blobUri": f"{runtime.settings.storage.account_url}/{containers(runtime)[0]}/{up.name}",
             "scanResultType": "Malicious"}
    runtime.validation.on_event("Microsoft.Security.MalwareScanningResult", event)
    assert_quarantined(up, blob_service, "malware")  # the trigger arriving late changes nothing


def test_clean_and_foreign_events_do_nothing(runtime: Runtime) -> None:
    uploads = containers(runtime)[0]
    clean = {"blobUri": f"{runtime.settings.storage.account_url}/{uploads}/x.png", "scanResultType": "No threats found"}
    other = {"blobUri": f"https://evil.blob.core.windows.net/{uploads}/x.png", "scanResultType": "Malicious"}
    assert runtime.validation.on_event("Microsoft.Security.MalwareScanningResult", clean) is None
    assert runtime.validation.on_event("Microsoft.Security.MalwareScanningResult", other) is None


def test_zip_bomb_is_refused_from_the_directory(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = samples.zip_bomb(32)
    up = upload(grant, data, filename="b.zip", contentType="application/zip", profile="archives")
    decision = assert_quarantined(up, blob_service, "archive_ratio")
    assert decision.detected_type == "application/zip"


def test_zip_with_too_many_entries(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = samples.zip_file({f"f{i}.txt": b"x" for i in range(6)})
    up = upload(grant, data, filename="m.zip", contentType="application/zip", profile="smallzip")
    assert_quarantined(up, blob_service, "archive_too_many_entries")


# -- replay, idempotence, concurrency -------------------------------------------------------------------

def test_replay_after_decision_is_refused_by_storage(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = upload(grant, data)
    assert up.decide().outcome is Outcome.ACCEPTED
    replay = up.put(samples.html())
    assert replay.status_code == 403
    tomb = blob_service.get_blob_client(containers(up.runtime)[0], up.name).get_blob_properties()
    assert tomb.size == len(records.TOMBSTONE_BODY) and records.is_tombstone(tomb.metadata)


def test_tombstone_trigger_and_repeats_are_no_ops(grant: Callable[..., Upload], blob_service: BlobServiceClient) -> None:
    up = upload(grant, samples.png())
    first = up.decide()
    etag = blob_service.get_blob_client(containers(up.runtime)[0], up.name).get_blob_properties().etag
    for _ in range(3):
        again = up.decide()
        assert (again.outcome, again.reason, again.upload_id) == (first.outcome, first.reason, first.upload_id)
    assert blob_service.get_blob_client(containers(up.runtime)[0], up.name).get_blob_properties().etag == etag


def test_concurrent_invocations_give_one_outcome(grant: Callable[..., Upload], blob_service: BlobServiceClient,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    up = upload(grant, samples.png())
    results: list[object] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            results.append(up.decide())
        except Exception as exc:  # noqa: BLE001 - the test asserts there are none
            results.append(exc)

    with caplog.at_level(logging.INFO, logger="valet.audit"):
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert all(isinstance(r, Decision) for r in results), results
    assert {(r.outcome, r.reason) for r in results} == {(Outcome.ACCEPTED, "ok")}  # type: ignore[union-attr]
    _, accepted, quarantine = containers(up.runtime)
    assert names_in(blob_service, accepted) == [up.name] and names_in(blob_service, quarantine) == []
    assert len([r for r in caplog.records if getattr(r, "event", None) == "decision"]) == 1


# -- storage failures -----------------------------------------------------------------------------------

class FailRequests:
    """Fails the requests ``match`` selects, as a dropped connection would. Installed as the storage
    client's ``raw_request_hook`` (storage clients ignore azure-core's ``per_retry_policies``)."""

    def __init__(self, match: Callable[[PipelineRequest], bool]) -> None:  # type: ignore[type-arg]
        self.match = match
        self.failed = 0

    def __call__(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        if self.match(request):
            self.failed += 1
            raise ServiceRequestError("injected failure")


def faulty_validation(runtime: Runtime, endpoint: StorageEndpoint, policy: FailRequests) -> Validation:
    service = BlobServiceClient(endpoint.blob_url, credential=EmulatorCredential(endpoint.blob_url),
                                connection_verify=endpoint.ca_bundle or True, retry_total=0,
                                raw_request_hook=policy)
    return Validation.from_settings(runtime.settings, service)


def test_destination_container_gone_keeps_upload_and_retry_completes(
    grant: Callable[..., Upload], runtime: Runtime, blob_service: BlobServiceClient
) -> None:
    up = upload(grant, samples.png())
    uploads, accepted, _ = containers(runtime)
    blob_service.delete_container(accepted)
    with pytest.raises(DecisionFailed):
        up.decide()
    source = blob_service.get_blob_client(uploads, up.name)
    assert source.download_blob().readall() == samples.png()  # not lost
    tags = source.get_blob_tags()
    assert (tags["valetstate"], tags["valetattempts"]) == ("error", "1")
    blob_service.create_container(accepted)
    assert up.decide().outcome is Outcome.ACCEPTED  # the host's retry
    assert names_in(blob_service, accepted) == [up.name]


def test_crash_between_copy_and_tombstone_is_finished_by_the_retry(
    grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient
) -> None:
    up = upload(grant, samples.png())
    uploads, accepted, _ = containers(runtime)
    policy = FailRequests(lambda r: r.http_request.method == "PUT"
                          and r.http_request.headers.get("x-ms-meta-valetstate") == "tombstone")
    with pytest.raises(DecisionFailed):
        faulty_validation(runtime, storage_endpoint, policy).validator.process(up.name)
    assert policy.failed == 1
    assert names_in(blob_service, accepted) == [up.name]  # the copy and its record exist
    source = blob_service.get_blob_client(uploads, up.name)
    assert not records.is_tombstone(source.get_blob_properties().metadata)
    assert runtime.validation.status.status(ALICE.partition, up.upload_id)["status"] == "accepted"
    decision = up.decide()  # the retry adopts the recorded decision and writes the tombstone
    assert decision.outcome is Outcome.ACCEPTED
    assert records.is_tombstone(source.get_blob_properties().metadata)
    assert up.put(samples.png()).status_code == 403


def test_storage_down_during_the_copy_is_retried(
    grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient
) -> None:
    up = upload(grant, samples.png())
    policy = FailRequests(lambda r: "x-ms-copy-source" in r.http_request.headers)
    with pytest.raises(DecisionFailed):
        faulty_validation(runtime, storage_endpoint, policy).validator.process(up.name)
    assert blob_service.get_blob_client(containers(runtime)[0], up.name).download_blob().readall() == samples.png()
    assert up.decide().outcome is Outcome.ACCEPTED


# -- status ---------------------------------------------------------------------------------------------

def get_status(runtime: Runtime, upload_id: str, caller: Caller = ALICE) -> tuple[int, dict[str, object]]:
    rt = Runtime(**{**vars(runtime), "authenticator": FixedCaller(caller)})
    response = api.upload_status(lambda: rt, func.HttpRequest(
        method="GET", url=f"https://valet.example/api/uploads/{upload_id}", body=b"",
        route_params={"uploadId": upload_id}))
    return response.status_code, json.loads(response.get_body())


def test_status_follows_the_upload(grant: Callable[..., Upload], runtime: Runtime) -> None:
    data = samples.png()
    up = grant(size=len(data))
    code, body = get_status(runtime, up.upload_id)
    # Pending until the upload window closes (renewals can bring the upload until then), not the first SAS.
    window_end = parse_upload_id(up.upload_id) + runtime.settings.upload_window
    assert (code, body["status"]) == (200, "pending")
    assert body["expiresOn"] == records.timestamp(window_end) and body["expiresOn"] >= str(up.grant["expiresOn"])
    up.put(data)
    assert get_status(runtime, up.upload_id)[1]["status"] == "pending"
    up.decide()
    code, body = get_status(runtime, up.upload_id)
    assert (code, body["status"]) == (200, "accepted") and "reason" not in body


def test_status_of_a_quarantined_upload_has_a_public_reason(grant: Callable[..., Upload], runtime: Runtime) -> None:
    up = upload(grant, samples.svg_with_script())
    up.decide()
    assert get_status(runtime, up.upload_id)[1] == {
        "uploadId": up.upload_id, "status": "quarantined", "reason": "content_not_allowed",
        "decidedAt": get_status(runtime, up.upload_id)[1]["decidedAt"]}


def test_status_for_another_caller_unknown_and_invalid_ids(grant: Callable[..., Upload], runtime: Runtime) -> None:
    up = upload(grant, samples.png())
    code, body = get_status(runtime, up.upload_id, BOB)
    assert (code, body["code"]) == (404, "upload_not_found")
    up.decide()
    assert get_status(runtime, up.upload_id, BOB)[0] == 404
    assert get_status(runtime, "not-an-id")[1]["code"] == "invalid_upload_id"
    assert get_status(runtime, "not-an-id")[0] == 400
    made_up = "019a0000-0000-7000-8000-000000000000"
    assert get_status(runtime, made_up)[0] == 404


def test_status_expired_when_nothing_was_uploaded_in_time(grant: Callable[..., Upload], runtime: Runtime) -> None:
    up = grant(size=10)
    s = runtime.settings
    later = StatusReader(blob_service=runtime.blob_service, uploads=s.storage.uploads_container,
                         accepted=s.storage.accepted_container, quarantine=s.storage.quarantine_container,
                         keys=s.grant_keys, sas_ttl=s.sas_ttl,
                         clock=lambda: datetime.now(UTC) + timedelta(minutes=10))
    assert later.status(ALICE.partition, up.upload_id)["status"] == "expired"


# -- tombstone sweep ------------------------------------------------------------------------------------

def test_sweep_removes_only_expired_tombstones_and_is_bounded(grant: Callable[..., Upload], runtime: Runtime,
                                                              blob_service: BlobServiceClient) -> None:
    ups = [upload(grant, samples.png()) for _ in range(3)]
    for up in ups:
        up.decide()
    pending = upload(grant, samples.png())  # not decided: never swept
    uploads, accepted, _ = containers(runtime)
    sealer = runtime.validation.validator.sealer
    assert sweep_tombstones(blob_service, uploads, limit=10, sealer=sealer) == 0  # not expired yet
    # Tombstones hold the name until the upload window closes (a renewed SAS could recreate it until then).
    future = lambda: datetime.now(UTC) + runtime.settings.upload_window + timedelta(hours=1)  # noqa: E731
    assert sweep_tombstones(blob_service, uploads, limit=2, clock=future, sealer=sealer) == 2
    assert sweep_tombstones(blob_service, uploads, limit=10, clock=future, sealer=sealer) == 1
    assert names_in(blob_service, uploads) == [pending.name]
    assert len(names_in(blob_service, accepted)) == 3
    assert get_status(runtime, ups[0].upload_id)[1]["status"] == "accepted"  # answered from the record
