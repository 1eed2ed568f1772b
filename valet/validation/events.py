"""Decision events: one message per decision on a Storage queue, for the owner's backend.

The message is JSON (:func:`decision_message`), Base64-encoded UTF-8 text on the queue
(:func:`encode`): that is what an Azure Functions queue trigger expects by default (extension 5.x
``messageEncoding: base64``), and every queue SDK reads it with one option (Python
``TextBase64DecodePolicy``, .NET ``QueueMessageEncoding.Base64``, JS ``Buffer.from(text, "base64")``,
Java ``QueueMessageEncoding.BASE64``). Messages never expire (time to live ``-1``): one unread for a week is
still there. A message carries ids, the outcome and what was verified; never a SAS, a token or a key.

Delivery is at least once (see :class:`~valet.validation.validator.Validator`): consumers de-duplicate
by ``uploadId`` + ``status``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from typing import Any, Protocol

from azure.storage.queue import QueueClient

from valet.validation import records
from valet.validation.reasons import Outcome
from valet.validation.records import Decision

NEVER_EXPIRES = -1


def decision_message(decision: Decision, container: str, name: str) -> dict[str, Any]:
    """The event for ``decision`` of the upload now at ``container/name`` (its destination copy)."""
    message: dict[str, Any] = {
        "uploadId": decision.upload_id,
        "status": decision.outcome.value,
        "caller": decision.caller,
        "blob": f"{container}/{name}",
        "size": decision.size,
        "contentType": decision.detected_type or None,
        "profile": decision.profile or None,
        "decidedAt": records.timestamp(decision.decided_at),
    }
    if decision.outcome is Outcome.QUARANTINED:
        message["reason"] = decision.reason
    if decision.previous:
        message["previousStatus"] = decision.previous  # a later verdict moved an accepted upload
    if decision.sha256:
        message["sha256"] = decision.sha256
    return message


def encode(message: dict[str, Any]) -> str:
    text = json.dumps(message, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return base64.b64encode(text.encode()).decode("ascii")


def decode(text: str) -> dict[str, Any]:
    """The inverse of :func:`encode`, for consumers and tests."""
    doc = json.loads(base64.b64decode(text, validate=True))
    if not isinstance(doc, dict):
        raise ValueError("a decision event is a JSON object")
    return doc


class DecisionEvents(Protocol):
    def publish(self, decision: Decision, container: str, name: str) -> None:
        """Put one message for the decision; raises :class:`~azure.core.exceptions.AzureError` on failure."""


class QueueEvents:
    """The decision queue in the uploads account, written with the app's identity."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue  # created by the deployment (infra/) and by valet dev; never by the app

    def publish(self, decision: Decision, container: str, name: str) -> None:
        self._queue.send_message(encode(decision_message(decision, container, name)), time_to_live=NEVER_EXPIRES)


class NoEvents:
    """For tests and tools that decide uploads without telling anyone."""

    def publish(self, decision: Decision, container: str, name: str) -> None:
        return None


class SentLedger:
    """Decision events this process put on the queue whose tombstone still carries the "event owed" marker,
    because removing it failed (storage went away between the two requests). Whoever meets that marker
    next in this process (a retried delivery, the reconciler) removes it instead of sending the event
    again. Per process and bounded (the oldest entries are forgotten first): another instance cannot
    know, and repeats the event, so delivery stays at least once."""

    def __init__(self, limit: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def remember(self, key: str) -> None:
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self._limit:
                self._keys.popitem(last=False)

    def sent(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def forget(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)


SENT = SentLedger()  # one per process, like the sender pool: deliveries and the reconciler share it
