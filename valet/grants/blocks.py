"""``GET /api/uploads/{uploadId}/blocks?blobUri=...``: which blocks storage holds for an upload's blob.

A client that was interrupted (network gone, app killed) asks this before it sends again, and stages only
the blocks that are missing (docs/resumable-uploads.md). A create-only SAS cannot list blocks (Get Block
List needs ``r``, which a valet key never carries), so the app reads them with its own identity, for the
caller the upload was granted to only: the name comes from the grant's ``blobUri``, checked like a renewal
or a cancellation (its MAC, its upload id, the caller's partition; ``404`` for anyone else).

One storage request: Get Block List (``blocklisttype=all``). What decides the answer is pure
(:func:`state_from`, :func:`document`); :class:`BlockReader` is the thin adapter; :class:`BlockLister` is
what the route calls (the grant check, then the read).

``committed`` is true when the blob exists as a committed blob: committed blocks, or a blob with no
uncommitted block (one Put Blob, or the validator's tombstone after a decision). A blob committed with one
Put Blob and then given new staged blocks reads as not committed; a client that commits then meets
``UnauthorizedBlobOverwrite`` and asks the status route (the protocol bounds that loop).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from valet.caller import Caller
from valet.errors import BadRequest, Conflict, ServiceUnavailable
from valet.grants.issuer import GrantIssuer
from valet.grants.naming import NameFacts

MAX_BLOB_URI_CHARS = 4096


class SdkBlock(Protocol):
    """What the SDK's ``BlobBlock`` offers (its ``id`` is base64-decoded text)."""

    id: str
    size: int


@dataclass(frozen=True)
class StagedBlock:
    id: str  # as the client sent it: base64
    size: int


@dataclass(frozen=True)
class BlockState:
    committed: bool
    blocks: tuple[StagedBlock, ...]


NOTHING = BlockState(committed=False, blocks=())


def wire_id(sdk_id: str) -> str:
    """The block id as it went over the wire: the SDK hands it back base64-decoded."""
    return base64.b64encode(sdk_id.encode("utf-8")).decode("ascii")


def state_from(committed: Iterable[SdkBlock], uncommitted: Iterable[SdkBlock]) -> BlockState:
    """Pure: what Get Block List said of a blob that exists (committed or with staged blocks)."""
    done = tuple(StagedBlock(wire_id(b.id), int(b.size)) for b in committed)
    staged = tuple(StagedBlock(wire_id(b.id), int(b.size)) for b in uncommitted)
    if done or not staged:
        return BlockState(committed=True, blocks=done)
    return BlockState(committed=False, blocks=staged)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def document(state: BlockState, expires_on: datetime) -> dict[str, Any]:
    """Pure: the route's JSON. ``expiresOn`` is when the upload window closes: no SAS for this blob is
    valid after it, and valet discards blocks that were staged and never committed (see
    :mod:`valet.validation.staged`)."""
    return {
        "committed": state.committed,
        "blocks": [{"id": b.id, "size": b.size} for b in state.blocks],
        "expiresOn": _iso(expires_on),
    }


class BlockReader:
    """Get Block List with the app's identity: one request per read."""

    def __init__(self, blob_service: BlobServiceClient, container: str) -> None:
        self._service, self._container = blob_service, container

    def read(self, name: str) -> BlockState:
        client = self._service.get_blob_client(self._container, name)
        try:
            committed, uncommitted = client.get_block_list("all")
        except ResourceNotFoundError:
            return NOTHING  # nothing staged, nothing committed
        except UnicodeDecodeError:
            raise Conflict("Blocks with ids that are not base64 of UTF-8 text were staged for this upload; "
                           "valet's protocol uses text ids (docs/resumable-uploads.md).",
                           code="blocks_unreadable") from None
        except AzureError as exc:
            raise ServiceUnavailable("The upload's blocks cannot be read right now.",
                                     code="storage_unavailable") from exc
        return state_from(committed, uncommitted)


def parse_blocks_request(blob_uri: str | None) -> str:
    """The ``blobUri`` query parameter: required, the grant's blobUri."""
    if not blob_uri or len(blob_uri) > MAX_BLOB_URI_CHARS:
        raise BadRequest("'blobUri' is required: the blobUri of the grant.", code="invalid_blob_uri")
    return blob_uri


def staged_bytes(state: BlockState) -> int:
    """Pure: the bytes staged and not committed (0 once the blob is committed)."""
    return 0 if state.committed else sum(b.size for b in state.blocks)


class BlockLister:
    """``GET /api/uploads/{uploadId}/blocks``: the grant checked (``404`` for anyone else, before any storage
    request), then one Get Block List. What it saw staged goes to ``observe`` (the quotas: staged bytes
    count toward a quota while the window is open; a grant without a quota row costs no request there)."""

    def __init__(self, grants: GrantIssuer, reader: BlockReader,
                 observe: Callable[[NameFacts, int], None] | None = None) -> None:
        self._grants, self._reader, self._observe = grants, reader, observe

    def blocks(self, caller: Caller, upload_id: str, blob_uri: str) -> dict[str, Any]:
        granted = self._grants.granted_name(caller, upload_id, blob_uri)
        state = self._reader.read(granted.name)
        staged = staged_bytes(state)
        if staged and self._observe is not None:
            self._observe(granted.facts, staged)
        return document(state, granted.facts.deadline)
