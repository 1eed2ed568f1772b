"""The reconciler: decides uploads whose blob trigger never fired, or fired and gave up.

Blob triggers miss events (an Event Grid delivery dead-lettered, the polling source lagging or skipping,
a host down while uploads arrived), and an invocation that failed five times goes to the poison queue.
Either way an upload stays in the uploads container with no decision. A timer function runs
:meth:`Reconciler.run`: it lists the uploads container (with metadata and index tags, so a listing page
is all it reads for blobs that need nothing), and for each blob that is

* not a tombstone with a valid seal (already decided; see :class:`~valet.validation.trusted.Sealer`:
  tombstone metadata that a client wrote on its own upload does not make the reconciler skip it),
* older than ``min_age`` (the trigger had its chance; an upload in progress does not exist as a blob
  until its last byte is committed, so age counts from the blob's last write), and
* below ``max_attempts`` recorded failed decision attempts (the validator counts them in index tags,
  sealed: tags a client set at creation count nothing),

it calls the validator, which is idempotent (a sealed tombstone that still carries the
``valetevent=pending`` tag, because its decision event could not be sent, is handed to the validator
too, which sends it): a blob decided meanwhile by a late trigger costs one
properties read. Work per run is bounded (``limit`` decisions, ``max_pages`` listing pages); the listing
resumes where the previous run stopped, so a container with many tombstones is covered over several
runs, and an empty one costs one listing request.

An upload whose attempts reached ``max_attempts`` is left for an operator; the status route reports it as
``needs_operator`` (see :func:`attention`), and removing its tags (any change breaks their seal) hands it
back to the reconciler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobProperties, BlobServiceClient

from valet.clock import utcnow
from valet.validation import records
from valet.validation.listing import ResumableListing

log = logging.getLogger("valet.validation")



def attempts(tags: Mapping[str, str] | None) -> int:
    """Failed decision attempts recorded on an upload (0 when none are)."""
    return records.parse_count(records.tag(tags, records.ATTEMPTS)) or 0


def attention(tags: Mapping[str, str] | None, max_attempts: int) -> str | None:
    """What the status route says of an undecided upload with these tags: ``retrying`` after a failed
    attempt, ``needs_operator`` once the attempts reached the limit, ``None`` when nothing failed yet."""
    if records.tag(tags, records.STATE) != records.ERROR:
        return None
    return "needs_operator" if attempts(tags) >= max_attempts else "retrying"


@dataclass
class RunReport:
    listed: int = 0
    decided: int = 0
    failed: int = 0
    needs_operator: int = 0
    pages: int = 0
    complete: bool = False  # the listing reached the end of the container in this run
    names: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        *,
        blob_service: BlobServiceClient,
        uploads: str,
        decide: Callable[[str], object],
        is_decided: Callable[[str, dict[str, str] | None], bool],
        error_tags: Callable[[str, Mapping[str, str] | None], Mapping[str, str]],
        min_age: timedelta,
        max_attempts: int,
        limit: int,
        max_pages: int = 5,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._container = blob_service.get_container_client(uploads)
        self._decide = decide
        self._is_decided = is_decided  # a *sealed* tombstone: metadata a client wrote proves nothing
        self._error_tags = error_tags  # the *sealed* failed-attempt record: tags a client wrote count nothing
        self._min_age = min_age
        self._max_attempts = max_attempts
        self._limit = limit
        self._clock = clock
        self._listing = ResumableListing(self._container, ["metadata", "tags"], max_pages)

    def candidate(self, blob: BlobProperties, now: datetime) -> bool:
        return self._assess(blob, now)[1]

    def _assess(self, blob: BlobProperties, now: datetime) -> tuple[bool, bool]:
        """(given up: it waits for an operator, to decide now): each seal checked once per listed blob."""
        written = blob.last_modified or blob.creation_time
        old_enough = written is None or now - written >= self._min_age
        if self._is_decided(blob.name, blob.metadata):  # decided; its event may still be owed
            return False, old_enough and records.tag(blob.tags, records.EVENT) == records.PENDING
        tried = attempts(self._error_tags(blob.name, blob.tags))
        return tried >= self._max_attempts, old_enough and tried < self._max_attempts

    def run(self) -> RunReport:
        """One bounded pass; storage failures end the pass early (the next run resumes)."""
        report = RunReport()
        now = self._clock()
        try:
            for page in self._listing.pages(report):
                for blob in page:
                    report.listed += 1
                    if report.decided + report.failed >= self._limit:
                        break
                    given_up, due = self._assess(blob, now)
                    report.needs_operator += given_up
                    if not due:
                        continue
                    self._one(blob.name, report)
                if report.decided + report.failed >= self._limit:
                    break  # resume at this page next time: it may hold more candidates
        except AzureError as exc:
            log.warning("reconciler: listing failed (%s); the next run resumes", type(exc).__name__)
        if report.decided or report.failed or report.needs_operator:
            log.info("reconciler: %d decided, %d failed, %d need an operator (%d listed)",
                     report.decided, report.failed, report.needs_operator, report.listed)
        return report

    def _one(self, name: str, report: RunReport) -> None:
        try:
            self._decide(name)
        except Exception as exc:  # noqa: BLE001 - one blob never stops the run; the validator records it
            report.failed += 1
            log.warning("reconciler: deciding %s failed (%s)", name, type(exc).__name__)
            return
        report.decided += 1
        report.names.append(name)
