"""One spelling per token: bearer and grant tokens must be canonical compact JWS before pyjwt sees them
(pyjwt alone accepts padded segments and non-zero spare bits, as the first assertions of each test show)."""

from __future__ import annotations

import base64
import secrets

import jwt
import pytest

from tests.support.auth import FakeIdP, bearer, claims, rsa_key, serve, token
from tests.unit.test_grant_token import CLAIMS
from valet.auth import Authenticator, AuthSettings
from valet.auth.compact import is_compact_jws
from valet.errors import Unauthenticated
from valet.grants.token import GrantKeyRing, GrantTokenError

AUDIENCE = "api://valet"


def respellings(tok: str) -> list[str]:
    """Other spellings of the same token that a lenient base64url decoder reads as the same bytes."""
    head, body, sig = tok.split(".")
    out = [f"{head}.{body}.{sig}=", f"{head}.{body}.{sig}==", f"{head}=.{body}.{sig}", f" {tok}", f"{tok}\n",
           f"{head}.{body}.{sig.replace('-', '+').replace('_', '/')}", f"{head}.{body}"]
    rest = len(sig) % 4
    if rest:  # flip one spare low bit of the last character: the same bytes, another spelling
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet[alphabet.index(sig[-1]) ^ 1]
        out.append(f"{head}.{body}.{sig[:-1]}{last}")
    return [t for t in out if t != tok]


def test_canonical_compact_jws() -> None:
    assert is_compact_jws("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
    assert is_compact_jws("QQ.QUI.QUJD")  # 1, 2 and 3 bytes
    for bad in ("QR.QUI.QUJD", "QQ.QUJ.QUJD", "QQ==.QUI.QUJD", "Q.QUI.QUJD", "QQ.QUI.", "..", "QQ.QUI.QUJD.QQ",
                "QQ.QU+.QUJD", "QQ.QUI.QUJD ", "QQ.QUI.QUJ\u0414", ""):
        assert not is_compact_jws(bad), bad


def test_a_bearer_token_has_one_spelling() -> None:
    key = rsa_key("k1")
    for idp in serve(FakeIdP(jwks={"keys": [key.jwk()]})):
        settings = AuthSettings.from_env({"VALET_AUTH_ISSUERS": f'[{{"issuer": "{idp.issuer}", '
                                          f'"audiences": ["{AUDIENCE}"]}}]', "VALET_AUTH_FAILURES_PER_MINUTE": "0"})
        auth = Authenticator(settings, None)
        good = token(key, claims(idp.issuer))
        assert auth.authenticate(bearer(good)).kind == "bearer"
        padded = good + "=="
        public = key.private.public_key()
        assert jwt.decode(padded, public, algorithms=["RS256"], audience=AUDIENCE)["iss"] == idp.issuer  # lenient
        for other in respellings(good):
            if other.strip() == good:
                continue  # whitespace around the token is the header's, stripped before the check
            with pytest.raises(Unauthenticated) as info:
                auth.authenticate(bearer(other))
            assert info.value.code == "invalid_token", other


def test_a_grant_token_has_one_spelling() -> None:
    ring = GrantKeyRing.parse("k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
                              setting="S")
    good = ring.sign(CLAIMS)
    assert ring.verify(good) == CLAIMS
    assert jwt.decode(good + "=", ring.key("k1"), algorithms=["HS256"], audience="valet-upload-grant",
                      options={"verify_exp": False})["uid"] == CLAIMS.upload_id  # what pyjwt alone accepts
    for other in respellings(good):
        with pytest.raises(GrantTokenError) as info:
            ring.verify(other)
        assert info.value.reason == "bad_grant", other
