"""Idempotency keys in the quota table (Azurite): the first request's document comes back for the same
body, another body is 422, keys expire after 24 hours, refused requests forget their key, and racing
requests with one key all get one document."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import StorageEndpoint
from tests.support.quota import Clock, new_table_name, table_client
from valet.errors import BadRequest
from valet.quotas import Account
from valet.quotas.idempotency import IdempotencyKeyReused, IdempotencyStore, fingerprint, parse_key
from valet.quotas.table import QuotaTable

pytestmark = pytest.mark.azurite
ALICE = Account("tenant-a", "u-alice")


@pytest.fixture
def table(storage_endpoint: StorageEndpoint) -> Iterator[QuotaTable]:
    client = table_client(storage_endpoint.blob_url, storage_endpoint.table_url, storage_endpoint.ca_bundle,
                          new_table_name())
    client.create_table()
    yield QuotaTable(client)
    client.delete_table()
    client.close()


def test_the_same_key_and_body_get_the_first_document_and_another_body_is_422(table: QuotaTable) -> None:
    clock = Clock()
    keys = IdempotencyStore(table, clock=clock)
    body = fingerprint({"filename": "a.png", "size": 3})
    first = keys.claim(ALICE, "k-1", body, {"uploads": ["id-1"]})
    assert first.fresh and first.document == {"uploads": ["id-1"]}
    again = IdempotencyStore(table, clock=clock).claim(ALICE, "k-1", fingerprint({"size": 3, "filename": "a.png"}),
                                                       {"uploads": ["id-2"]})
    assert not again.fresh and again.document == {"uploads": ["id-1"]}
    with pytest.raises(IdempotencyKeyReused) as reused:
        keys.claim(ALICE, "k-1", fingerprint({"filename": "b.png", "size": 3}), {"uploads": ["id-3"]})
    assert reused.value.status == 422 and reused.value.code == "idempotency_key_reused"
    assert keys.claim(Account("tenant-a", "u-bob"), "k-1", body, {"uploads": ["id-4"]}).fresh  # keys are per caller


def test_a_key_lives_24_hours_and_a_forgotten_key_is_free(table: QuotaTable) -> None:
    clock = Clock()
    keys = IdempotencyStore(table, clock=clock)
    keys.claim(ALICE, "k", "f1", {"n": 1})
    clock.advance(hours=23, minutes=59)
    assert not keys.claim(ALICE, "k", "f1", {"n": 2}).fresh
    clock.advance(minutes=2)
    taken = keys.claim(ALICE, "k", "f2", {"n": 3})  # expired: another body may use it now
    assert taken.fresh and taken.document == {"n": 3}
    keys.forget(ALICE, "k")
    keys.forget(ALICE, "k")  # twice is fine
    assert keys.claim(ALICE, "k", "f1", {"n": 4}).fresh
    clock.advance(hours=25)
    assert keys.sweep() == 1 and keys.sweep() == 0


def test_racing_requests_with_one_key_get_one_document(table: QuotaTable) -> None:
    keys = IdempotencyStore(table, clock=Clock())
    with ThreadPoolExecutor(12) as pool:
        claims = list(pool.map(lambda i: keys.claim(ALICE, "race", "same-body", {"n": i}), range(24)))
    assert sum(c.fresh for c in claims) == 1
    assert len({c.document["n"] for c in claims}) == 1


@pytest.mark.parametrize("raw, key", [(None, None), ("abc", "abc"), ('"8e03978e-40d5"', "8e03978e-40d5"),
                                      (" k ", "k"), ("x" * 255, "x" * 255)])
def test_keys_are_parsed(raw: str | None, key: str | None) -> None:
    assert parse_key(raw) == key


@pytest.mark.parametrize("raw", ["", '""', "a b", "x" * 256, "caf\u00e9", "tab\tkey"])
def test_malformed_keys_are_400(raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_key(raw)
    assert info.value.code == "invalid_idempotency_key"


def test_the_fingerprint_ignores_spacing_and_key_order_but_not_values() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2}) and fingerprint({"a": 1}) != fingerprint({"a": "1"})


def test_a_stored_key_never_holds_the_key_itself(table: QuotaTable) -> None:
    IdempotencyStore(table, clock=Clock()).claim(ALICE, "secret-looking-key", "f", {"n": 1})
    assert "secret-looking-key" not in str(list(table.client.list_entities()))
