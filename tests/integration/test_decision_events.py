"""Decision events against Azurite's queue service: the message a backend reads with the standard queue
SDK (Base64 text, as a Functions queue trigger expects by default), and what it holds and never holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from tests.conftest import StorageEndpoint, unique_name
from valet.settings import Settings
from valet.storage import EmulatorCredential, make_decision_queue
from valet.validation.events import QueueEvents, decision_message, decode, encode
from valet.validation.reasons import Outcome
from valet.validation.records import Decision

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
