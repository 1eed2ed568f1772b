"""BlobKeyStore against the storage emulator (Azurite). ``container_client`` comes from tests/conftest.py."""

from __future__ import annotations

from typing import Any

import pytest

from valet.auth.keystore import BlobKeyStore, KeyConflict, KeyExists, KeyNotFound, KeyRecord

pytestmark = pytest.mark.azurite


def test_blob_key_store_round_trip_and_conditional_writes(container_client: Any) -> None:
    store = BlobKeyStore(container_client)
    record = KeyRecord("itestKEY0001", "nightly", "billing", "ab" * 32, "contoso",
                       frozenset({"Uploads.Write"}), 1_700_000_000, None, None)
    assert store.get(record.key_id) is None
    stored = store.put(record)
    assert stored.etag
    with pytest.raises(KeyExists):
        store.put(record)
    fetched = store.get(record.key_id)
    assert fetched == record and fetched is not None and fetched.etag == stored.etag
    revoked = store.update(KeyRecord(**{**record.__dict__, "revoked_at": 1_700_000_100, "etag": stored.etag}))
    assert revoked.etag != stored.etag
    with pytest.raises(KeyConflict):
        store.update(stored)  # stale etag
    with pytest.raises(KeyNotFound):
        store.update(KeyRecord("itestMISSING", "n", "o", "h"))
    assert [r.key_id for r in store.list("billing")] == [record.key_id]
    got = store.get(record.key_id)
    assert got is not None and got.state(1_700_000_200) == "revoked"
