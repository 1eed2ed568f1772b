"""Every parser of client-writable metadata, tags and properties answers "invalid", never raises (issue 24,
item 1): a create-only SAS lets the uploader write any ``x-ms-meta-*`` name and value (and, on Azurite,
index tags), and whatever they wrote must be data for the validator, the status route, the reconciler and
the sweep, never an exception. Property tests over arbitrary names and values (surrogates, non-ASCII,
very long digit strings, separators) plus the exact values that crashed before the fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_grants_granted import POLICY, RING, name_for
from valet.grants import granted
from valet.validation import records, trusted
from valet.validation.reasons import Outcome, Rejection
from valet.validation.reconcile import attempts, attention
from valet.validation.records import Decision

ANY_CHAR = st.characters(codec=None, exclude_categories=())  # includes lone surrogates and controls
ANY_TEXT = st.text(ANY_CHAR, max_size=40)
VALETISH = st.sampled_from([trusted.SEAL, records.STATE, records.UNTIL, records.OUTCOME, records.ATTEMPTS,
                            "valetsize", "valetdecidedat", "valetgrant", "ValetSeal", "VALETGRANT"])
NAMES = st.one_of(VALETISH, ANY_TEXT)
SEALISH = st.one_of(ANY_TEXT, st.builds(lambda kid, tail: f"v1.{kid}.{tail}", st.sampled_from(["k1", "k2", "x"]),
                                        ANY_TEXT))
VALUES = st.one_of(ANY_TEXT, SEALISH, st.text("0123456789²³¹٣", min_size=1, max_size=6000))
METADATA = st.dictionaries(NAMES, VALUES, max_size=8)
SEALER = trusted.Sealer(RING)


@settings(max_examples=400, deadline=None)
@given(METADATA)
def test_the_seal_check_is_total(metadata: dict[str, str]) -> None:
    assert SEALER.verify("uploads", "a/b.png", metadata) in (True, False)
    assert SEALER.verify("uploads", "a/b.png", {**metadata, records.STATE: records.TOMBSTONE}) in (True, False)


@pytest.mark.parametrize("value", ["v1.k1.\xe9", "v1.k1.\udcff", "v1.k1." + "é" * 43, "v1.\xe9.abc", "v1.k1"])
def test_a_non_ascii_seal_is_invalid_not_a_crash(value: str) -> None:
    """The issue's reproduction: ``hmac.compare_digest`` raised TypeError on a non-ASCII str."""
    assert SEALER.verify("uploads", "a/b.png", {records.STATE: records.TOMBSTONE, trusted.SEAL: value}) is False


def test_a_genuine_seal_still_verifies() -> None:
    sealed = SEALER.seal("uploads", "a/b.png", {records.STATE: records.TOMBSTONE, records.OUTCOME: "accepted"})
    assert SEALER.verify("uploads", "a/b.png", sealed)
    assert SEALER.verify("uploads", "a/b.png", {k.upper(): v for k, v in sealed.items()})


@settings(max_examples=400, deadline=None)
@given(METADATA)
def test_records_and_tags_parse_anything(metadata: dict[str, str]) -> None:
    decision = Decision.from_metadata(metadata, fallback=Outcome.QUARANTINED)
    assert isinstance(decision.outcome, Outcome)
    assert decision.size is None or decision.size >= 0
    assert records.is_tombstone(metadata) in (True, False)
    records.parse_timestamp(metadata.get(records.UNTIL))
    assert attempts(metadata) >= 0
    assert attention({**metadata, records.STATE: records.ERROR}, 8) in ("retrying", "needs_operator")
    assert isinstance(trusted.reserved_metadata(metadata), list)


@pytest.mark.parametrize("value", ["²", "٣", "9" * 5000, "-1", " 3", "³" * 10])
def test_odd_digit_strings_are_not_counts(value: str) -> None:
    """``str.isdigit`` is true for superscripts and other scripts' digits, which ``int`` refuses, and
    ``int`` refuses more than 4300 digits: each was a ValueError in a background function."""
    assert attempts({records.ATTEMPTS: value}) == 0
    decision = Decision.from_metadata({"valetsize": value, "valetoutcome": "accepted"}, fallback=Outcome.QUARANTINED)
    assert decision.size is None


@settings(max_examples=300, deadline=None)
@given(METADATA)
def test_the_grant_check_rejects_or_answers(metadata: dict[str, str]) -> None:
    name = name_for()
    for candidate in (name, "a/b.png", name + "\udcff"):
        try:
            granted.grant_facts(container="uploads", name=candidate, metadata=metadata, keys=RING,
                                   policy=POLICY, skew=timedelta(seconds=300))
        except Rejection:
            pass


def test_timestamps_of_any_shape_are_absent_not_errors() -> None:
    for value in ("", "\x00", "2026-13-99T99:99:99Z", "\udcff", "9" * 10000, "2026-01-01T00:00:00Z\xe9"):
        assert records.parse_timestamp(value) is None
    assert records.parse_timestamp("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
