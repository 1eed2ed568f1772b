"""Removing tombstones once the SAS they guard against can no longer be replayed.

Tombstones carry index tags (``valetstate=tombstone``, ``valetuntil=<UTC time>``), so one Find Blobs by
Tags query returns the expired ones without listing the container. Each run deletes at most ``limit``;
every delete is conditional on the ETag seen, so a tombstone rewritten meanwhile (its outcome updated)
is left for the next run.

Tags prove nothing (a client can send ``x-ms-tags`` with its upload on Azurite): only a blob whose
metadata carries a valid seal is deleted. The delete takes the blob's snapshots with it
(``delete_snapshots="include"``; the upload's SAS lets its holder snapshot the tombstone too, and a plain
delete then fails with 409 ``SnapshotsPresent``), and one blob that cannot be deleted is logged and
skipped, never the end of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from valet.clock import utcnow
from valet.validation import records
from valet.validation.trusted import Sealer

log = logging.getLogger("valet.validation")


def sweep_tombstones(
    service: BlobServiceClient, container: str, *, limit: int, sealer: Sealer,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Delete up to ``limit`` expired tombstones from ``container``; returns how many were deleted."""
    now = records.timestamp(clock())
    query = f"\"{records.STATE}\" = '{records.TOMBSTONE}' AND \"{records.UNTIL}\" < '{now}'"
    client = service.get_container_client(container)
    deleted = skipped = 0
    # Full pages: Azurite 3.37 applies maxresults before the filter and then ends the listing early.
    for found in client.find_blobs_by_tags(query, results_per_page=1000):
        if deleted >= limit:
            break
        blob = client.get_blob_client(found.name)
        try:
            props = blob.get_blob_properties()
            until = records.parse_timestamp(props.metadata.get(records.UNTIL))
            if (not records.is_tombstone(props.metadata) or not sealer.verify(container, found.name, props.metadata)
                    or until is None or records.timestamp(until) >= now):
                continue  # the tag index lags, or the tags were not ours: the sealed blob itself decides
            blob.delete_blob(delete_snapshots="include", etag=props.etag,
                             match_condition=MatchConditions.IfNotModified)
            deleted += 1
        except (ResourceNotFoundError, ResourceModifiedError):
            continue
        except Exception as exc:  # noqa: BLE001 - one blob that cannot be removed never stops the sweep
            skipped += 1
            log.warning("tombstone %s/%s not removed (%s: %s); skipped until the next run", container,
                        found.name, type(exc).__name__, getattr(exc, "error_code", None) or "-")
    if deleted or skipped:
        log.info("removed %d expired tombstones from %s (%d skipped)", deleted, container, skipped)
    return deleted
