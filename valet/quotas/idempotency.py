"""Idempotent grants: ``Idempotency-Key`` (the IETF httpapi draft's semantics), stored in the quota table.

The first request with a key stores, before anything is reserved, the fingerprint of its body and what the
grant path decided (its upload ids and blob names, as a JSON document of its own). A request with the
same caller, key and body within 24 hours gets that document back, so it answers with the same upload
ids (and a freshly signed SAS for the same blobs) and repeats the reservation with the same ids, which
reserves nothing twice (:meth:`valet.quotas.store.QuotaStore.reserve` with ``repeat``). The same key with
another body is ``422 idempotency_key_reused``. A grant that is refused forgets its key, so the client
may try again with it.

Rows: partition ``<tenant>.I`` (profile names are lower case, so it is no profile's), row key
``i.<caller>.<sha256(key)>``: the key itself is never stored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from valet.clock import utcnow
from valet.errors import BadRequest, ValetError
from valet.quotas.rows import Account, etag_of, stamp, unstamp
from valet.quotas.table import QuotaTable, replace_if_unchanged, unavailable

HEADER = "Idempotency-Key"
LIFETIME = timedelta(hours=24)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the draft's examples; quotes allowed (sf-string)
MAX_DOCUMENT_CHARS = 60_000  # a Table string property holds 64 KiB


class IdempotencyKeyReused(ValetError):
    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"


def parse_key(value: str | None) -> str | None:
    """The header's key, or ``None`` when absent; ``400 invalid_idempotency_key`` when malformed."""
    if value is None:
        return None
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':  # the draft's structured-field string form
        key = key[1:-1]
    if not _KEY.fullmatch(key):
        raise BadRequest(f"'{HEADER}' must be 1 to 255 visible ASCII characters.", code="invalid_idempotency_key")
    return key


def fingerprint(body: Any) -> str:
    """The fingerprint of a parsed request body: the same JSON value gives the same fingerprint, whatever
    its spacing or key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """What a key holds: the document of the first request (``fresh``: this request is that first one)."""

    document: dict[str, Any]
    fresh: bool


class IdempotencyStore:
    def __init__(self, table: QuotaTable, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._table = table
        self._clock = clock

    def claim(self, account: Account, key: str, body_fingerprint: str, proposal: dict[str, Any]) -> Claim:
        """Store ``proposal`` under ``key`` unless the key is in use: then the stored document (same body),
        or ``422 idempotency_key_reused`` (another body). A key older than 24 hours is taken over."""
        text = json.dumps(proposal, separators=(",", ":"))
        if len(text) > MAX_DOCUMENT_CHARS:
            raise BadRequest("The request is too large to be made idempotent.", code="idempotency_unsupported")
        pk, row = _keys(account, key)
        now = self._clock()
        entity = {"PartitionKey": pk, "RowKey": row, "Kind": "idem", "Body": body_fingerprint, "Doc": text,
                  "Expires": stamp(now + LIFETIME)}
        for _ in range(5):
            try:
                self._table.client.create_entity(entity)
                return Claim(proposal, fresh=True)
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise unavailable() from exc
            stored = self._table.read(pk, [row]).get(row)
            if stored is None:
                continue  # forgotten meanwhile: claim it again
            if unstamp(str(stored["Expires"])) <= now:  # an expired key: take it over, if nobody else does
                if not isinstance(self._table.submit(pk, [replace_if_unchanged(entity, etag_of(stored))]), int):
                    return Claim(proposal, fresh=True)
                continue
            if stored.get("Body") != body_fingerprint:
                raise IdempotencyKeyReused(
                    f"This {HEADER} was used within 24 hours for a different request body; use a new key.")
            return Claim(json.loads(str(stored["Doc"])), fresh=False)
        raise unavailable()

    def forget(self, account: Account, key: str) -> None:
        """Drop a key whose request was refused, so the client may retry with it."""
        pk, row = _keys(account, key)
        try:
            self._table.client.delete_entity(pk, row)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise unavailable() from exc

    def sweep(self, *, limit: int = 500) -> int:
        """Delete keys older than 24 hours; returns how many."""
        deleted = 0
        for entity in self._table.query("Kind eq @k and Expires le @now", {"k": "idem", "now": stamp(self._clock())},
                                        select=["PartitionKey", "RowKey"]):
            if deleted >= limit:
                break
            self._table.delete(str(entity["PartitionKey"]), str(entity["RowKey"]))
            deleted += 1
        return deleted


def _keys(account: Account, key: str) -> tuple[str, str]:
    return f"{account.tenant}.I", f"i.{account.caller}.{hashlib.sha256(key.encode()).hexdigest()}"
