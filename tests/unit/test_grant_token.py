from __future__ import annotations

import base64
import json
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from valet.errors import ConfigurationError
from valet.grants.token import GrantClaims, GrantKeyRing, GrantTokenError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CLAIMS = GrantClaims(
    upload_id="019aabbc-0000-7000-8000-000000000000",
    container="uploads",
    blob="t/u-a/2026/11/22/019aabbc-0000-7000-8000-000000000000.png",
    size=123,
    content_type="image/png",
    sha256=None,
    profile="images",
    caller="https://issuer#alice",
    filename="cat.png",
    issued_at=NOW,
    expires_at=NOW + timedelta(minutes=3),
)


def key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def test_round_trip() -> None:
    ring = GrantKeyRing.parse(f"k1:{key()}", setting="S")
    assert ring.verify(ring.sign(CLAIMS)) == CLAIMS


def test_sha256_claim_round_trips() -> None:
    ring = GrantKeyRing.parse(f"k1:{key()}", setting="S")
    claims = replace(CLAIMS, sha256="ab" * 32)
    assert ring.verify(ring.sign(claims)).sha256 == "ab" * 32


def test_expired_grant_still_verifies_because_the_validator_judges_time() -> None:
    ring = GrantKeyRing.parse(f"k1:{key()}", setting="S")
    old = replace(CLAIMS, issued_at=NOW - timedelta(days=3), expires_at=NOW - timedelta(days=3) + timedelta(minutes=3))
    assert ring.verify(ring.sign(old)).expires_at < NOW


def test_rotation_new_key_signs_old_key_still_verifies() -> None:
    old_key, new_key = key(), key()
    before = GrantKeyRing.parse(f"old:{old_key}", setting="S")
    token = before.sign(CLAIMS)
    after = GrantKeyRing.parse(f"new:{new_key},old:{old_key}", setting="S")
    assert after.active == "new"
    assert after.verify(token) == CLAIMS
    assert jwt.get_unverified_header(after.sign(CLAIMS))["kid"] == "new"
    retired = GrantKeyRing.parse(f"new:{new_key}", setting="S")
    with pytest.raises(GrantTokenError) as info:
        retired.verify(token)
    assert info.value.reason == "bad_grant"


@pytest.mark.parametrize("token", [None, ""])
def test_missing(token: str | None) -> None:
    with pytest.raises(GrantTokenError) as info:
        GrantKeyRing.parse(f"k1:{key()}", setting="S").verify(token)
    assert info.value.reason == "missing_grant"


def forged_tokens(ring_key: str) -> list[str]:
    good = GrantKeyRing.parse(f"k1:{ring_key}", setting="S").sign(CLAIMS)
    header, payload, sig = good.split(".")
    bigger = base64.urlsafe_b64encode(
        json.dumps({**json.loads(base64.urlsafe_b64decode(payload + "==")), "size": 999999}).encode()
    ).decode().rstrip("=")
    other = GrantKeyRing.parse(f"k1:{key()}", setting="S").sign(CLAIMS)
    none_alg = jwt.encode(CLAIMS.to_claims(), None, algorithm="none", headers={"kid": "k1"})
    return [
        f"{header}.{bigger}.{sig}",  # payload changed, signature kept
        other,  # same kid, other key
        none_alg,
        good[:-3],  # truncated
        "not-a-token",
        "a.b.c",
        good + "x",
        jwt.encode({**CLAIMS.to_claims(), "aud": "something-else"}, base64.urlsafe_b64decode(ring_key + "=="),
                   algorithm="HS256", headers={"kid": "k1"}),
    ]


def test_forgeries_are_rejected() -> None:
    ring_key = key()
    ring = GrantKeyRing.parse(f"k1:{ring_key}", setting="S")
    for token in forged_tokens(ring_key):
        with pytest.raises(GrantTokenError) as info:
            ring.verify(token)
        assert info.value.reason == "bad_grant"


@pytest.mark.parametrize(
    "value",
    ["", "k1", "k1:", "k1:short", "bad id:" + "A" * 43, "k1:" + "A" * 43 + ",k1:" + "B" * 43, "k1:***"],
)
def test_bad_key_settings_fail_without_echoing_the_value(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        GrantKeyRing.parse(value, setting="VALET_GRANT_SIGNING_KEYS")
    assert "VALET_GRANT_SIGNING_KEYS" in info.value.detail
    secret_part = value.partition(":")[2]
    assert not secret_part or secret_part not in info.value.detail


def test_repr_hides_key_material() -> None:
    k = key()
    assert k not in repr(GrantKeyRing.parse(f"k1:{k}", setting="S"))


def test_upload_ids_bound_before_a_rotation_still_belong_to_their_caller() -> None:
    import os

    from valet.grants.naming import bind_upload_id, new_upload_id, upload_id_belongs_to

    old_key, new_key = key(), key()
    before = GrantKeyRing.parse(f"old:{old_key}", setting="S")
    upload_id = bind_upload_id(new_upload_id(NOW, os.urandom), before.all_keys()[0], "t/u-alice")
    after = GrantKeyRing.parse(f"new:{new_key},old:{old_key}", setting="S")
    assert after.all_keys()[0] == base64.urlsafe_b64decode(new_key + "==")
    assert any(upload_id_belongs_to(upload_id, k, "t/u-alice") for k in after.all_keys())
    assert not any(upload_id_belongs_to(upload_id, k, "t/u-mallory") for k in after.all_keys())
