"""The reconciler against a real Azurite: uploads made with real grants and real PUTs that no blob trigger
ever saw (the trigger is simply not called), decided by ``Validation.reconcile`` as the timer calls it;
and uploads whose every decision attempt fails (the accepted container is gone), until they need an
operator, who hands them back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline import PipelineRequest
from azure.storage.blob import BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.support import samples
from tests.support.fakes import FixedCaller
from valet import api
from valet.runtime import Runtime
from valet.settings import Settings
from valet.storage import RequestCounter
from valet.validation import records
from valet.validation.reconcile import Reconciler
from valet.validation.service import Validation
from valet.validation.store import DecisionFailed

pytestmark = pytest.mark.azurite

HOST_TRIES = 5


@pytest.fixture
def make_runtime(valet_env: dict[str, str]) -> Iterator[Callable[..., Runtime]]:
    made: list[Runtime] = []

    def make(**settings: str) -> Runtime:
        rt = Runtime.from_settings(Settings.from_env({**valet_env, "VALET_RECONCILE_AFTER_SECONDS": "0", **settings}),
                                   authenticator=FixedCaller())
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.blob_service.close()


def put_upload(rt: Runtime, endpoint: StorageEndpoint, data: bytes,
               extra: dict[str, str] | None = None) -> tuple[str, str]:
    """A real grant and a real PUT with its URL and headers; returns (upload id, blob name)."""
    body = {"filename": "cat.png", "contentType": "image/png", "size": len(data)}
    response = api.create_upload(lambda: rt, func.HttpRequest(
        method="POST", url="https://valet.example/api/uploads", headers={"content-type": "application/json"},
        body=json.dumps(body).encode()))
    assert response.status_code == 201, response.get_body()
    grant = json.loads(response.get_body())
    put = requests.put(grant["uploadUrl"], data=data, headers={**grant["headers"], **(extra or {})},
                       verify=endpoint.ca_bundle or True, timeout=30)
    assert put.status_code == 201, put.text
    container = rt.settings.storage.uploads_container
    return grant["uploadId"], urlsplit(grant["blobUri"]).path.split(f"/{container}/", 1)[1]


def status(rt: Runtime, upload_id: str) -> dict[str, object]:
    response = api.upload_status(lambda: rt, func.HttpRequest(
        method="GET", url=f"https://valet.example/api/uploads/{upload_id}", body=b"",
        route_params={"uploadId": upload_id}))
    assert response.status_code == 200, response.get_body()
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def test_an_upload_no_trigger_saw_is_decided_by_the_reconciler(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint
) -> None:
    rt = make_runtime()
    upload_id, _ = put_upload(rt, storage_endpoint, samples.png())
    assert status(rt, upload_id)["status"] == "pending"
    report = rt.validation.reconcile()
    assert (report.decided, report.failed, report.complete) == (1, 0, True)
    assert status(rt, upload_id)["status"] == "accepted"
    again = rt.validation.reconcile()  # the tombstone is listed and left alone: no decision, no extra read
    assert (again.listed, again.decided) == (1, 0)


def test_a_client_written_tombstone_does_not_hide_an_upload_from_the_reconciler(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint
) -> None:
    rt = make_runtime()
    upload_id, _ = put_upload(rt, storage_endpoint, samples.html(),
                              {"x-ms-meta-valetstate": "tombstone", "x-ms-meta-valetoutcome": "accepted"})
    assert rt.validation.reconcile().decided == 1  # no seal: not a tombstone of ours
    body = status(rt, upload_id)
    assert body["status"] == "quarantined", body


def test_error_tags_a_client_set_at_creation_neither_hide_its_upload_nor_count_as_attempts(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient
) -> None:
    rt = make_runtime(VALET_MAX_DECISION_ATTEMPTS="3")
    forged = f"{records.STATE}=error&{records.ATTEMPTS}=99&{records.ERROR_CODE}=forged"
    upload_id, name = put_upload(rt, storage_endpoint, samples.png(), {"x-ms-tags": forged})
    uploads = blob_service.get_container_client(rt.settings.storage.uploads_container)
    assert uploads.get_blob_client(name).get_blob_tags()[records.ATTEMPTS] == "99"  # the emulator kept them
    assert status(rt, upload_id)["status"] == "pending"  # not "needs_operator": the tags are not sealed
    report = rt.validation.reconcile()
    assert (report.decided, report.needs_operator) == (1, 0)
    assert status(rt, upload_id)["status"] == "accepted"


def test_a_failed_attempt_is_recorded_in_sealed_tags_and_a_forged_count_is_not_continued(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient
) -> None:
    rt = make_runtime()
    upload_id, name = put_upload(rt, storage_endpoint, samples.png(),
                                 {"x-ms-tags": f"{records.STATE}=error&{records.ATTEMPTS}=6&mine=kept"})
    broken = Validation.from_settings(rt.settings, BlobServiceClient(
        rt.settings.storage.account_url, credential=rt.blob_service.credential, retry_total=0,
        connection_verify=storage_endpoint.ca_bundle or True, raw_request_hook=FailCopies()))
    with pytest.raises(DecisionFailed):
        broken.on_blob(rt.settings.storage.uploads_container, name)
    tags = blob_service.get_container_client(rt.settings.storage.uploads_container).get_blob_client(
        name).get_blob_tags()
    assert tags[records.ATTEMPTS] == "1" and "valetseal" in tags and "mine" not in tags  # the app's record only
    assert status(rt, upload_id) == {"uploadId": upload_id, "status": "retrying", "attempts": 1}


def test_young_uploads_are_left_to_their_trigger(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint
) -> None:
    rt = make_runtime(VALET_RECONCILE_AFTER_SECONDS="600")
    upload_id, _ = put_upload(rt, storage_endpoint, samples.png())
    report = rt.validation.reconcile()
    assert (report.listed, report.decided) == (1, 0)
    assert status(rt, upload_id)["status"] == "pending"


def test_a_run_with_nothing_to_do_costs_one_listing_request(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint
) -> None:
    rt = make_runtime()
    put_upload(rt, storage_endpoint, samples.png())
    rt.validation.reconcile()  # decides it; from now on the container holds only its tombstone
    before = rt.storage_requests.count
    rt.validation.reconcile()
    assert rt.storage_requests.count - before == 1


def test_work_per_run_is_bounded_and_the_next_run_resumes(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient
) -> None:
    rt = make_runtime(VALET_RECONCILE_LIMIT="2")
    ids = [put_upload(rt, storage_endpoint, samples.png())[0] for _ in range(5)]
    decided = [rt.validation.reconcile().decided for _ in range(4)]
    assert decided == [2, 2, 1, 0]
    assert {status(rt, i)["status"] for i in ids} == {"accepted"}


def test_listing_pages_resume_where_the_last_run_stopped(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt = make_runtime()
    ids = [put_upload(rt, storage_endpoint, samples.png())[0] for _ in range(3)]
    monkeypatch.setattr("valet.validation.listing.PAGE_SIZE", 1)
    counter = RequestCounter()
    service = BlobServiceClient(rt.settings.storage.account_url, credential=rt.blob_service.credential,
                                connection_verify=storage_endpoint.ca_bundle or True, raw_request_hook=counter)
    reconciler = Reconciler(blob_service=service, uploads=rt.settings.storage.uploads_container,
                            decide=rt.validation.validator.process, is_decided=rt.validation.validator.is_tombstone,
                            error_tags=rt.validation.validator.tombstones.error_tags, min_age=timedelta(0), max_attempts=8,
                            limit=100, max_pages=1)
    reports = [reconciler.run() for _ in range(4)]
    assert [(r.pages, r.decided) for r in reports[:3]] == [(1, 1), (1, 1), (1, 1)]
    assert reports[3].decided == 0  # a new pass over the tombstones finds nothing
    assert {status(rt, i)["status"] for i in ids} == {"accepted"}


class FailCopies:
    """Fails every server-side copy, as a dropped connection would (a ``raw_request_hook``)."""

    def __call__(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        if "x-ms-copy-source" in request.http_request.headers:
            raise ServiceRequestError("injected failure")


def test_an_upload_that_exhausted_its_retries_needs_an_operator_who_hands_it_back(
    make_runtime: Callable[..., Runtime], storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient
) -> None:
    rt = make_runtime(VALET_MAX_DECISION_ATTEMPTS="7")
    upload_id, name = put_upload(rt, storage_endpoint, samples.png())
    counter = RequestCounter()

    def hook(request: PipelineRequest) -> None:  # type: ignore[type-arg]
        counter(request)
        FailCopies()(request)

    broken = Validation.from_settings(rt.settings, BlobServiceClient(
        rt.settings.storage.account_url, credential=rt.blob_service.credential, retry_total=0,
        connection_verify=storage_endpoint.ca_bundle or True, raw_request_hook=hook))
    for attempt in range(1, HOST_TRIES + 1):  # the host's tries, then the poison queue
        with pytest.raises(DecisionFailed):
            broken.on_blob(rt.settings.storage.uploads_container, name)
        assert status(rt, upload_id) == {"uploadId": upload_id, "status": "retrying", "attempts": attempt}

    first, second = broken.reconcile(), broken.reconcile()
    assert (first.failed, second.failed) == (1, 1)
    assert status(rt, upload_id) == {"uploadId": upload_id, "status": "needs_operator", "attempts": 7}
    before = counter.count
    third = broken.reconcile()  # given up: listed, counted, not tried again
    assert (third.failed, third.decided, third.needs_operator) == (0, 0, 1)
    assert counter.count - before == 1

    # The operator's path (docs/validation.md, "Failure behaviour"): fix the cause, then reset the upload's tags.
    uploads = blob_service.get_container_client(rt.settings.storage.uploads_container)
    assert uploads.get_blob_client(name).download_blob().readall() == samples.png()  # nothing was lost
    uploads.get_blob_client(name).set_blob_tags({records.ATTEMPTS: "0"})
    assert status(rt, upload_id)["status"] == "pending"
    assert rt.validation.reconcile().decided == 1
    assert status(rt, upload_id)["status"] == "accepted"
