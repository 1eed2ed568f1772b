"""The grant carried by the blob name and/or the grant header: pure checks, real HMACs and real JWS."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from valet.grants import granted
from valet.grants.naming import granted_blob_name, new_upload_id, parse_granted_name
from valet.grants.policy import Policy
from valet.grants.token import GrantClaims, GrantKeyRing
from valet.validation.reasons import Reason, Rejection

NOW = datetime.now(UTC).replace(microsecond=0)
SKEW = timedelta(seconds=300)
POLICY = Policy.from_document(
    {"profiles": {"images": {"maxBytes": 1000, "types": {"image/png": ["png"], "image/jpeg": ["jpg"]}},
                  "xml": {"maxBytes": 1000, "types": {"application/xml": ["xml"], "text/xml": ["xml"]}}}},
    setting="test",
)
RING = GrantKeyRing({"k1": b"1" * 32, "k2": b"2" * 32}, "k1")
PARTITION = "tenant/u-alice"


def name_for(*, ring: GrantKeyRing = RING, kid: str = "k1", profile: str = "images", content_type: str = "image/png",
             ext: str = "png", size: int = 68, sha256: bool = False, container: str = "uploads") -> str:
    return granted_blob_name(
        partition=PARTITION, upload_id=new_upload_id(NOW, os.urandom), profile=profile, size=size,
        deadline=NOW + timedelta(minutes=3), sha256_declared=sha256, content_type=content_type, extension=ext,
        container=container, kid=kid, key=ring.key(kid) or b"",
    )


def header_for(name: str, *, content_type: str = "image/png", sha256: str | None = None,
               issued: datetime = NOW) -> str:
    facts = parse_granted_name(name)
    assert facts is not None
    return RING.sign(GrantClaims(
        upload_id=facts.upload_id, container="uploads", blob=name, size=facts.size, content_type=content_type,
        sha256=sha256, profile=facts.profile, caller="https://issuer#alice", filename="cat.png",
        issued_at=issued, expires_at=issued + timedelta(minutes=3)))


def check(name: str, metadata: dict[str, str] | None = None, ring: GrantKeyRing = RING) -> granted.GrantFacts:
    return granted.grant_facts(container="uploads", name=name, metadata=metadata, keys=ring, policy=POLICY,
                                  skew=SKEW)


def reason(name: str, metadata: dict[str, str] | None = None, ring: GrantKeyRing = RING) -> Reason:
    with pytest.raises(Rejection) as info:
        check(name, metadata, ring)
    return info.value.reason


def test_a_granted_name_alone_carries_the_grant() -> None:
    name = name_for(size=68)
    facts = check(name)
    assert (facts.carrier, facts.caller, facts.profile, facts.content_type, facts.size) == (
        "name", PARTITION, "images", "image/png", 68)
    assert facts.sha256 is None and facts.expires_at == NOW + timedelta(minutes=3)
    assert name.startswith(f"{PARTITION}/{NOW:%Y/%m/%d}/{facts.upload_id}.") and name.endswith(".png")
    assert len(name) < 200


def test_the_type_is_recovered_from_the_mac_when_two_types_share_an_extension() -> None:
    assert check(name_for(profile="xml", content_type="text/xml", ext="xml")).content_type == "text/xml"
    assert check(name_for(profile="xml", content_type="application/xml", ext="xml")).content_type == "application/xml"


@pytest.mark.parametrize("field", [1, 2, 3, 4])  # profile, size, deadline, flag: any change breaks the MAC
def test_a_name_with_a_changed_field_is_refused(field: int) -> None:
    directory, _, leaf = name_for(size=68).rpartition("/")
    parts = leaf.split(".")
    parts[field] = {1: "xml", 2: "69", 3: str(int(parts[3]) + 3600), 4: "n" if parts[4] == "h" else "h"}[field]
    forged = f"{directory}/{'.'.join(parts)}"
    assert reason(forged) in (Reason.BAD_GRANT, Reason.MISSING_GRANT, Reason.UNKNOWN_PROFILE)
    if field != 1:
        assert reason(forged) is Reason.BAD_GRANT


def test_a_name_signed_with_another_key_or_for_another_container_is_refused() -> None:
    attacker = GrantKeyRing({"k1": b"x" * 32}, "k1")
    assert reason(name_for(ring=attacker)) is Reason.BAD_GRANT
    assert reason(name_for(container="other")) is Reason.BAD_GRANT
    assert reason(name_for(ring=GrantKeyRing({"k9": b"9" * 32}, "k9"), kid="k9")) is Reason.BAD_GRANT


def test_a_name_moved_to_another_partition_is_refused() -> None:
    name = name_for()
    assert reason(name.replace(PARTITION, "tenant/u-mallory", 1)) is Reason.BAD_GRANT


def test_names_verify_through_a_key_rotation() -> None:
    old = name_for(kid="k2")
    assert check(old).carrier == "name"  # k2 is no longer active but still configured
    assert reason(old, ring=GrantKeyRing({"k1": b"1" * 32}, "k1")) is Reason.BAD_GRANT  # k2 retired


def test_a_name_of_an_unconfigured_profile_is_unknown_profile() -> None:
    ring_policy = Policy.from_document({"profiles": {"images": {"maxBytes": 1, "types": {"image/png": ["png"]}}}},
                                       setting="t")
    name = name_for(profile="xml", content_type="text/xml", ext="xml")
    with pytest.raises(Rejection) as info:
        granted.grant_facts(container="uploads", name=name, metadata=None, keys=RING, policy=ring_policy,
                               skew=SKEW)
    assert info.value.reason is Reason.UNKNOWN_PROFILE


def test_a_declared_sha256_needs_the_header() -> None:
    name = name_for(sha256=True)
    assert reason(name) is Reason.MISSING_GRANT
    facts = check(name, {"valetgrant": header_for(name, sha256="AB" * 32)})
    assert (facts.carrier, facts.sha256, facts.filename) == ("name+header", "ab" * 32, "cat.png")


def test_legacy_and_foreign_names_need_the_header() -> None:
    assert reason("tenant/u-alice/2026/01/01/bare.png") is Reason.MISSING_GRANT
    assert reason("x.png") is Reason.MISSING_GRANT


@pytest.mark.parametrize("key", ["valetgrant", "Valetgrant", "VALETGRANT", "ValetGrant"])
def test_the_grant_header_is_found_whatever_the_case(key: str) -> None:
    name = name_for()
    assert check(name, {key: header_for(name)}).carrier == "name+header"


def test_the_same_metadata_name_twice_in_different_case_is_refused() -> None:
    name = name_for()
    assert reason(name, {"valetgrant": header_for(name), "VALETGRANT": header_for(name)}) is Reason.BAD_GRANT


def test_a_header_for_another_blob_or_an_invalid_header_quarantines_even_with_a_good_name() -> None:
    name, other = name_for(), name_for()
    assert reason(name, {"valetgrant": header_for(other)}) is Reason.PATH_MISMATCH
    assert reason(name, {"valetgrant": "not-a-token"}) is Reason.BAD_GRANT


def test_a_header_whose_type_disagrees_with_the_name_is_refused() -> None:
    name = name_for()
    assert reason(name, {"valetgrant": header_for(name, content_type="image/jpeg")}) is Reason.PATH_MISMATCH


def test_a_header_issued_slightly_in_the_future_is_allowed_within_the_skew() -> None:
    name = name_for()
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120)  # pyjwt checks iat on the real clock
    assert check(name, {"valetgrant": header_for(name, issued=ahead)}).carrier
    with pytest.raises(Rejection) as info:
        granted.grant_facts(container="uploads", name=name, keys=RING, policy=POLICY, skew=timedelta(0),
                               metadata={"valetgrant": header_for(name, issued=ahead)})
    assert info.value.reason is Reason.BAD_GRANT


def test_the_window_allows_the_skew_and_no_more() -> None:
    facts = check(name_for())
    granted.check_window(facts, facts.expires_at + SKEW, SKEW)
    granted.check_window(facts, None, SKEW)
    with pytest.raises(Rejection) as info:
        granted.check_window(facts, facts.expires_at + SKEW + timedelta(seconds=1), SKEW)
    assert info.value.reason is Reason.GRANT_EXPIRED
    with pytest.raises(Rejection):
        granted.check_window(replace(facts), facts.expires_at + timedelta(seconds=1), timedelta(0))


@pytest.mark.parametrize("stored", [None, "", "application/octet-stream", "image/png", "IMAGE/PNG; x=1",
                                    "image/x-png"])
def test_an_undeclared_or_matching_stored_type_passes(stored: str | None) -> None:
    granted.check_stored_type(stored, "image/png")


@pytest.mark.parametrize("stored", ["text/html", "image/jpeg", "application/json"])
def test_a_different_declared_stored_type_is_a_mismatch(stored: str) -> None:
    with pytest.raises(Rejection) as info:
        granted.check_stored_type(stored, "image/png")
    assert info.value.reason is Reason.CONTENT_TYPE_MISMATCH


@pytest.mark.parametrize("name", ["", "a/b", "t/u/2026/01/01/x.y.z", "../" * 400 + "x",
                                  "t/u-a/2026/01/01/019aabbc-0000-7000-8000-000000000000.images.1.1.n.k1.zz.png"])
def test_odd_names_do_not_parse(name: str) -> None:
    assert parse_granted_name(name) is None
