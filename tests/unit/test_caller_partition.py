"""The caller partition is injective (issue 24 item 6): no two (kind, issuer, tenant, subject) share one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from valet.caller import Caller, safe_segment

ENTRA = "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0"
TID = "11111111-1111-1111-1111-111111111111"
SEGMENTISH = st.one_of(st.text(max_size=70), st.from_regex(r"h-[0-9a-f]{32}", fullmatch=True),
                       st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))


@settings(max_examples=500, deadline=None)
@given(SEGMENTISH, SEGMENTISH)
def test_safe_segment_is_injective(a: str, b: str) -> None:
    if a != b:
        assert safe_segment(a) != safe_segment(b)


def test_a_subject_spelled_as_a_hash_is_hashed_itself() -> None:
    hashed = safe_segment("alice@example.com")
    assert hashed.startswith("h-") and safe_segment(hashed) != hashed
    assert safe_segment("plain-Subject_1") == "plain-Subject_1"  # plain values keep their segment


def test_entra_callers_keep_the_tenant_segment_they_always_had() -> None:
    v2 = Caller(kind="bearer", issuer=ENTRA, subject="oid-1", tenant=TID)
    v1 = Caller(kind="bearer", issuer=f"https://sts.windows.net/{TID}/", subject="oid-1", tenant=TID)
    assert v2.partition == v1.partition == f"{TID}/u-oid-1"


def test_other_issuers_get_their_own_segment_whatever_tenant_they_name() -> None:
    other = Caller(kind="bearer", issuer="https://idp.example/", subject="oid-1", tenant=TID)
    guid_issuer = Caller(kind="bearer", issuer=TID, subject="oid-1")
    entra = Caller(kind="bearer", issuer=ENTRA, subject="oid-1", tenant=TID)
    assert len({other.partition, guid_issuer.partition, entra.partition}) == 3
    key = Caller(kind="apikey", issuer="apikey", subject="oid-1", tenant=TID)
    assert key.partition != entra.partition
