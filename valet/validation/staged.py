"""Staged bytes are not free: blocks staged for an upload and never committed are discarded once its
window closes.

A create-only SAS lets its holder stage blocks (Put Block, service version 2026-04-06) that no trigger ever
sees: nothing is a blob until Put Block List commits it, and Azure keeps uncommitted blocks for 7 days. A
client can so park far more bytes than it declared. The upload window (the deadline bound into the granted
name, after which no SAS for the name is valid, renewed or not) bounds how long that can last:
:meth:`StagedDiscard.run`, on the tombstone sweep's timer (``sweep_tombstones``), lists the uploads
container with uncommitted blobs and deletes, with the app's identity, every granted name whose window
closed more than ``grace`` ago and that holds staged blocks and no committed blob (one Get Block List to
tell, one Delete Blob). Committed uploads, sealed tombstones and names valet never granted are left alone;
they cost nothing but their listing entry (a name with uncommitted blocks only lists with size 0; a
committed upload of any size is the validator's). A name whose window is still open and that says it has
a quota row gets one Get Block List, and its staged bytes go to ``observe`` (the quotas charge them).

Work per run is bounded (``limit`` deletions, ``max_pages`` listing pages) and the listing resumes where
the previous run stopped, as the reconciler's does. It runs on the sweep's timer, not the reconciler's,
so a reconciler run with nothing to do stays one listing request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from valet.clock import utcnow
from valet.errors import ServiceUnavailable
from valet.grants.naming import NameFacts, parse_granted_name
from valet.validation.listing import ResumableListing

log = logging.getLogger("valet.validation")



@dataclass
class DiscardReport:
    listed: int = 0
    checked: int = 0
    discarded: int = 0
    pages: int = 0
    complete: bool = False
    names: list[str] = field(default_factory=list)
    observed: int = 0  # open uploads with a quota row whose staged bytes were passed to ``observe``


def window_closed(name: str, now: datetime, grace: timedelta) -> bool:
    """Pure: ``name`` is one valet granted and its upload window closed more than ``grace`` ago."""
    facts = parse_granted_name(name)
    return facts is not None and now >= facts.deadline + grace


class StagedDiscard:
    def __init__(self, *, blob_service: BlobServiceClient, uploads: str,
                 is_decided: Callable[[str, dict[str, str] | None], bool], grace: timedelta,
                 limit: int = 100, max_pages: int = 5, clock: Callable[[], datetime] = utcnow,
                 observe: Callable[[NameFacts, int], None] | None = None) -> None:
        """``observe(facts, staged)``: the staged bytes of an upload whose window is still open and whose
        name says it has a quota row (the quotas charge them); at most ``limit`` per run."""
        self._container = blob_service.get_container_client(uploads)
        self._observe = observe
        self._is_decided = is_decided  # a sealed tombstone: decided, nothing staged to discard
        self._grace, self._limit, self._clock = grace, limit, clock
        self._listing = ResumableListing(self._container, ["uncommittedblobs", "metadata"], max_pages)

    def run(self) -> DiscardReport:
        report = DiscardReport()
        now = self._clock()
        try:
            for page in self._listing.pages(report):
                for blob in page:
                    report.listed += 1
                    if report.discarded >= self._limit:
                        break
                    if blob.size:
                        continue
                    if not window_closed(blob.name, now, self._grace):
                        if report.observed < self._limit and self._staged_seen(blob.name, now):
                            report.observed += 1
                        continue
                    if self._is_decided(blob.name, blob.metadata):
                        continue
                    report.checked += 1
                    if self._discard(blob.name):
                        report.discarded += 1
                        report.names.append(blob.name)
                if report.discarded >= self._limit:
                    break
        except AzureError as exc:
            log.warning("staged blocks: listing failed (%s); the next run resumes", type(exc).__name__)
        if report.discarded:
            log.info("staged blocks: discarded the uncommitted blocks of %d closed uploads", report.discarded)
        return report

    def _staged_seen(self, name: str, now: datetime) -> bool:
        """An open upload with a quota row: its staged bytes go to ``observe`` (one Get Block List)."""
        facts = parse_granted_name(name)
        if self._observe is None or facts is None or not facts.stored_row or now >= facts.deadline:
            return False
        try:
            committed, uncommitted = self._container.get_blob_client(name).get_block_list("all")
            staged = sum(int(b.size) for b in uncommitted)
            if committed or not staged:
                return False
            self._observe(facts, staged)
        except (AzureError, ServiceUnavailable, UnicodeDecodeError) as exc:
            log.warning("staged blocks: %s not observed (%s); the next run retries", name, type(exc).__name__)
            return False
        return True

    def _discard(self, name: str) -> bool:
        blob = self._container.get_blob_client(name)
        try:
            committed, uncommitted = blob.get_block_list("all")
            if committed or not uncommitted:
                return False  # a committed blob: the validator's
        except ResourceNotFoundError:
            return False
        except UnicodeDecodeError:
            pass  # ids that are not text (not valet's protocol): staged bytes all the same, and no SAS is valid
        except AzureError as exc:
            log.warning("staged blocks: %s not read (%s); the next run retries", name, type(exc).__name__)
            return False
        try:
            blob.delete_blob()  # no SAS for the name is valid any more: nothing can commit meanwhile
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            log.warning("staged blocks: %s not discarded (%s); the next run retries", name, type(exc).__name__)
            return False
        return True
