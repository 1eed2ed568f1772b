"""``valet dev`` adds its dev issuer to the configured ones and never replaces them."""

from __future__ import annotations

import json

import pytest

from valet.local.dev import with_dev_issuer

DEV = json.dumps([{"issuer": "http://127.0.0.1:7099/dev", "audiences": ["api://valet-dev"]}])
REAL = {"issuer": "https://login.example.com/tenant/v2.0", "audiences": ["valet"]}


@pytest.mark.parametrize("configured", [None, "", "  ", "[]"])
def test_nothing_configured_trusts_the_dev_issuer_alone(configured: str | None) -> None:
    assert json.loads(with_dev_issuer(configured, DEV)) == json.loads(DEV)


def test_a_configured_issuer_is_kept_next_to_the_dev_one() -> None:
    merged = json.loads(with_dev_issuer(json.dumps([REAL]), DEV))
    assert merged == [REAL, *json.loads(DEV)]


def test_a_stale_entry_for_the_dev_issuer_is_replaced_not_duplicated() -> None:
    stale = {"issuer": "http://127.0.0.1:7099/dev", "audiences": ["old"]}
    merged = json.loads(with_dev_issuer(json.dumps([stale, REAL]), DEV))
    assert merged == [REAL, *json.loads(DEV)]


@pytest.mark.parametrize("configured", ["{", '{"issuer": "x"}', "[1]"])
def test_a_malformed_setting_is_a_clear_error(configured: str) -> None:
    with pytest.raises(ValueError, match="VALET_AUTH_ISSUERS"):
        with_dev_issuer(configured, DEV)
