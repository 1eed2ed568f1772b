"""Giving an unused grant back: ``DELETE /api/uploads/{uploadId}?blobUri=...``.

A user delegation SAS cannot be revoked one by one, so the application invalidates the key it handed out
by occupying the granted name before anything was uploaded (the storage side writes a sealed ``cancelled``
tombstone there, create-only). The rule is here: only the caller the grant was made to, only while the
upload window bound into the name is open; the tombstone then holds the name until that window has
closed, plus the tombstone grace.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from valet.caller import Caller
from valet.clock import utcnow
from valet.errors import BadRequest, Conflict
from valet.grants.issuer import GrantIssuer

MAX_BLOB_URI_CHARS = 4096


class Occupy(Protocol):
    """Occupy ``name`` with a sealed ``cancelled`` tombstone until ``until`` (create-only; a repeated cancel
    succeeds, an existing upload is a :class:`~valet.errors.Conflict`)."""

    def __call__(self, name: str, *, upload_id: str, caller: str, until: datetime) -> None: ...


def parse_cancel_request(blob_uri: str | None) -> str:
    """The ``blobUri`` query parameter of a cancel: required, the grant's blobUri."""
    if not blob_uri or len(blob_uri) > MAX_BLOB_URI_CHARS:
        raise BadRequest("'blobUri' is required: the blobUri of the grant to cancel.", code="invalid_blob_uri")
    return blob_uri


class Canceller:
    def __init__(self, *, grants: GrantIssuer, occupy: Occupy, tombstone_grace: timedelta,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._grants = grants
        self._occupy = occupy
        self._grace = tombstone_grace
        self._clock = clock

    def cancel(self, caller: Caller, upload_id: str, blob_uri: str) -> None:
        name, facts, _, _ = self._grants.granted_name(caller, upload_id, blob_uri)
        if self._clock() >= facts.deadline:
            raise Conflict("The upload's window has closed: its SAS can no longer be used.",
                           code="upload_window_closed")
        self._occupy(name, upload_id=upload_id, caller=caller.id, until=facts.deadline + self._grace)
