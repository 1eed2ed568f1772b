"""The pure rules of quarantine review."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.support.fakes import ALICE
from valet.caller import Caller
from valet.errors import BadRequest, ConfigurationError, Conflict, Forbidden, NotFound
from valet.review import rules
from valet.validation.reasons import Outcome
from valet.validation.records import Decision

REVIEWER = Caller(kind="bearer", issuer=ALICE.issuer, subject="r", tenant=ALICE.tenant,
                  roles=frozenset({"Uploads.Review"}))
AT = datetime(2026, 12, 6, 12, tzinfo=UTC)


def decision(**changes: object) -> Decision:
    base = {"outcome": Outcome.QUARANTINED, "reason": "type_mismatch", "detail": "", "upload_id": "u",
            "caller": ALICE.id, "decided_at": AT}
    return Decision(**{**base, **changes})  # type: ignore[arg-type]


def test_the_role_is_configurable_and_keys_carry_it_as_a_scope() -> None:
    assert rules.ReviewSettings.from_env({}).role == "Uploads.Review"
    settings = rules.ReviewSettings.from_env({"VALET_REVIEW_ROLE": "Ops.Quarantine"})
    with pytest.raises(NotFound):
        rules.require_reviewer(REVIEWER, settings)
    key = Caller(kind="apikey", issuer="apikey", subject="ops", scopes=frozenset({"Ops.Quarantine"}))
    rules.require_reviewer(key, settings)
    with pytest.raises(ConfigurationError):
        rules.ReviewSettings.from_env({"VALET_REVIEW_ROLE": "two roles"})


def test_own_uploads_are_recognised_by_record_or_by_partition() -> None:
    name = f"{ALICE.partition}/2026/12/06/u.png"
    with pytest.raises(Forbidden):
        rules.check_not_own(ALICE, decision(caller=""), name)
    with pytest.raises(Forbidden):
        rules.check_not_own(ALICE, decision(), "other/partition/u.png")
    rules.check_not_own(REVIEWER, decision(), name)


@pytest.mark.parametrize(("changes", "code"), [({"reason": "malware"}, "malware_verdict"),
                                               ({"review": "purged"}, "upload_purged"),
                                               ({"evidence": "head 10 of 99 bytes"}, "evidence_only")])
def test_what_can_never_be_released(changes: dict[str, str], code: str) -> None:
    with pytest.raises(Conflict) as caught:
        rules.check_releasable(decision(**changes))
    assert caught.value.code == code
    rules.check_releasable(decision())


def test_a_reason_is_required_trimmed_and_bounded() -> None:
    assert rules.parse_reason(json.dumps({"reason": "  a false positive  "}).encode()) == "a false positive"
    assert len(rules.parse_reason(json.dumps({"reason": "é" * 500}).encode())) == 500
    for body in (b"", b"[]", b"{", b'{"reason": null}', json.dumps({"reason": "ok"}).encode(),
                 json.dumps({"reason": "x" * 501}).encode(), json.dumps({"reason": "tab\there"}).encode()):
        with pytest.raises(BadRequest):
            rules.parse_reason(body)


def test_filters_parse_and_admit() -> None:
    f = rules.parse_filters({"reason": "malware", "since": "2026-12-06T00:00:00Z", "until": "2026-12-07T00:00:00+01:00",
                             "limit": "10", "continuation": "2026-12-06T11:00:00Z~a/b/c"})
    assert f.limit == 10 and f.after == ("2026-12-06T11:00:00Z", "a/b/c")
    assert f.until == datetime(2026, 12, 6, 23, tzinfo=UTC)
    assert f.admits(decision(reason="malware")) and not f.admits(decision())
    assert not rules.parse_filters({"caller": "someone"}).admits(decision())
    for params in ({"since": "2026-12-06"}, {"since": "2026-12-06T00:00:00"}, {"limit": "201"},
                   {"continuation": "x"}, {"reason": "a b"}):
        with pytest.raises(BadRequest):
            rules.parse_filters(params)
