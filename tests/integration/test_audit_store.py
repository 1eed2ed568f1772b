"""The audit trail on Azurite: appends, reads by time/upload/caller, the requests the app makes there, and
what a crashed instance loses (a real subprocess killed with SIGKILL while records are buffered)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.conftest import StorageEndpoint, unique_name
from tests.support.fakes import ALICE
from valet.audit import Actor, AppendStore, AuditReader, AuditTrail
from valet.audit.records import blob_name
from valet.storage import EmulatorCredential

BOB = "https://issuer.example/#bob"


@pytest.fixture
def observed(storage_endpoint: StorageEndpoint) -> Iterator[tuple[BlobServiceClient, list[tuple[str, str]]]]:
    """A service client that records (method, comp/restype) of every request it sends."""
    seen: list[tuple[str, str]] = []

    def hook(request: Any) -> None:
        query = parse_qs(urlsplit(request.http_request.url).query)
        seen.append((request.http_request.method, ",".join(query.get("comp", []) + query.get("restype", []))))

    service = BlobServiceClient(storage_endpoint.blob_url, credential=EmulatorCredential(storage_endpoint.blob_url),
                                connection_verify=storage_endpoint.ca_bundle or True, raw_request_hook=hook)
    yield service, seen
    service.close()


@pytest.fixture
def audit_container(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    client = blob_service.create_container(unique_name("audit"))
    yield client
    client.delete_container()


def test_records_are_appended_and_read_back_newest_first_with_filters(audit_container: ContainerClient) -> None:
    trail = AuditTrail(AppendStore(audit_container))
    alice = Actor.of(ALICE, "198.51.100.7")
    trail.record("grant", actor=alice, upload_id="u1")
    trail.record("grant", actor=alice, upload_id="u2")
    trail.write("review.release", actor=Actor(caller=BOB), upload_id="u1", owner=ALICE.id, reason="false positive")
    trail.close()  # flushes the two buffered grants
    reader = AuditReader(audit_container)
    now = datetime.now(UTC)
    everything = reader.query(since=now - timedelta(hours=1), until=now + timedelta(minutes=1))
    assert [d["action"] for d in everything.records].count("grant") == 2 and not everything.truncated
    times = [d["at"] for d in everything.records]
    assert times == sorted(times, reverse=True)
    by_upload = reader.query(since=now - timedelta(hours=1), until=now + timedelta(minutes=1), upload="u1")
    assert {d["action"] for d in by_upload.records} == {"grant", "review.release"}
    by_bob = reader.query(since=now - timedelta(hours=1), until=now + timedelta(minutes=1), caller=BOB)
    assert [d["reason"] for d in by_bob.records] == ["false positive"]
    by_owner = reader.query(since=now - timedelta(hours=1), until=now + timedelta(minutes=1), caller=ALICE.id)
    assert len(by_owner.records) == 3  # her two grants and the release of her upload
    assert by_owner.records[-1]["actor"]["clientIp"] == "198.51.100.7"
    limited = reader.query(since=now - timedelta(hours=1), until=now + timedelta(minutes=1), limit=1)
    assert len(limited.records) == 1 and limited.records[0]["action"] == everything.records[0]["action"]
    later = reader.query(since=now + timedelta(minutes=1), until=now + timedelta(hours=1))
    assert later.records == []


def test_the_app_only_ever_creates_new_append_blobs_and_appends(
        observed: tuple[BlobServiceClient, list[tuple[str, str]]], audit_container: ContainerClient) -> None:
    service, seen = observed
    store = AppendStore(service.get_container_client(audit_container.container_name))
    trail = AuditTrail(store)
    for i in range(5):
        trail.write("decision", actor=Actor.app("validator"), upload_id=f"u{i}")
        trail.record("grant", actor=Actor.of(ALICE), upload_id=f"u{i}")
    trail.close()
    assert seen, "requests were observed"
    assert {method for method, _ in seen} == {"PUT"}
    assert seen[0] == ("PUT", "") and all(comp == "appendblock" for _, comp in seen[1:])
    props = audit_container.get_blob_client(blob_name(datetime.now(UTC), store.instance, 0)).get_blob_properties()
    assert props.blob_type == "AppendBlob" and props.append_blob_committed_block_count == 6


def test_two_writers_with_one_name_never_overwrite_or_duplicate(audit_container: ContainerClient) -> None:
    first = AppendStore(audit_container, instance="same")
    second = AppendStore(audit_container, instance="same")
    first.append(b'{"at":"2026-01-01T00:00:00Z","n":1}\n')
    second.append(b'{"at":"2026-01-01T00:00:00Z","n":2}\n')  # finds the blob: appends after it, no overwrite
    first.append(b'{"at":"2026-01-01T00:00:00Z","n":3}\n')  # its position is stale: 412, then after n=2
    text = audit_container.get_blob_client(blob_name(datetime.now(UTC), "same", 0)).download_blob().readall()
    assert [json.loads(line)["n"] for line in text.splitlines()] == [1, 2, 3]


def test_a_missing_container_fails_a_write_with_503_and_keeps_buffered_records(
        blob_service: BlobServiceClient) -> None:
    from valet.audit import AuditUnavailable

    trail = AuditTrail(AppendStore(blob_service.get_container_client(unique_name("absent"))))
    with pytest.raises(AuditUnavailable) as caught:
        trail.write("review.purge", actor=Actor(caller=BOB), upload_id="u1")
    assert caught.value.status == 503 and caught.value.code == "audit_unavailable"
    trail.record("grant", actor=Actor(caller=BOB))
    assert trail.flusher is not None
    with pytest.raises(ResourceNotFoundError):
        trail.flusher.flush()
    assert trail.flusher.pending == 1
    trail.close()  # logs the one record it could not append, and stops the thread


CHILD = textwrap.dedent("""
    import sys, time
    from azure.storage.blob import BlobServiceClient
    from valet.audit import Actor, AppendStore, AuditTrail
    from valet.storage import EmulatorCredential
    url, ca, container = sys.argv[1:4]
    service = BlobServiceClient(url, credential=EmulatorCredential(url), connection_verify=ca)
    trail = AuditTrail(AppendStore(service.get_container_client(container), instance="crash"), flush_seconds=1.0)
    actor = Actor(caller="apikey:t:crash", client_ip="127.0.0.1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entry = trail.record("grant", actor=actor, upload_id="u")
        print(entry.seq, time.time(), flush=True)
        time.sleep(0.005)
""")


def test_a_killed_instance_loses_at_most_the_records_of_the_last_two_flush_intervals(
        storage_endpoint: StorageEndpoint, audit_container: ContainerClient) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, storage_endpoint.blob_url,
                              storage_endpoint.ca_bundle or "", audit_container.container_name],
                             stdout=subprocess.PIPE, text=True, env={**os.environ})
    put: dict[int, float] = {}
    try:
        assert child.stdout is not None
        started = time.monotonic()
        while time.monotonic() - started < 4.5:
            line = child.stdout.readline()
            if not line:
                break
            seq, at = line.split()
            put[int(seq)] = float(at)
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL and len(put) > 100
    text = b"".join(audit_container.get_blob_client(b.name).download_blob().readall()
                    for b in audit_container.list_blobs())
    stored = sorted(json.loads(line)["src"]["seq"] for line in text.splitlines())
    assert stored == list(range(1, len(stored) + 1)), "no gap and no duplicate in what was stored"
    lost = [seq for seq in put if seq > len(stored)]
    assert lost, "records were buffered when the process died"
    oldest_lost = min(put[seq] for seq in lost)
    assert killed_at - oldest_lost <= 2 * 1.0 + 0.5, "lost only the last two flush intervals (plus slack)"


def test_valet_audit_reads_the_trail_from_the_command_line(storage_endpoint: StorageEndpoint,
                                                           audit_container: ContainerClient) -> None:
    import io

    from valet.local.audit import main as audit_cli

    trail = AuditTrail(AppendStore(audit_container))
    trail.write("decision", actor=Actor.app("validator"), upload_id="u9", owner=ALICE.id, outcome="quarantined",
                reason="type_mismatch")
    trail.write("review.purge", actor=Actor(caller=BOB), upload_id="u9", owner=ALICE.id, outcome="purged",
                reason="abusive content")
    trail.write("decision", actor=Actor.app("validator"), upload_id="u8", outcome="accepted")
    env = {"VALET_STORAGE_ACCOUNT_URL": storage_endpoint.blob_url,
           "VALET_STORAGE_CA_BUNDLE": storage_endpoint.ca_bundle or ""}
    out = io.StringIO()
    assert audit_cli(["--upload", "u9", "--container", audit_container.container_name], environ=env, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "review.purge" in lines[0] and '"abusive content"' in lines[0]
    assert "decision" in lines[1] and "valet:validator" in lines[1]
    out = io.StringIO()
    assert audit_cli(["--caller", BOB, "--json", "--container", audit_container.container_name],
                     environ=env, out=out) == 0
    [doc] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert doc["action"] == "review.purge" and doc["actor"]["caller"] == BOB
    assert audit_cli(["--container", "no-such-container"], environ=env, out=io.StringIO()) == 1
    assert audit_cli([], environ={}, out=io.StringIO()) == 2


def test_azurite_enforces_nothing_in_the_audit_container_so_the_app_side_is_what_is_tested(
        audit_container: ContainerClient) -> None:
    """What Azure's immutability policy and the app's role refuse, Azurite allows: a record's blob can be
    overwritten and deleted there (docs/design.md, "The audit trail")."""
    store = AppendStore(audit_container)
    name = store.append(b'{"at":"2026-01-01T00:00:00Z"}\n')
    blob = audit_container.get_blob_client(name)
    blob.upload_blob(b"rewritten", overwrite=True)
    assert blob.download_blob().readall() == b"rewritten"
    blob.delete_blob()
    assert not blob.exists()
