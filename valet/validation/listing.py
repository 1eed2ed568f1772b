"""A container listing that a timer walks a few pages per run, resuming where the last run stopped.

The reconciler and the staged-block discard both list the uploads container on a timer with bounded work
per run. Each run starts at the page where the previous one stopped (per process): a page the caller
left early (its own work limit reached, or a storage error) is listed again next time, since it may hold
more candidates; a page finished moves the marker on; the end of the container starts the next run at
the beginning.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from azure.storage.blob import BlobProperties, ContainerClient

PAGE_SIZE = 1000


class PagedReport(Protocol):
    pages: int  # listing pages read in this run
    complete: bool  # the listing reached the end of the container in this run


class ResumableListing:
    def __init__(self, container: ContainerClient, include: list[str], max_pages: int) -> None:
        self._container, self._include, self._max_pages = container, include, max_pages
        self._marker: str | None = None  # where the last run's listing stopped

    def pages(self, report: PagedReport) -> Iterator[Iterable[BlobProperties]]:
        """This run's pages. Leave the loop early (``break``, or an exception) and the page is listed again
        next run; storage errors of the listing itself propagate to the caller."""
        pages: Any = self._container.list_blobs(include=self._include, results_per_page=PAGE_SIZE).by_page(
            continuation_token=self._marker
        )  # an ItemPaged page iterator: its continuation_token is where the next page starts
        for page in pages:
            report.pages += 1
            yield page
            self._marker = pages.continuation_token  # reached only when the caller finished the page
            if self._marker is None:
                report.complete = True
                return
            if report.pages >= self._max_pages:
                return
