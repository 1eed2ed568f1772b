"""The validator while storage fails: the registered ``validate_upload`` function is called as the blob
trigger calls it, with a client for the blob, and every storage request of the app goes through the
fault proxy. Uploads are made with real grants and real PUTs straight to Azurite; what is where is
checked straight against Azurite too.

The host's side is simulated: an invocation that raises is retried (up to 5 tries for the blob trigger,
then the poison queue), so the properties that matter are that a failed invocation raises, loses
nothing, duplicates nothing, and that a later invocation ends in exactly one destination with the right
decision and the tombstone in place; replays after that change nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from urllib.parse import urlsplit

import azure.functions as func
import pytest
import requests
from azure.storage.blob import BlobClient, BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.faults.conftest import apply
from tests.support import samples
from tests.support.fakes import FixedCaller
from tests.support.faultproxy import Fault, FaultProxy, Request
from tests.support.functions import fresh_app, user_function
from valet import api
from valet.runtime import Runtime
from valet.settings import Settings
from valet.storage import EmulatorCredential
from valet.validation import records
from valet.validation.store import DecisionFailed

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(120)]

HOST_TRIES = 5  # the blob trigger's tries before the message goes to the poison queue


def blob_requests(request: Request) -> bool:
    """Everything but the app's Get User Delegation Key (its warm-up at start-up runs in the background)."""
    return "comp=userdelegationkey" not in request.path


def copy_requests(request: Request) -> bool:
    return "x-ms-copy-source" in request.headers


def tombstone_writes(request: Request) -> bool:
    return request.method == "PUT" and request.headers.get("x-ms-meta-valetstate") == records.TOMBSTONE


class After:
    """Matches every request after the first one ``trigger`` matches ("storage dies right after ...")."""

    def __init__(self, trigger: Callable[[Request], bool]) -> None:
        self.trigger, self.fired = trigger, False

    def __call__(self, request: Request) -> bool:
        if self.fired:
            return True
        self.fired = self.trigger(request)
        return False


@dataclass
class Where:
    """Where an upload is, read straight from Azurite."""

    source: bytes | None
    tombstone: bool
    tags: dict[str, str]
    accepted: list[str]
    quarantine: list[str]


@dataclass
class Upload:
    name: str
    data: bytes


@dataclass
class Stage:
    app: ModuleType
    proxy: FaultProxy
    direct: Runtime
    blob_service: BlobServiceClient
    ca: str | None

    @property
    def uploads(self) -> str:
        return self.direct.settings.storage.uploads_container

    def upload(self, data: bytes, content_type: str = "image/png") -> Upload:
        body = {"filename": "f.png", "contentType": content_type, "size": len(data)}
        response = api.create_upload(lambda: self.direct, func.HttpRequest(
            method="POST", url="https://valet.example/api/uploads", headers={"content-type": "application/json"},
            body=json.dumps(body).encode()))
        assert response.status_code == 201
        grant = json.loads(response.get_body())
        put = requests.put(grant["uploadUrl"], data=data, headers=grant["headers"], verify=self.ca or True, timeout=30)
        assert put.status_code == 201
        return Upload(urlsplit(grant["blobUri"]).path.split(f"/{self.uploads}/", 1)[1], data)

    def trigger(self, up: Upload) -> None:
        """One invocation of the registered function, as the host makes it (a client for the blob)."""
        client = BlobClient(self.proxy.url, self.uploads, up.name, credential=EmulatorCredential(self.proxy.url),
                            connection_verify=self.proxy.ca_bundle)
        user_function(self.app, "validate_upload")(client)

    def where(self, up: Upload) -> Where:
        s = self.direct.settings.storage
        source = self.blob_service.get_blob_client(s.uploads_container, up.name)
        props = source.get_blob_properties() if source.exists() else None
        listing = lambda c: [b.name for b in self.blob_service.get_container_client(c).list_blobs()]  # noqa: E731
        return Where(
            source=None if props is None else source.download_blob().readall(),
            tombstone=props is not None and records.is_tombstone(props.metadata),
            tags={} if props is None else source.get_blob_tags(),
            accepted=listing(s.accepted_container),
            quarantine=listing(s.quarantine_container),
        )

    def assert_untouched(self, up: Upload) -> Where:
        """Still in uploads with its bytes (maybe with the error state), in no destination."""
        where = self.where(up)
        assert where.source == up.data and not where.tombstone
        assert where.accepted == [] and where.quarantine == []
        return where

    def assert_decided(self, up: Upload, outcome: str, reason: str) -> None:
        """In exactly one destination with the right record, the tombstone in place, a replay a no-op."""
        where = self.where(up)
        s = self.direct.settings.storage
        destination = s.accepted_container if outcome == "accepted" else s.quarantine_container
        assert (where.accepted, where.quarantine) == (([up.name], []) if outcome == "accepted" else ([], [up.name]))
        copy = self.blob_service.get_blob_client(destination, up.name)
        assert copy.download_blob().readall() == up.data
        meta = copy.get_blob_properties().metadata
        assert (meta["valetoutcome"], meta["valetreason"]) == (outcome, reason)
        source = self.blob_service.get_blob_client(s.uploads_container, up.name)
        tomb = source.get_blob_properties()
        assert where.tombstone and tomb.size == len(records.TOMBSTONE_BODY) and tomb.metadata["valetoutcome"] == outcome
        before = self.proxy.requests
        self.trigger(up)  # the tombstone's own trigger, or a duplicate delivery: nothing changes
        assert source.get_blob_properties().etag == tomb.etag
        assert self.where(up) == where
        assert self.proxy.requests - before == 1  # one HEAD: "already decided"


def decisions(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "decision"]


@pytest.fixture
def stage(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], proxied_env: dict[str, str],
          storage_proxy: FaultProxy, storage_endpoint: StorageEndpoint, blob_service: BlobServiceClient,
          caplog: pytest.LogCaptureFixture) -> Iterator[Stage]:
    direct = Runtime.from_settings(Settings.from_env(valet_env), authenticator=FixedCaller())
    caplog.set_level(logging.INFO, logger="valet.audit")
    with fresh_app(monkeypatch, {**proxied_env, "VALET_STORAGE_TIMEOUT_SECONDS": "1"}) as app:
        cache, deadline = app.runtime().key_cache, time.monotonic() + 30
        while cache.fetches + cache.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the app's warm-up fetch is done: from now on, every request is the validator's
        yield Stage(app, storage_proxy, direct, blob_service, storage_endpoint.ca_bundle)
    direct.blob_service.close()


@pytest.mark.parametrize("mode", ["down", "reset"])
def test_storage_failing_leaves_the_upload_and_the_retry_decides(stage: Stage, mode: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    up = stage.upload(samples.png())
    if mode == "down":
        apply(stage.proxy, mode)
    else:
        stage.proxy.inject(Fault.reset(), match=blob_requests)
    with pytest.raises(DecisionFailed):  # the host retries (any exception would do; this one logs no SDK text)
        stage.trigger(up)
    stage.assert_untouched(up)
    stage.proxy.heal()
    stage.trigger(up)  # the host's next try
    stage.assert_decided(up, "accepted", "ok")
    assert len(decisions(caplog)) == 1


def test_a_few_503s_are_absorbed_by_the_storage_client_retries(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    up = stage.upload(samples.png())
    stage.proxy.inject(Fault.unavailable(retry_after=1), times=2, match=blob_requests)
    stage.trigger(up)  # one invocation: two 503s on its first request, then success
    assert stage.proxy.faulted == 2
    stage.assert_decided(up, "accepted", "ok")
    assert len(decisions(caplog)) == 1


def test_503_outage_is_outlasted_by_the_host_retries(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    up = stage.upload(samples.html(), "image/png")  # an HTML page presented as a PNG: quarantine
    # Nine 503s: the storage client tries each request 3 times, so try 1 fails reading the upload and
    # again recording the error, try 2 fails reading it but records the error state, try 3 decides.
    stage.proxy.inject(Fault.unavailable(retry_after=1), times=9, match=blob_requests)
    tries, states = 0, []
    while tries < HOST_TRIES:
        tries += 1
        try:
            stage.trigger(up)
            break
        except DecisionFailed:
            states.append(stage.assert_untouched(up).tags.get(records.ATTEMPTS))
    assert (tries, states, stage.proxy.faulted) == (3, [None, "1"], 9)
    stage.assert_decided(up, "quarantined", "active_content")
    assert len(decisions(caplog)) == 1


def test_failure_between_copy_and_tombstone_keeps_the_upload_and_the_retry_finishes(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    up = stage.upload(samples.html(), "image/png")
    stage.proxy.inject(Fault.unavailable(retry_after=1), match=tombstone_writes)
    with pytest.raises(DecisionFailed):
        stage.trigger(up)
    where = stage.where(up)
    assert where.source == up.data and not where.tombstone  # the upload is still there ...
    assert (where.tags[records.STATE], where.tags[records.ATTEMPTS]) == (records.ERROR, "1")  # ... in error state
    assert (where.accepted, where.quarantine) == ([], [up.name])  # and the copy with its record exists
    stage.proxy.heal()
    stage.trigger(up)
    stage.assert_decided(up, "quarantined", "active_content")
    assert len(decisions(caplog)) == 1


def test_storage_dying_right_after_the_copy_is_finished_by_the_retry(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    up = stage.upload(samples.png())
    stage.proxy.inject(Fault.reset(), match=After(copy_requests))
    with pytest.raises(DecisionFailed):
        stage.trigger(up)
    where = stage.where(up)
    assert where.source == up.data and not where.tombstone and where.accepted == [up.name]
    stage.proxy.heal()
    stage.trigger(up)
    stage.assert_decided(up, "accepted", "ok")
    assert len(decisions(caplog)) == 1


@pytest.mark.parametrize("lost", ["copy", "tombstone"])
def test_a_lost_response_is_not_a_second_decision(stage: Stage, lost: str, caplog: pytest.LogCaptureFixture) -> None:
    """Storage did the write but the answer never arrived; the storage client retries the request."""
    up = stage.upload(samples.png())
    stage.proxy.inject(Fault.lost_response(), times=1, match=copy_requests if lost == "copy" else tombstone_writes)
    stage.trigger(up)
    assert stage.proxy.faulted == 1
    stage.assert_decided(up, "accepted", "ok")
    assert len(decisions(caplog)) == 1
