"""What the reconciler and the status route make of an undecided upload's index tags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobProperties

from valet.validation.reconcile import Reconciler, attempts, attention

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("tags", "expected"), [
    (None, None), ({}, None), ({"valetattempts": "3"}, None),
    ({"valetstate": "error", "valetattempts": "1"}, "retrying"),
    ({"valetstate": "error", "valetattempts": "7"}, "retrying"),
    ({"valetstate": "error", "valetattempts": "8"}, "needs_operator"),
    ({"valetstate": "error", "valetattempts": "x"}, "retrying"),
])
def test_attention(tags: dict[str, str] | None, expected: str | None) -> None:
    assert attention(tags, max_attempts=8) == expected


def test_attempts_ignore_values_that_are_not_counts() -> None:
    assert (attempts(None), attempts({"valetattempts": "-1"}), attempts({"valetattempts": "12"})) == (0, 0, 12)


class _NoStorage:
    def get_container_client(self, name: str) -> object:
        return object()


def blob(age: timedelta, metadata: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> BlobProperties:
    props = BlobProperties()
    props.name, props.last_modified, props.metadata, props.tags = "a/b.png", NOW - age, metadata or {}, tags
    return props


@pytest.mark.parametrize(("props", "expected"), [
    (blob(timedelta(minutes=11)), True),
    (blob(timedelta(minutes=9)), False),  # its trigger may still come
    (blob(timedelta(hours=1), metadata={"valetstate": "tombstone"}), False),  # decided
    (blob(timedelta(hours=1), tags={"valetstate": "error", "valetattempts": "7"}), True),
    (blob(timedelta(hours=1), tags={"valetstate": "error", "valetattempts": "8"}), False),  # an operator's now
])
def test_candidates(props: BlobProperties, expected: bool) -> None:
    reconciler = Reconciler(blob_service=_NoStorage(), uploads="uploads", decide=print,  # type: ignore[arg-type]
                            is_decided=lambda name, metadata: (metadata or {}).get("valetstate") == "tombstone",
                            error_tags=lambda name, tags: tags or {},  # as if sealed: the seal is tested on Azurite
                            min_age=timedelta(minutes=10), max_attempts=8, limit=10)
    assert reconciler.candidate(props, NOW) is expected
