"""Quarantine review against Azurite: real uploads decided by the validator, real read SAS, real copies,
the decision queue and the audit container. Each rule of issue 30 has its test here."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest
import requests
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from tests.conftest import StorageEndpoint
from tests.support import samples
from tests.support.fakes import ALICE, FixedCaller
from valet import api
from valet.audit import AuditTrail
from valet.caller import Caller
from valet.errors import Unauthenticated
from valet.review.actions import PURGED_BODY
from valet.runtime import Runtime
from valet.settings import Settings
from valet.storage import EmulatorCredential

pytestmark = pytest.mark.azurite

REVIEWER = Caller(kind="bearer", issuer=ALICE.issuer, subject="cccccccc-0000-0000-0000-000000000003",
                  tenant=ALICE.tenant, roles=frozenset({"Uploads.Review"}))
ALICE_REVIEWER = Caller(**{**vars(ALICE), "roles": ALICE.roles | {"Uploads.Review"}})
KEY_REVIEWER = Caller(kind="apikey", issuer="apikey", subject="ops", tenant="t1", key_id="K1d0123456789",
                      scopes=frozenset({"Uploads.Review"}))
NOBODY = Caller(kind="bearer", issuer=ALICE.issuer, subject="dddddddd-0000-0000-0000-000000000004",
                tenant=ALICE.tenant, roles=frozenset({"Uploads.Write"}))


class Anonymous(FixedCaller):
    def identify(self, request: object) -> Caller:
        raise Unauthenticated("no credentials", code="missing_credentials")


@dataclass
class Stack:
    runtime: Runtime
    audit: AuditTrail
    audit_container: ContainerClient
    endpoint: StorageEndpoint
    steps: list[Callable[[str], None]]

    def review(self, caller: Caller = REVIEWER, authenticator: Any = None) -> Runtime:
        """The app's runtime as ``caller`` sees it (or through ``authenticator``)."""
        auth = authenticator or FixedCaller(caller)
        rt = self.runtime

        def step(name: str) -> None:
            for hook in self.steps:
                hook(name)

        rt.review.actions.step = step
        return Runtime(**{**vars(rt), "authenticator": auth, "review": replace(rt.review, authenticator=auth)})

    def upload(self, data: bytes, filename: str = "cat.png") -> tuple[str, str]:
        body = {"filename": filename, "contentType": "image/png", "size": len(data)}
        response = api.create_upload(lambda: self.runtime, func.HttpRequest(
            method="POST", url="https://valet.example/api/uploads", headers={"content-type": "application/json"},
            body=json.dumps(body).encode()))
        grant = json.loads(response.get_body())
        assert requests.put(grant["uploadUrl"], data=data, headers=grant["headers"],
                            verify=self.endpoint.ca_bundle or True, timeout=30).status_code == 201
        container = self.runtime.settings.storage.uploads_container
        return grant["uploadId"], urlsplit(grant["blobUri"]).path.split(f"/{container}/", 1)[1]

    def quarantined(self) -> tuple[str, str]:
        upload_id, name = self.upload(samples.html())  # HTML declared as PNG: quarantined, bytes kept
        decision = self.runtime.validation.on_blob(self.runtime.settings.storage.uploads_container, name)
        assert decision is not None and decision.outcome.value == "quarantined"
        return upload_id, name

    def malware(self) -> tuple[str, str]:
        upload_id, name = self.upload(samples.png())
        self.verdict(name)  # Defender's verdict before the trigger: decided with it
        return upload_id, name

    def verdict(self, name: str) -> None:
        storage = self.runtime.settings.storage
        event = samples.malware_event(f"{storage.account_url}/{storage.uploads_container}/{name}")
        self.runtime.validation.on_event(str(event["eventType"]), event["data"])  # type: ignore[arg-type]

    def status(self, upload_id: str) -> dict[str, Any]:
        response = api.upload_status(lambda: self.runtime, func.HttpRequest(
            method="GET", url=f"https://valet.example/api/uploads/{upload_id}", body=b"",
            route_params={"uploadId": upload_id}))
        doc: dict[str, Any] = json.loads(response.get_body())
        return doc

    def events(self) -> list[dict[str, Any]]:
        storage = self.runtime.settings.storage
        client = QueueClient(storage.queue_url, storage.decision_queue,
                             credential=EmulatorCredential(storage.account_url),
                             connection_verify=self.endpoint.ca_bundle or True,
                             message_decode_policy=TextBase64DecodePolicy())
        try:
            return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]
        finally:
            client.close()

    def audit_records(self, upload_id: str) -> list[dict[str, Any]]:
        assert self.audit.flusher is not None
        self.audit.flusher.flush()
        text = b"".join(self.audit_container.get_blob_client(b.name).download_blob().readall()
                        for b in self.audit_container.list_blobs())
        return [doc for doc in map(json.loads, text.splitlines()) if doc.get("uploadId") == upload_id]


@pytest.fixture
def stack(valet_env: dict[str, str], storage_endpoint: StorageEndpoint,
          blob_service: BlobServiceClient) -> Iterator[Stack]:
    rt = Runtime.from_settings(Settings.from_env(valet_env), authenticator=FixedCaller())
    container = blob_service.get_container_client(valet_env["VALET_AUDIT_CONTAINER"])
    yield Stack(rt, rt.audit, container, storage_endpoint, [])
    rt.audit.close()
    rt.blob_service.close()


def call(route: str, runtime: Runtime, *, method: str = "GET", upload_id: str = "",
         params: dict[str, str] | None = None, body: dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], func.HttpResponse]:
    """A request through the app's route table (admission, problem mapping), as function_app sends it."""
    request = func.HttpRequest(method=method, url="https://valet.example/api/review/x", params=params or {},
                               route_params={"uploadId": upload_id} if upload_id else {},
                               headers={"content-type": "application/json", **(headers or {})},
                               body=json.dumps(body).encode() if body is not None else b"")
    response = api.review(route)(lambda: runtime, request)
    return response.status_code, json.loads(response.get_body() or b"{}"), response


def release(review: Runtime, upload_id: str, reason: str = "false positive: a test page") -> tuple[int, dict[str, Any]]:
    status, body, _ = call("review_release", review, method="POST", upload_id=upload_id,
                           body={"reason": reason})
    return status, body


def purge(review: Runtime, upload_id: str, reason: str = "abusive content") -> tuple[int, dict[str, Any]]:
    status, body, _ = call("review_purge", review, method="POST", upload_id=upload_id,
                           body={"reason": reason})
    return status, body


# -- reading the quarantine -----------------------------------------------------------------------------

def test_the_list_is_newest_first_filtered_and_paged(stack: Stack) -> None:
    first, _ = stack.quarantined()
    time.sleep(1.05)  # records say when to the second
    second, _ = stack.quarantined()
    time.sleep(1.05)
    malware, _ = stack.malware()
    review = stack.review()
    status, body, _ = call("review_quarantine", review)
    assert status == 200 and [i["uploadId"] for i in body["items"]] == [malware, second, first]
    item = body["items"][1]
    assert (item["caller"], item["reason"], item["kept"], item["review"], item["own"]) == (
        ALICE.id, "active_content", "bytes", {"state": "open"}, False)
    assert item["declaredType"] == "image/png" and item["size"] == len(samples.html())
    _, body, _ = call("review_quarantine", review, params={"reason": "malware"})
    assert [i["uploadId"] for i in body["items"]] == [malware]
    _, body, _ = call("review_quarantine", review, params={"caller": "https://issuer.example#nobody"})
    assert body["items"] == []
    _, body, _ = call("review_quarantine", review, params={"until": "2020-01-01T00:00:00Z"})
    assert body["items"] == []
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, page1, _ = call("review_quarantine", review, params={"limit": "2", "since": since})
    _, page2, _ = call("review_quarantine", review,
                       params={"limit": "2", "since": since, "continuation": page1["continuation"]})
    assert [i["uploadId"] for i in page1["items"] + page2["items"]] == [malware, second, first]
    assert page2["continuation"] is None
    for bad in ({"since": "yesterday"}, {"limit": "0"}, {"continuation": "nonsense"},
                {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}):
        status, body, _ = call("review_quarantine", review, params=bad)
        assert status == 400 and body["code"] in ("invalid_query", "invalid_continuation"), bad


def test_a_record_comes_with_a_read_url_that_can_only_download(stack: Stack) -> None:
    upload_id, name = stack.quarantined()
    status, body, response = call("review_record", stack.review(), upload_id=upload_id)
    assert status == 200 and body["blob"] == name and body["kept"] == "bytes"
    assert response.headers["ETag"].strip('"') == body["etag"].strip('"')
    url = body["readUrl"]
    query = parse_qs(urlsplit(url).query)
    assert (query["sp"], query["sr"], query["spr"]) == (["r"], ["b"], ["https"])
    got = requests.get(url, verify=stack.endpoint.ca_bundle, timeout=30)
    assert got.status_code == 200 and got.content == samples.html()
    assert got.headers["Content-Type"] == "application/octet-stream"  # never rendered as the HTML it is
    assert got.headers["Content-Disposition"] == f'attachment; filename="{upload_id}.bin"'
    assert requests.put(url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, verify=stack.endpoint.ca_bundle,
                        timeout=30).status_code == 403
    assert requests.delete(url, verify=stack.endpoint.ca_bundle, timeout=30).status_code == 403
    [view] = [r for r in stack.audit_records(upload_id) if r["action"] == "review.view"]
    assert view["actor"]["caller"] == REVIEWER.id and view["owner"] == ALICE.id and view["outcome"] == "read_url"
    assert "sig=" not in json.dumps(view)


def test_an_unknown_upload_is_404_and_a_bad_id_400(stack: Stack) -> None:
    status, body, _ = call("review_record", stack.review(),
                           upload_id="01900000-0000-7000-8000-000000000000")
    assert (status, body["code"]) == (404, "review_not_found")
    status, body, _ = call("review_record", stack.review(), upload_id="nope")
    assert status == 400


# -- who may review --------------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["no role", "no credentials"])
def test_nobody_without_the_review_role_sees_the_review_routes(stack: Stack, who: str) -> None:
    upload_id, _ = stack.quarantined()
    review = stack.review(NOBODY) if who == "no role" else stack.review(authenticator=Anonymous())
    for handler, method, body in (("review_quarantine", "GET", None),
                                  ("review_record", "GET", None),
                                  ("review_release", "POST", {"reason": "let me"}),
                                  ("review_purge", "POST", {"reason": "let me"}),
                                  ("review_audit", "GET", None)):
        status, doc, _ = call(handler, review, method=method, upload_id=upload_id, body=body)
        assert (status, doc["code"]) == (404, "not_found"), handler
    assert stack.status(upload_id)["status"] == "quarantined"


def test_a_reviewer_never_reviews_their_own_upload(stack: Stack) -> None:
    upload_id, _ = stack.quarantined()  # ALICE's upload
    review = stack.review(ALICE_REVIEWER)
    for handler, method, body in (("review_record", "GET", None),
                                  ("review_release", "POST", {"reason": "it is fine, trust me"}),
                                  ("review_purge", "POST", {"reason": "hide it"})):
        status, doc, _ = call(handler, review, method=method, upload_id=upload_id, body=body)
        assert (status, doc["code"]) == (403, "own_upload"), handler
    _, listing, _ = call("review_quarantine", review)
    assert [i["own"] for i in listing["items"]] == [True]
    assert stack.status(upload_id)["status"] == "quarantined"
    refused = [r for r in stack.audit_records(upload_id) if r.get("outcome") == "refused"]
    assert sorted(r["action"] for r in refused) == ["review.purge", "review.release", "review.view"]
    assert all(r["reason"] == "own_upload" and r["actor"]["caller"] == ALICE.id for r in refused)


def test_an_api_key_can_carry_the_review_role(stack: Stack) -> None:
    upload_id, _ = stack.quarantined()
    status, body = release(stack.review(KEY_REVIEWER), upload_id)
    assert status == 200 and body["reviewedBy"] == KEY_REVIEWER.id
    [record] = [r for r in stack.audit_records(upload_id) if r["action"] == "review.release"]
    assert record["actor"]["keyId"] == "K1d0123456789" and record["actor"]["kind"] == "apikey"


# -- release -------------------------------------------------------------------------------------------

def test_release_copies_the_decided_bytes_to_accepted_once_with_a_record_and_one_event(stack: Stack) -> None:
    upload_id, name = stack.quarantined()
    review = stack.review()
    status, body = release(review, upload_id)
    assert status == 200 and (body["review"], body["status"], body["reviewedBy"]) == (
        "released", "accepted", REVIEWER.id)
    storage = stack.runtime.settings.storage
    accepted = stack.runtime.blob_service.get_blob_client(storage.accepted_container, name)
    assert accepted.download_blob().readall() == samples.html()
    meta = accepted.get_blob_properties().metadata
    assert meta["valetoutcome"] == "accepted" and meta["valetprevious"] == "quarantined"
    assert meta["valetreviewedby"] and "false positive" in meta["valetreviewreason"]
    assert accepted.get_blob_tags() == {"valetoutcome": "accepted", "valetreason": "active_content"}  # no marker
    state = stack.status(upload_id)
    assert state["status"] == "accepted" and state["reviewed"]["previousStatus"] == "quarantined"
    assert state["reviewed"]["reviewedAt"]
    # Idempotent: a second release (another reviewer too) changes nothing and sends nothing.
    assert release(stack.review(KEY_REVIEWER), upload_id)[0] == 200
    events = [e for e in stack.events() if e["uploadId"] == upload_id]
    assert [(e["status"], e.get("previousStatus")) for e in events] == [("quarantined", None),
                                                                        ("accepted", "quarantined")]
    _, record, _ = call("review_record", review, upload_id=upload_id)
    assert record["review"]["state"] == "released" and record["review"]["by"] == REVIEWER.id
    [first, *_] = [r for r in stack.audit_records(upload_id) if r["action"] == "review.release"]
    assert (first["outcome"], first["reason"], first["owner"]) == ("released", "false positive: a test page",
                                                                   ALICE.id)
    assert first["data"]["sha256"] == record["sha256"]


def test_release_needs_a_bounded_reason(stack: Stack) -> None:
    upload_id, _ = stack.quarantined()
    review = stack.review()
    for body in ({}, {"reason": ""}, {"reason": "  "}, {"reason": "x" * 501}, {"reason": "bad\u202ereason"},
                 {"reason": 3}):
        status, doc, _ = call("review_release", review, method="POST", upload_id=upload_id, body=body)
        assert status == 400 and doc["code"] in ("reason_required", "invalid_reason"), body
    assert stack.status(upload_id)["status"] == "quarantined"


def test_a_malware_verdict_is_never_released(stack: Stack) -> None:
    upload_id, name = stack.malware()
    status, body = release(stack.review(), upload_id)
    assert (status, body["code"]) == (409, "malware_verdict")
    storage = stack.runtime.settings.storage
    assert not stack.runtime.blob_service.get_blob_client(storage.accepted_container, name).exists()
    assert stack.status(upload_id)["status"] == "quarantined"
    [refused] = [r for r in stack.audit_records(upload_id) if r["action"] == "review.release"]
    assert (refused["outcome"], refused["detail"]) == ("refused", "malware_verdict")


def assert_quarantined_by_the_verdict(stack: Stack, upload_id: str, name: str) -> None:
    """No accepted copy; the status and the quarantine record say malware, with no review left on it."""
    storage = stack.runtime.settings.storage
    assert not stack.runtime.blob_service.get_blob_client(storage.accepted_container, name).exists()
    state = stack.status(upload_id)
    assert (state["status"], state["reason"]) == ("quarantined", "malware_detected")
    record = stack.runtime.blob_service.get_blob_client(storage.quarantine_container, name).get_blob_properties()
    assert record.metadata["valetreason"] == "malware" and "valetreview" not in record.metadata


def test_a_release_racing_a_late_defender_verdict_loses_to_the_verdict(stack: Stack) -> None:
    upload_id, name = stack.quarantined()
    stack.steps.append(lambda step: stack.verdict(name) if step == "copied" else None)
    status, body = release(stack.review(), upload_id)
    assert (status, body["code"]) == (409, "malware_verdict")
    assert_quarantined_by_the_verdict(stack, upload_id, name)
    assert not [e for e in stack.events() if e["uploadId"] == upload_id and e["status"] == "accepted"]
    stack.steps.clear()
    assert release(stack.review(), upload_id)[1]["code"] == "malware_verdict"  # and it stays that way


def test_a_verdict_for_an_upload_already_in_quarantine_makes_it_unreleasable(stack: Stack) -> None:
    upload_id, name = stack.quarantined()  # active content: releasable, until Defender says otherwise
    stack.verdict(name)
    assert (stack.status(upload_id)["reason"]) == "malware_detected"
    status, body = release(stack.review(), upload_id)
    assert (status, body["code"]) == (409, "malware_verdict")
    last = [e for e in stack.events() if e["uploadId"] == upload_id][-1]
    assert (last["status"], last["reason"]) == ("quarantined", "malware")
    assert [r["reason"] for r in stack.audit_records(upload_id) if r["action"] == "decision"] == [
        "active_content", "malware"]


def test_a_verdict_after_a_finished_release_wins_and_is_announced(stack: Stack) -> None:
    upload_id, name = stack.quarantined()
    assert release(stack.review(), upload_id)[0] == 200
    assert stack.status(upload_id)["status"] == "accepted"
    stack.verdict(name)
    assert_quarantined_by_the_verdict(stack, upload_id, name)
    events = [(e["status"], e.get("previousStatus")) for e in stack.events() if e["uploadId"] == upload_id]
    assert events == [("quarantined", None), ("accepted", "quarantined"), ("quarantined", "accepted")]
    assert release(stack.review(), upload_id)[1]["code"] == "malware_verdict"


def test_release_checks_the_bytes_are_the_decided_ones(stack: Stack) -> None:
    upload_id, name = stack.quarantined()
    storage = stack.runtime.settings.storage
    q = stack.runtime.blob_service.get_blob_client(storage.quarantine_container, name)
    _, record, _ = call("review_record", stack.review(), upload_id=upload_id)
    status, doc, _ = call("review_release", stack.review(), method="POST", upload_id=upload_id,
                          body={"reason": "looked fine"}, headers={"If-Match": '"0x8DEADBEEF"'})
    assert (status, doc["code"]) == (412, "record_changed")
    meta = q.get_blob_properties().metadata
    meta["valetsha256"] = "0" * 64  # the decided hash; the bytes below are not those
    q.upload_blob(b"other bytes", overwrite=True, metadata=meta,
                  content_settings=ContentSettings(content_type="application/octet-stream"))
    status, doc = release(stack.review(), upload_id)
    assert (status, doc["code"]) == (409, "content_changed")
    assert record["etag"] and stack.status(upload_id)["status"] == "quarantined"


# -- purge ---------------------------------------------------------------------------------------------

def test_purge_deletes_the_bytes_keeps_the_record_and_the_status(stack: Stack) -> None:
    upload_id, name = stack.quarantined()
    review = stack.review()
    status, body = purge(review, upload_id)
    assert status == 200 and (body["review"], body["status"]) == ("purged", "quarantined")
    storage = stack.runtime.settings.storage
    q = stack.runtime.blob_service.get_blob_client(storage.quarantine_container, name)
    assert q.download_blob().readall() == PURGED_BODY
    assert q.get_blob_properties().metadata["valetreview"] == "purged"
    assert stack.status(upload_id)["status"] == "quarantined"
    _, record, _ = call("review_record", review, upload_id=upload_id)
    assert record["kept"] == "none" and "readUrl" not in record and record["review"]["reason"] == "abusive content"
    assert purge(review, upload_id)[0] == 200  # idempotent
    assert release(review, upload_id)[1]["code"] == "upload_purged"
    actions = [(r["action"], r.get("outcome")) for r in stack.audit_records(upload_id)]
    assert ("review.purge", "purged") in actions and ("review.release", "refused") in actions


def test_a_released_upload_cannot_be_purged(stack: Stack) -> None:
    upload_id, _ = stack.quarantined()
    assert release(stack.review(), upload_id)[0] == 200
    status, body = purge(stack.review(), upload_id)
    assert (status, body["code"]) == (409, "upload_released")


# -- the audit route -----------------------------------------------------------------------------------

def test_the_audit_route_reads_the_trail_by_upload_and_caller(stack: Stack) -> None:
    upload_id, _ = stack.quarantined()  # a grant (buffered) and a decision (appended with it)
    review = stack.review()
    assert release(review, upload_id)[0] == 200
    assert stack.audit.flusher is not None
    stack.audit.flusher.flush()
    status, body, _ = call("review_audit", review, params={"upload": upload_id})
    assert status == 200 and [r["action"] for r in body["records"]] == ["review.release", "decision", "grant"]
    grant, decision = body["records"][2], body["records"][1]
    assert grant["actor"]["caller"] == ALICE.id and grant["actor"]["clientIp"] == "127.0.0.1"
    assert (decision["actor"]["caller"], decision["owner"], decision["outcome"]) == (
        "valet:validator", ALICE.id, "quarantined")
    _, by_reviewer, _ = call("review_audit", review, params={"caller": REVIEWER.id})
    assert [r["action"] for r in by_reviewer["records"]] == ["review.release"]
    _, reviews, _ = call("review_audit", review, params={"action": "review", "upload": upload_id})
    assert [r["action"] for r in reviews["records"]] == ["review.release"]
    status, doc, _ = call("review_audit", review, params={"since": "bad"})
    assert (status, doc["code"]) == (400, "invalid_query")
