"""The /blocks answer from what Get Block List returned (pure)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

from valet.grants.blocks import BlockState, StagedBlock, document, state_from, wire_id


@dataclass
class B:
    id: str
    size: int


def test_ids_go_back_to_the_base64_the_client_sent() -> None:
    assert wire_id("valet-00000007") == base64.b64encode(b"valet-00000007").decode()


def test_staged_blocks_only_is_not_committed_and_lists_them_in_order() -> None:
    state = state_from([], [B("valet-00000001", 8), B("valet-00000000", 4)])
    assert state == BlockState(False, (StagedBlock(wire_id("valet-00000001"), 8), StagedBlock(wire_id("valet-00000000"), 4)))


def test_committed_blocks_mean_committed_whatever_is_staged_beside_them() -> None:
    state = state_from([B("valet-00000000", 4)], [B("valet-00000001", 8)])
    assert state.committed and [b.size for b in state.blocks] == [4]


def test_an_existing_blob_without_blocks_is_committed() -> None:  # one Put Blob, or the validator's tombstone
    assert state_from([], []) == BlockState(True, ())


def test_the_document_has_the_contracts_shape() -> None:
    doc = document(BlockState(False, (StagedBlock("dmFsZXQtMDAwMDAwMDA=", 5),)), datetime(2026, 12, 6, 21, 0, tzinfo=UTC))
    assert doc == {"committed": False, "blocks": [{"id": "dmFsZXQtMDAwMDAwMDA=", "size": 5}],
                   "expiresOn": "2026-12-06T21:00:00Z"}
