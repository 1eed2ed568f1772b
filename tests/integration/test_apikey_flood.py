"""Floods of forged API keys against the real key store on the storage emulator: the requests the store's
client sends are counted at its HTTP pipeline (``raw_request_hook``), so the bound below is on real reads
of the emulator, whatever the number of forged keys or addresses."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.conftest import StorageEndpoint
from tests.support.auth import request
from valet.auth import Authenticator, AuthSettings, BlobKeyStore, KeyRecord, apikeys
from valet.errors import TooManyRequests, Unauthenticated
from valet.storage import EmulatorCredential, RequestCounter

pytestmark = pytest.mark.azurite

PEPPER_BYTES = b"q" * 32
PEPPER = base64.urlsafe_b64encode(PEPPER_BYTES).decode()


@pytest.fixture
def counted(storage_endpoint: StorageEndpoint, container_client: ContainerClient
            ) -> Iterator[tuple[ContainerClient, RequestCounter]]:
    """The test's container through a client of its own whose every HTTP request is counted."""
    if storage_endpoint.credential_mode != "emulator":
        pytest.skip("counts reads on the emulator")
    counter = RequestCounter()
    service = BlobServiceClient(storage_endpoint.blob_url, credential=EmulatorCredential(storage_endpoint.blob_url),
                                connection_verify=storage_endpoint.ca_bundle or True, raw_request_hook=counter)
    yield service.get_container_client(container_client.container_name), counter


def issue(container: ContainerClient) -> str:
    key, parsed = apikeys.generate()
    BlobKeyStore(container).put(KeyRecord(parsed.kid, "n", "billing", apikeys.hash_secret(PEPPER_BYTES, parsed),
                                          "contoso", frozenset({"Uploads.Write"})))
    return key


def attempt(auth: Authenticator, key: str, address: str) -> int:
    try:
        auth.authenticate(request({"X-API-Key": key, "X-Forwarded-For": address}))
    except (Unauthenticated, TooManyRequests) as exc:
        return exc.status
    return 200


def authenticator(container: ContainerClient, **env: str) -> Authenticator:
    return Authenticator(AuthSettings.from_env({"VALET_APIKEY_PEPPER": PEPPER, **env}), BlobKeyStore(container))


def test_forged_keys_from_one_address_cost_at_most_its_failure_burst_in_reads(
        counted: tuple[ContainerClient, RequestCounter], container_client: ContainerClient) -> None:
    container, reads = counted
    real = issue(container_client)
    auth = authenticator(container, VALET_AUTH_FAILURES_PER_MINUTE="60", VALET_AUTH_FAILURES_BURST="20")
    started = time.monotonic()
    statuses = [attempt(auth, apikeys.generate()[0], "203.0.113.66") for _ in range(600)]
    refilled = int(time.monotonic() - started) + 1  # at most one token a second comes back meanwhile
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) <= {401, 429}
    assert statuses[20:].count(401) <= refilled and statuses[-1] == 429
    assert reads.count <= 20 + refilled  # one read per 401, none per 429

    before = reads.count
    assert attempt(auth, real, "198.51.100.20") == 200  # another address: unaffected (one read, then cached)
    assert reads.count - before == 1
    try:  # behind the flooding address: 429 with a Retry-After it can honour
        auth.authenticate(request({"X-API-Key": real, "X-Forwarded-For": "203.0.113.66"}))
        raise AssertionError("expected 429")
    except TooManyRequests as exc:
        wait = int(exc.headers["Retry-After"])
    assert 1 <= wait <= 2
    time.sleep(wait)
    assert attempt(auth, real, "203.0.113.66") == 200


def test_forged_keys_from_many_addresses_stay_within_the_global_budget(
        counted: tuple[ContainerClient, RequestCounter], container_client: ContainerClient) -> None:
    container, reads = counted
    real = issue(container_client)
    auth = authenticator(container, VALET_AUTH_GLOBAL_FAILURES_PER_MINUTE="60", VALET_AUTH_GLOBAL_FAILURES_BURST="30")
    assert attempt(auth, real, "198.51.100.20") == 200
    started, before = time.monotonic(), reads.count
    statuses = [attempt(auth, apikeys.generate()[0], f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
                for n in range(1500)]
    elapsed = time.monotonic() - started
    spent = reads.count - before
    assert spent <= 30 + int(elapsed) + 1, (spent, elapsed)  # burst + 1 a second
    assert statuses.count(401) == spent and statuses.count(429) == 1500 - spent
    before = reads.count
    assert attempt(auth, real, "198.51.100.99") == 200  # a cached key is unaffected by the ceiling
    assert reads.count == before


def test_concurrent_lookups_of_one_key_id_share_one_read(
        counted: tuple[ContainerClient, RequestCounter]) -> None:
    container, reads = counted
    auth = authenticator(container)
    key = apikeys.generate()[0]
    start = threading.Barrier(24)
    results: list[int] = []

    def one(n: int) -> None:
        start.wait(5)
        results.append(attempt(auth, key, f"192.0.2.{n}"))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [401] * 24
    assert reads.count == 1
    assert [attempt(auth, key, "192.0.2.200") for _ in range(10)] == [401] * 10  # remembered: no more reads
    assert reads.count == 1


def test_a_real_key_is_not_pushed_out_by_forged_ids(counted: tuple[ContainerClient, RequestCounter],
                                                    container_client: ContainerClient) -> None:
    container, reads = counted
    real = issue(container_client)
    auth = authenticator(container, VALET_AUTH_FAILURES_PER_MINUTE="0", VALET_AUTH_GLOBAL_FAILURES_PER_MINUTE="0")
    assert attempt(auth, real, "198.51.100.20") == 200
    for n in range(300):
        attempt(auth, apikeys.generate()[0], f"10.1.{n // 256}.{n % 256}")
    before = reads.count
    assert attempt(auth, real, "198.51.100.20") == 200
    assert reads.count == before
