"""The audit container: append-only writes by one instance, and reads by time, upload and caller.

:class:`AppendStore` is the only writer. It issues exactly two kinds of request: Put Blob of a new, empty
append blob (``If-None-Match: *``, so it can never replace one) and Append Block with the append-position
condition (``x-ms-blob-condition-appendpos``), so a retried append whose first try landed is recognised
(its bytes are at the expected position) instead of written twice. It never deletes, overwrites, sets
metadata or tags: in Azure the container's immutability policy (protected appends) refuses all of those
anyway; on Azurite, which enforces no immutability, the tests pin that the app never tries (it also
reads properties and a range of its own blob, to recognise a retried append).

:class:`AuditReader` lists one day prefix at a time (newest first), skips the hours outside the range, and
streams each blob line by line, keeping the newest ``limit`` matches; it stops at ``max_blobs`` and says so.
"""

from __future__ import annotations

import heapq
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from valet.audit import records
from valet.clock import utcnow

log = logging.getLogger("valet.audit.store")

MAX_APPEND = 4 * 1024 * 1024  # one Append Block (4 MiB on every service version)
ROLL_AT_BLOCKS = 49_000  # Azure allows 50,000 blocks per append blob
JSON_LINES = "application/x-ndjson"


def new_instance_id() -> str:
    """A random id per process: each instance appends to its own blobs."""
    return uuid.uuid4().hex[:16]


class AppendStore:
    def __init__(self, container: ContainerClient, *, instance: str | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._container = container
        self.instance = instance or new_instance_id()
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._name = ""
        self._length = 0
        self._blocks = 0

    @property
    def container_client(self) -> ContainerClient:
        return self._container

    def append(self, data: bytes) -> str:
        """Append ``data`` (whole lines, at most :data:`MAX_APPEND` bytes) as one block to this instance's
        blob for the current hour; returns the blob name. Raises :class:`~azure.core.exceptions.AzureError`."""
        if not data or len(data) > MAX_APPEND:
            raise ValueError("an audit append holds 1 byte to 4 MiB")
        with self._lock:
            name = records.blob_name(self._clock(), self.instance, self._seq)
            if name != self._name or self._blocks >= ROLL_AT_BLOCKS:
                if name == self._name:  # the blob is full: the next one in the same hour
                    self._seq += 1
                    name = records.blob_name(self._clock(), self.instance, self._seq)
                self._open(name)
            self._append(data)
            return self._name

    def _open(self, name: str) -> None:
        blob = self._container.get_blob_client(name)
        try:
            blob.create_append_blob(content_settings=ContentSettings(content_type=JSON_LINES),
                                    match_condition=MatchConditions.IfMissing)
            self._length = self._blocks = 0
        except ResourceExistsError:  # our own earlier try landed (a lost response): carry on after it
            props = blob.get_blob_properties()
            self._length, self._blocks = props.size, props.append_blob_committed_block_count or 0
        self._name = name

    def _append(self, data: bytes) -> None:
        blob = self._container.get_blob_client(self._name)
        for _ in range(2):
            try:
                result = blob.append_block(data, length=len(data), appendpos_condition=self._length)
                self._length += len(data)
                count = result.get("blob_committed_block_count")
                self._blocks = count if isinstance(count, int) else self._blocks + 1
                return
            except HttpResponseError as exc:
                if exc.status_code == 412:  # the position moved: did our retried append land already?
                    props = blob.get_blob_properties()
                    if props.size == self._length + len(data) and blob.download_blob(
                            offset=self._length, length=len(data)).readall() == data:
                        self._length, self._blocks = props.size, props.append_blob_committed_block_count or 0
                        return  # it did: the bytes at our position are ours
                    self._length = props.size
                    continue
                if exc.status_code == 409 and "blockcount" in str(getattr(exc, "error_code", "")).lower():
                    self._seq += 1
                    self._open(records.blob_name(self._clock(), self.instance, self._seq))
                    blob = self._container.get_blob_client(self._name)
                    continue
                raise
        raise ResourceExistsError("the audit blob kept changing under this instance")


@dataclass(frozen=True)
class QueryResult:
    records: list[dict[str, Any]]  # newest first
    truncated: bool  # stopped at max_blobs: older matches may exist
    blobs_read: int


class AuditReader:
    def __init__(self, container: ContainerClient, *, max_blobs: int = 2_000) -> None:
        self._container = container
        self._max_blobs = max_blobs

    def query(self, *, since: datetime, until: datetime, upload: str = "", caller: str = "", action: str = "",
              limit: int = 200) -> QueryResult:
        kept: list[tuple[datetime, int, int, dict[str, Any]]] = []  # a min-heap of the newest ``limit`` matches
        counter = 0
        blobs = 0
        truncated = False
        for prefix in records.day_prefixes(since, until):
            names = sorted((b.name for b in self._container.list_blobs(name_starts_with=prefix)), reverse=True)
            for name in names:
                hour = records.hour_of(name)
                if hour is None or not records.hour_in_range(hour, since, until):
                    continue
                if blobs >= self._max_blobs:
                    truncated = True
                    break
                blobs += 1
                for doc in self._lines(name):
                    at = records.record_time(doc)
                    if at is None or not since <= at <= until:
                        continue
                    if not records.matches(doc, upload=upload, caller=caller, action=action):
                        continue
                    counter += 1  # within one millisecond: the writer's sequence, then the order read
                    src = doc.get("src")
                    raw = src.get("seq") if isinstance(src, dict) else None
                    seq = raw if isinstance(raw, int) else 0
                    item: tuple[datetime, int, int, dict[str, Any]] = (at, seq, counter, doc)
                    if len(kept) < limit:
                        heapq.heappush(kept, item)
                    elif item[:3] > kept[0][:3]:
                        heapq.heapreplace(kept, item)
            if truncated:
                break
            if len(kept) >= limit and f"{kept[0][0]:%Y/%m/%d}/" >= prefix:
                break  # every older day holds only records older than the ``limit`` kept
        ordered = [item[3] for item in sorted(kept, key=lambda item: item[:3], reverse=True)]
        return QueryResult(ordered, truncated, blobs)

    def _lines(self, name: str) -> Iterator[dict[str, Any]]:
        try:
            stream = self._container.get_blob_client(name).download_blob()
        except ResourceNotFoundError:
            return
        rest = b""
        for chunk in stream.chunks():
            rest += chunk
            *lines, rest = rest.split(b"\n")
            for line in lines:
                doc = records.parse_line(line)
                if doc is not None:
                    yield doc
        if rest:
            doc = records.parse_line(rest)
            if doc is not None:
                yield doc
