"""Decision events against Azurite's queue service: the message a backend reads with the standard queue
SDK (Base64 text, as a Functions queue trigger expects by default), and what it holds and never holds."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import azure.functions as func
import pytest
import requests
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from tests.adversarial.kit import OnRequest
from tests.adversarial.test_5_races import tombstone_write
from tests.conftest import StorageEndpoint, unique_name
from tests.support import samples
from tests.support.fakes import FixedCaller
from valet import api
from valet.runtime import Runtime
from valet.settings import Settings
from valet.storage import EmulatorCredential, make_decision_queue
from valet.validation import records
from valet.validation.announce import EVENT_GRACE
from valet.validation.events import QueueEvents, decision_message, decode, encode
from valet.validation.reasons import Outcome
from valet.validation.records import Decision
from valet.validation.service import Validation
from valet.validation.store import DecisionFailed

pytestmark = pytest.mark.azurite

DECISION = Decision(outcome=Outcome.QUARANTINED, reason="content_not_allowed", detail="HTML named .png",
                    upload_id="01a20366-0000-7000-8000-000000000001", caller="https://issuer/|alice",
                    decided_at=datetime(2026, 12, 1, 12, 0, 7, tzinfo=UTC), profile="images",
                    declared_type="image/png", detected_type="text/html", size=82, sha256="ab" * 32)


@pytest.fixture
def queue(valet_env: dict[str, str], storage_endpoint: StorageEndpoint) -> Iterator[tuple[Settings, QueueClient]]:
    settings = Settings.from_env({**valet_env, "VALET_DECISION_QUEUE": unique_name("q")})
    storage = settings.storage
    client = make_decision_queue(storage, EmulatorCredential(storage.account_url))
    client.create_queue()
    yield settings, client
    client.delete_queue()
    client.close()


def test_a_decision_becomes_one_base64_json_message_a_standard_consumer_reads(
    queue: tuple[Settings, QueueClient], storage_endpoint: StorageEndpoint
) -> None:
    settings, client = queue
    QueueEvents(client).publish(DECISION, "quarantine", "t/c/2026/12/01/x.png")

    consumer = QueueClient(settings.storage.queue_url, settings.storage.decision_queue,
                           credential=EmulatorCredential(settings.storage.account_url),
                           connection_verify=storage_endpoint.ca_bundle or True,
                           message_decode_policy=TextBase64DecodePolicy())
    [message] = list(consumer.receive_messages(max_messages=32))
    assert json.loads(message.content) == {
        "uploadId": DECISION.upload_id, "status": "quarantined", "reason": "content_not_allowed",
        "caller": DECISION.caller, "blob": "quarantine/t/c/2026/12/01/x.png", "size": 82,
        "contentType": "text/html", "profile": "images", "sha256": "ab" * 32, "decidedAt": "2026-12-01T12:00:07Z",
    }
    assert message.expires_on is None or message.expires_on.year >= 9999  # never expires unread
    consumer.close()


def test_the_message_holds_no_credentials_and_round_trips() -> None:
    text = encode(decision_message(DECISION, "quarantine", "n.png"))
    assert decode(text)["uploadId"] == DECISION.upload_id
    raw = json.dumps(decode(text))
    for word in ("sig=", "valetgrant", "Bearer", "detail"):
        assert word not in raw
    accepted = decision_message(Decision(outcome=Outcome.ACCEPTED, reason="ok", detail="", upload_id="u",
                                         caller="c", decided_at=DECISION.decided_at), "accepted", "n.png")
    assert "reason" not in accepted and "sha256" not in accepted


# -- the validator announces its decisions ------------------------------------------------------------

def consumer(rt: Runtime, endpoint: StorageEndpoint) -> QueueClient:
    storage = rt.settings.storage
    return QueueClient(storage.queue_url, storage.decision_queue, credential=EmulatorCredential(storage.account_url),
                       connection_verify=endpoint.ca_bundle or True, message_decode_policy=TextBase64DecodePolicy())


def messages(rt: Runtime, endpoint: StorageEndpoint) -> list[dict[str, object]]:
    client = consumer(rt, endpoint)
    try:
        return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]
    finally:
        client.close()


def upload(rt: Runtime, endpoint: StorageEndpoint, data: bytes) -> tuple[str, str]:
    body = {"filename": "cat.png", "contentType": "image/png", "size": len(data)}
    response = api.create_upload(lambda: rt, func.HttpRequest(
        method="POST", url="https://valet.example/api/uploads", headers={"content-type": "application/json"},
        body=json.dumps(body).encode()))
    grant = json.loads(response.get_body())
    assert requests.put(grant["uploadUrl"], data=data, headers=grant["headers"], verify=endpoint.ca_bundle or True,
                        timeout=30).status_code == 201
    container = rt.settings.storage.uploads_container
    return grant["uploadId"], urlsplit(grant["blobUri"]).path.split(f"/{container}/", 1)[1]


def tombstone_tags(rt: Runtime, name: str) -> dict[str, str]:
    return rt.blob_service.get_blob_client(rt.settings.storage.uploads_container, name).get_blob_tags()


def test_an_accepted_upload_is_announced_once_after_it_is_readable(
    runtime: Runtime, storage_endpoint: StorageEndpoint
) -> None:
    data = samples.png()
    upload_id, name = upload(runtime, storage_endpoint, data)
    runtime.validation.on_blob(runtime.settings.storage.uploads_container, name)
    runtime.validation.on_blob(runtime.settings.storage.uploads_container, name)  # a duplicate delivery
    [event] = messages(runtime, storage_endpoint)
    assert event["uploadId"] == upload_id and event["status"] == "accepted"
    assert event["blob"] == f"{runtime.settings.storage.accepted_container}/{name}"
    assert (event["size"], event["contentType"], event["profile"]) == (len(data), "image/png", "images")
    assert "reason" not in event and isinstance(event["decidedAt"], str) and event["caller"]
    container, _, blob = str(event["blob"]).partition("/")
    assert runtime.blob_service.get_blob_client(container, blob).download_blob().readall() == data
    assert records.EVENT not in tombstone_tags(runtime, name)  # the marker went with the message


def test_concurrent_deliveries_give_one_message(runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    _, name = upload(runtime, storage_endpoint, samples.html())
    uploads = runtime.settings.storage.uploads_container
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            runtime.validation.on_blob(uploads, name)
        except DecisionFailed as exc:  # a loser may be told to retry; its retry finds the decision
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for _ in errors:
        runtime.validation.on_blob(uploads, name)
    [event] = messages(runtime, storage_endpoint)
    assert event["status"] == "quarantined" and event["reason"] == "active_content"  # the recorded reason


def test_an_event_that_could_not_be_sent_is_sent_by_a_later_delivery(
    runtime: Runtime, storage_endpoint: StorageEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id, name = upload(runtime, storage_endpoint, samples.png())
    uploads = runtime.settings.storage.uploads_container
    queue = consumer(runtime, storage_endpoint)
    queue.delete_queue()  # sending fails (QueueNotFound) after the decision is durable
    with pytest.raises(DecisionFailed):
        runtime.validation.on_blob(uploads, name)
    assert tombstone_tags(runtime, name)[records.EVENT] == records.PENDING  # decided, event owed
    queue.create_queue()
    queue.close()
    runtime.validation.on_blob(uploads, name)  # a retry at once: the writer may still be sending; not yet
    assert messages(runtime, storage_endpoint) == []
    later = datetime.now(UTC) + EVENT_GRACE + timedelta(seconds=5)
    monkeypatch.setattr(runtime.validation.validator, "_clock", lambda: later)
    runtime.validation.on_blob(uploads, name)  # the host's next retry (or the tombstone's own trigger)
    [event] = messages(runtime, storage_endpoint)
    assert (event["uploadId"], event["status"], event["size"]) == (upload_id, "accepted", len(samples.png()))
    assert records.EVENT not in tombstone_tags(runtime, name)
    before = runtime.storage_requests.count
    runtime.validation.on_blob(uploads, name)  # a later delivery: one properties read, no event
    assert runtime.storage_requests.count - before == 1
    assert len(messages(runtime, storage_endpoint)) == 1


def test_the_reconciler_sends_an_event_no_delivery_sent(
    valet_env: dict[str, str], storage_endpoint: StorageEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.from_settings(Settings.from_env({**valet_env, "VALET_RECONCILE_AFTER_SECONDS": "0"}),
                               authenticator=FixedCaller())
    upload_id, name = upload(rt, storage_endpoint, samples.png())
    queue = consumer(rt, storage_endpoint)
    queue.delete_queue()
    with pytest.raises(DecisionFailed):
        rt.validation.on_blob(rt.settings.storage.uploads_container, name)  # and then no delivery ever again
    queue.create_queue()
    queue.close()
    later = datetime.now(UTC) + EVENT_GRACE + timedelta(seconds=5)
    monkeypatch.setattr(rt.validation.validator, "_clock", lambda: later)
    report = rt.validation.reconcile()
    assert report.decided == 1
    [event] = messages(rt, storage_endpoint)
    assert (event["uploadId"], event["status"]) == (upload_id, "accepted")
    assert rt.validation.reconcile().decided == 0  # the marker is gone: nothing more to do
    rt.audit.close()
    rt.blob_service.close()


def test_a_later_malware_verdict_is_announced_as_a_quarantine(
    runtime: Runtime, storage_endpoint: StorageEndpoint
) -> None:
    upload_id, name = upload(runtime, storage_endpoint, samples.png())
    runtime.validation.on_blob(runtime.settings.storage.uploads_container, name)
    storage = runtime.settings.storage
    blob_uri = f"{storage.account_url}/{storage.accepted_container}/{name}"
    event = samples.malware_event(blob_uri)
    runtime.validation.on_event(str(event["eventType"]), event["data"])  # type: ignore[arg-type]
    runtime.validation.on_event(str(event["eventType"]), event["data"])  # Event Grid delivers twice
    accepted, quarantined = messages(runtime, storage_endpoint)
    assert accepted["status"] == "accepted"
    assert (quarantined["uploadId"], quarantined["status"], quarantined["reason"], quarantined["previousStatus"]) == (
        upload_id, "quarantined", "malware", "accepted")
    assert quarantined["blob"] == f"{storage.quarantine_container}/{name}"


# -- the event goes out while the tombstone is written: races between senders --------------------------

def hooked(rt: Runtime, endpoint: StorageEndpoint, before_tombstone: Callable[[], object]) -> Validation:
    """A second validator on the same storage and queue whose tombstone write waits for ``before_tombstone``."""
    service = BlobServiceClient(rt.settings.storage.account_url, credential=EmulatorCredential(endpoint.blob_url),
                                connection_verify=endpoint.ca_bundle or True,
                                raw_request_hook=OnRequest(tombstone_write, before_tombstone))
    return Validation.from_settings(rt.settings, service, rt.validation.validator.events)


def test_a_sender_that_loses_the_tombstone_race_leaves_one_message_and_no_marker(
    runtime: Runtime, storage_endpoint: StorageEndpoint
) -> None:
    """The invocation that stored the record sends; a concurrent delivery that found the record stored
    wins the tombstone (with the marker) but sends nothing; the sender, losing, removes the marker."""
    upload_id, name = upload(runtime, storage_endpoint, samples.png())
    concurrent = lambda: runtime.validation.validator.process(name)  # noqa: E731
    sender = hooked(runtime, storage_endpoint, concurrent)
    decision = sender.validator.process(name)
    assert decision is not None and decision.outcome is Outcome.ACCEPTED
    [event] = messages(runtime, storage_endpoint)
    assert (event["uploadId"], event["status"]) == (upload_id, "accepted")
    assert records.EVENT not in tombstone_tags(runtime, name)  # nothing left for the reconciler to repeat


def test_a_sender_that_loses_to_a_quarantine_announces_the_quarantine_last(
    runtime: Runtime, storage_endpoint: StorageEndpoint
) -> None:
    """The trigger accepted and announced it, then a Defender ``Malicious`` verdict won the tombstone: the
    accepted copy goes, and the last message says quarantined, whatever order the two senders' messages
    reached the queue in."""
    upload_id, name = upload(runtime, storage_endpoint, samples.png())
    uploads, accepted = runtime.settings.storage.uploads_container, runtime.settings.storage.accepted_container
    blob_uri = f"{runtime.settings.storage.account_url}/{uploads}/{name}"
    verdict = lambda: runtime.validation.on_event(  # noqa: E731
        "Microsoft.Security.MalwareScanningResult", {"blobUri": blob_uri, "scanResultType": "Malicious"})
    trigger = hooked(runtime, storage_endpoint, verdict)
    decision = trigger.validator.process(name)
    assert decision is not None and decision.outcome is Outcome.QUARANTINED
    sent = [(m["uploadId"], m["status"]) for m in messages(runtime, storage_endpoint)]
    assert sorted(sent) == [(upload_id, "accepted"), (upload_id, "quarantined"), (upload_id, "quarantined")]
    assert sent[-1] == (upload_id, "quarantined")
    assert sent.index((upload_id, "accepted")) < len(sent) - 1
    assert not runtime.blob_service.get_blob_client(accepted, name).exists()
    assert records.EVENT not in tombstone_tags(runtime, name)


def test_an_event_sent_whose_marker_could_not_be_removed_is_not_sent_again(
    runtime: Runtime, storage_endpoint: StorageEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage goes away between the event and the removal of the tombstone's marker (found by
    bench/burst.py: one upload in 300 got two events). The event is on the queue; the delivery fails; the
    next one in this process (here the reconciler's, once the grace is over) removes the marker instead of
    sending the event again."""
    from azure.core.exceptions import ServiceRequestError

    upload_id, name = upload(runtime, storage_endpoint, samples.png())
    failing = [True]

    def storage_goes_away(request: object) -> None:
        http = request.http_request  # type: ignore[attr-defined]
        if failing[0] and http.method == "PUT" and "comp=tags" in http.url:
            raise ServiceRequestError("connection refused")

    service = BlobServiceClient(runtime.settings.storage.account_url, retry_total=0,
                                credential=EmulatorCredential(storage_endpoint.blob_url),
                                connection_verify=storage_endpoint.ca_bundle or True, raw_request_hook=storage_goes_away)
    validation = Validation.from_settings(runtime.settings, service, runtime.validation.validator.events)
    uploads = runtime.settings.storage.uploads_container
    with pytest.raises(DecisionFailed):
        validation.on_blob(uploads, name)
    assert tombstone_tags(runtime, name)[records.EVENT] == records.PENDING  # the marker stayed
    [event] = messages(runtime, storage_endpoint)  # but the event is out
    assert event["uploadId"] == upload_id
    failing[0] = False  # storage is back
    later = datetime.now(UTC) + EVENT_GRACE + timedelta(seconds=5)
    monkeypatch.setattr(validation.validator, "_clock", lambda: later)
    validation.on_blob(uploads, name)  # what the reconciler (or a late trigger) does with the tombstone
    assert records.EVENT not in tombstone_tags(runtime, name)
    assert [m["uploadId"] for m in messages(runtime, storage_endpoint)] == [upload_id]  # still one event
