"""Bearer token validation against a real local IdP (discovery + JWKS over HTTP)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.auth import (
    AUDIENCE,
    OTHER_TENANT,
    TENANT,
    FakeIdP,
    SigningKey,
    b64,
    bearer,
    claims,
    ec_key,
    raw_token,
    rsa_key,
    serve,
    token,
)
from valet.auth import Authenticator, AuthSettings
from valet.errors import Forbidden, ServiceUnavailable, Unauthenticated, ValetError

TIMEOUT = 0.5


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return rsa_key("key-1")


@pytest.fixture(scope="module")
def impostor() -> SigningKey:
    return rsa_key("key-1")  # same kid, different key


@pytest.fixture(scope="module")
def eckey() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture
def idp(key: SigningKey, eckey: SigningKey) -> Iterator[FakeIdP]:
    yield from serve(FakeIdP(jwks={"keys": [key.jwk(), eckey.jwk()]}))


@pytest.fixture
def attacker() -> Iterator[FakeIdP]:
    yield from serve(FakeIdP())


def make_auth(issuers: list[dict[str, Any]], **env: str) -> Authenticator:
    environ = {
        "VALET_AUTH_ISSUERS": json.dumps(issuers),
        "VALET_AUTH_HTTP_TIMEOUT_SECONDS": str(TIMEOUT),
        **env,
    }
    return Authenticator(AuthSettings.from_env(environ), None)


@pytest.fixture
def auth(idp: FakeIdP) -> Authenticator:
    return make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE], "algorithms": ["RS256", "ES256"]}])


def rejected(auth: Authenticator, tok: str, code: str = "invalid_token") -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        auth.authenticate(bearer(tok))
    assert info.value.code == code
    assert info.value.headers["WWW-Authenticate"].startswith('Bearer realm="valet", error="invalid_token"')
    assert tok not in info.value.detail
    return info.value


def test_valid_token_produces_caller(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    caller = auth.authenticate(bearer(token(key, claims(idp.issuer))))
    assert caller.kind == "bearer"
    assert caller.issuer == idp.issuer
    assert caller.subject == str(uuid.UUID(int=7))  # oid preferred over sub
    assert caller.tenant == TENANT
    assert caller.client_id == "client-app"
    assert "Uploads.Write" in caller.roles
    assert idp.hits["/jwks"] == 1
    assert idp.hits[f"/{TENANT}/v2.0/.well-known/openid-configuration"] == 1


def test_ec_token_accepted_when_algorithm_allowed(auth: Authenticator, idp: FakeIdP, eckey: SigningKey) -> None:
    assert auth.authenticate(bearer(token(eckey, claims(idp.issuer)))).tenant == TENANT


def test_algorithm_outside_allow_list_is_refused_before_key_lookup(idp: FakeIdP, eckey: SigningKey) -> None:
    auth = make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE]}])  # RS256 only
    rejected(auth, token(eckey, claims(idp.issuer)))
    assert idp.hits["/jwks"] == 0


def test_alg_none_is_refused(auth: Authenticator, idp: FakeIdP) -> None:
    rejected(auth, raw_token({"alg": "none", "kid": "key-1"}, claims(idp.issuer)))
    rejected(auth, raw_token({"alg": "none", "kid": "key-1"}, claims(idp.issuer)) + "")
    assert idp.hits["/jwks"] == 0


def test_hs256_signed_with_the_rsa_public_key_is_refused(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "kid": "key-1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims(idp.issuer)).encode())
    sig = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    rejected(auth, f"{header}.{payload}.{b64(sig)}")


def test_known_kid_signed_by_another_key_is_refused(
    auth: Authenticator, idp: FakeIdP, impostor: SigningKey
) -> None:
    err = rejected(auth, token(impostor, claims(idp.issuer)))
    assert "signature" in err.detail


def test_unknown_kid_flood_costs_at_most_one_refetch(idp: FakeIdP, key: SigningKey) -> None:
    # The per-address failure budget off, so all 50 forged tokens reach the key lookup.
    auth = make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE]}], VALET_AUTH_FAILURES_PER_MINUTE="0")
    auth.authenticate(bearer(token(key, claims(idp.issuer))))
    for _ in range(50):
        forged = SigningKey(uuid.uuid4().hex, key.private, "RS256")
        rejected(auth, token(forged, claims(idp.issuer)))  # fresh iat, issuer up: 401, never a 503 (issue 24)
    assert idp.hits["/jwks"] <= 2
    assert auth.authenticate(bearer(token(key, claims(idp.issuer)))).tenant == TENANT


def test_a_rotated_key_gets_401_inside_the_refetch_interval_then_works(idp: FakeIdP, key: SigningKey) -> None:
    """Issue 24 item 7: while the issuer is up, an unknown kid is a 401 with an error description, also
    for a token issued after our last fetch (was 503 idp_unavailable for the whole refetch interval)."""
    auth = make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE], "algorithms": ["RS256"]}],
                     VALET_AUTH_JWKS_MIN_REFETCH_SECONDS="1")
    auth.authenticate(bearer(token(key, claims(idp.issuer))))  # the key set is fetched now
    stale = rsa_key("key-0")  # never published
    rotated = rsa_key("key-2")
    idp.jwks = {"keys": [key.jwk(), rotated.jwk()]}  # the provider rotates right after our fetch
    fetches = idp.hits["/jwks"]
    error = rejected(auth, token(rotated, claims(idp.issuer)))  # fresh iat: still a 401, no fetch
    assert 'error_description="The bearer token is signed with a key its issuer does not publish' in \
        error.headers["WWW-Authenticate"]
    old = int(time.time()) - 3600
    rejected(auth, token(stale, claims(idp.issuer, iat=old, nbf=old)))
    assert idp.hits["/jwks"] == fetches
    time.sleep(1.1)
    caller = auth.authenticate(bearer(token(rotated, claims(idp.issuer))))
    assert caller.tenant == TENANT and idp.hits["/jwks"] == fetches + 1


@pytest.mark.parametrize("kid", ["k" * 129, "../../etc/passwd", "a b", "kid\u00e9", ""])
def test_oversized_or_odd_kid_is_refused_without_lookup(
    auth: Authenticator, idp: FakeIdP, key: SigningKey, kid: str
) -> None:
    err = rejected(auth, token(SigningKey(kid, key.private, "RS256"), claims(idp.issuer)))
    assert kid not in err.detail or kid == ""
    assert idp.hits["/jwks"] == 0


def test_missing_kid_is_refused(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    tok = jwt_without_kid(key, claims(idp.issuer))
    rejected(auth, tok)


def jwt_without_kid(key: SigningKey, payload: dict[str, Any]) -> str:
    import jwt

    return jwt.encode(payload, key.private, algorithm="RS256")


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk"])
def test_key_reference_headers_are_never_followed(
    auth: Authenticator, idp: FakeIdP, attacker: FakeIdP, key: SigningKey, impostor: SigningKey, header: str
) -> None:
    value: Any = f"{attacker.base}/{header}-keys"
    if header == "jwk":
        value = impostor.jwk()
        value["x5u"] = f"{attacker.base}/x5u-in-jwk"
    for signer in (key, impostor):
        rejected(auth, token(signer, claims(idp.issuer), {header: value}))
    assert sum(attacker.hits.values()) == 0


def test_expired_beyond_leeway_is_refused_and_within_leeway_accepted(
    auth: Authenticator, idp: FakeIdP, key: SigningKey
) -> None:
    now = int(time.time())
    err = rejected(auth, token(key, claims(idp.issuer, exp=now - 120, iat=now - 900, nbf=now - 900)))
    assert "expired" in err.detail
    caller = auth.authenticate(bearer(token(key, claims(idp.issuer, exp=now - 30, iat=now - 900, nbf=None))))
    assert caller.tenant == TENANT


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "iss", "aud"])
def test_missing_required_claim_is_refused(auth: Authenticator, idp: FakeIdP, key: SigningKey, claim: str) -> None:
    rejected(auth, token(key, claims(idp.issuer, **{claim: None})))


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_claims_in_the_future_beyond_leeway_are_refused(
    auth: Authenticator, idp: FakeIdP, key: SigningKey, claim: str
) -> None:
    err = rejected(auth, token(key, claims(idp.issuer, **{claim: int(time.time()) + 600})))
    assert "not valid yet" in err.detail


@pytest.mark.parametrize("aud", ["api://other", ["api://valet", "api://other"], [], "api://valet/"])
def test_wrong_or_ambiguous_audience_is_refused(
    auth: Authenticator, idp: FakeIdP, key: SigningKey, aud: Any
) -> None:
    rejected(auth, token(key, claims(idp.issuer, aud=aud)))


def test_several_configured_audiences_accept_any_of_them(idp: FakeIdP, key: SigningKey) -> None:
    auth = make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE, "00000000-0000-0000-0000-00000000abcd"]}])
    for aud in (AUDIENCE, "00000000-0000-0000-0000-00000000abcd", [AUDIENCE, "x"]):
        assert auth.authenticate(bearer(token(key, claims(idp.issuer, aud=aud)))).tenant == TENANT
    rejected(auth, token(key, claims(idp.issuer, aud="api://else")))


def test_issuer_must_match_exactly(idp: FakeIdP, key: SigningKey) -> None:
    v1 = f"https://sts.windows.net/{TENANT}/"
    auth = make_auth([
        {"issuer": v1, "audiences": [AUDIENCE], "jwksUri": f"{idp.base}/jwks"},
        {"issuer": idp.issuer, "audiences": [AUDIENCE]},
    ])
    assert auth.authenticate(bearer(token(key, claims(v1)))).issuer == v1
    for iss in (v1.rstrip("/"), v1 + "x", v1 + "/", "https://sts.windows.net/", idp.issuer + "/",
                idp.issuer.upper(), idp.issuer[:-1], " " + idp.issuer):
        err = rejected(auth, token(key, claims(iss)))
        assert "issuer" in err.detail


def test_v1_token_refused_when_only_v2_trusted(auth: Authenticator, key: SigningKey) -> None:
    rejected(auth, token(key, claims(f"https://sts.windows.net/{TENANT}/")))


@pytest.fixture
def multi(idp: FakeIdP) -> Authenticator:
    return make_auth([{
        "issuer": idp.base + "/{tenantid}/v2.0",
        "audiences": [AUDIENCE],
        "discovery": idp.base + "/organizations/v2.0/.well-known/openid-configuration",
        "tenants": [TENANT],
    }])


def test_multi_tenant_template_accepts_allowed_tenant(multi: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    assert multi.authenticate(bearer(token(key, claims(idp.issuer)))).tenant == TENANT
    assert idp.hits["/organizations/v2.0/.well-known/openid-configuration"] == 1


def test_multi_tenant_refuses_foreign_bad_or_mismatched_tenant(
    multi: Authenticator, idp: FakeIdP, key: SigningKey
) -> None:
    foreign = f"{idp.base}/{OTHER_TENANT}/v2.0"
    rejected(multi, token(key, claims(foreign, tid=OTHER_TENANT)))  # not in the allow-list
    rejected(multi, token(key, claims(idp.issuer, tid="not-a-guid")))
    rejected(multi, token(key, claims(idp.issuer, tid=None)))
    rejected(multi, token(key, claims(idp.issuer, tid=OTHER_TENANT)))  # tid != issuer tenant
    rejected(multi, token(key, claims(foreign, tid=TENANT)))
    rejected(multi, token(key, claims(f"{idp.base}/organizations/v2.0")))


def test_fixed_issuer_tid_must_match_issuer_tenant(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    rejected(auth, token(key, claims(idp.issuer, tid=OTHER_TENANT)))


def test_token_without_required_role_is_forbidden(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    with pytest.raises(Forbidden) as info:
        auth.authenticate(bearer(token(key, claims(idp.issuer, roles=["Other"], email="a@b.c", upn="a@b.c"))))
    assert info.value.code == "insufficient_scope"
    assert info.value.status == 403
    challenge = info.value.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="Uploads.Write"' in challenge


def test_rfc9068_scope_claim_is_honoured_like_scp(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    caller = auth.authenticate(bearer(token(key, claims(idp.issuer, roles=None, scope="openid Uploads.Write"))))
    assert "Uploads.Write" in caller.scopes


def test_scope_in_scp_claim_is_accepted(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    caller = auth.authenticate(bearer(token(key, claims(idp.issuer, roles=None, scp="openid Uploads.Write"))))
    assert "Uploads.Write" in caller.scopes


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[: len(t) // 2],
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t + ".extra",
        lambda t: t.replace(".", "=.", 1),
        lambda t: "!" + t,
        lambda t: b64(b"{not json") + "." + t.split(".", 1)[1],
        lambda t: b64(b"[1,2]") + "." + t.split(".", 1)[1],
        lambda t: t.split(".")[0] + "." + b64(b"nope") + "." + t.split(".")[2],
        lambda t: "a.b.c",
        lambda t: "x" * 20000,
        lambda t: "...",
    ],
)
def test_malformed_tokens_are_401_never_exceptions(
    auth: Authenticator, idp: FakeIdP, key: SigningKey, mangle: Any
) -> None:
    tok = mangle(token(key, claims(idp.issuer)))
    with pytest.raises(ValetError) as info:
        auth.authenticate(bearer(tok))
    assert info.value.status == 401


def test_non_bearer_authorization_and_missing_credentials(auth: Authenticator) -> None:
    from tests.support.auth import request

    with pytest.raises(Unauthenticated) as info:
        auth.authenticate(request())
    assert info.value.code == "missing_credentials"
    assert info.value.headers["WWW-Authenticate"] == 'Bearer realm="valet"'
    with pytest.raises(Unauthenticated) as info:
        auth.authenticate(request({"Authorization": "Basic dXNlcjpwYXNz"}))
    assert info.value.code == "invalid_request"


def test_jwks_down_is_503_quickly(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    idp.mode = "fail"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        auth.authenticate(bearer(token(key, claims(idp.issuer))))
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert info.value.code == "idp_unavailable"
    assert int(info.value.headers["Retry-After"]) >= 1
    # Further requests inside the refetch interval fail fast without another fetch.
    hits = sum(idp.hits.values())
    with pytest.raises(ServiceUnavailable):
        auth.authenticate(bearer(token(key, claims(idp.issuer))))
    assert sum(idp.hits.values()) == hits


def test_jwks_slow_is_503_within_timeout(auth: Authenticator, idp: FakeIdP, key: SigningKey) -> None:
    idp.mode = "slow"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        auth.authenticate(bearer(token(key, claims(idp.issuer))))
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + 1.0, elapsed
    assert info.value.code == "idp_unavailable"


def test_slow_jwks_after_discovery_is_503_within_timeout(idp: FakeIdP, key: SigningKey) -> None:
    auth = make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE], "jwksUri": f"{idp.base}/jwks"}])
    idp.mode = "slow"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        auth.authenticate(bearer(token(key, claims(idp.issuer))))
    assert time.monotonic() - started < TIMEOUT + 1.0


def test_cached_keys_keep_working_when_jwks_goes_down(idp: FakeIdP, key: SigningKey) -> None:
    clock = [1000.0]
    settings = AuthSettings.from_env({
        "VALET_AUTH_ISSUERS": json.dumps([{"issuer": idp.issuer, "audiences": [AUDIENCE]}]),
        "VALET_AUTH_HTTP_TIMEOUT_SECONDS": str(TIMEOUT),
        "VALET_AUTH_JWKS_CACHE_SECONDS": "60",
        "VALET_AUTH_TOKEN_CACHE_SECONDS": "0",  # this test is about the key cache, not the token cache
    })
    from valet.auth.bearer import BearerValidator
    from valet.auth.jwks import IssuerKeys

    def factory(config: Any) -> IssuerKeys:
        return IssuerKeys(config, timeout=TIMEOUT, min_refetch=30, cache_lifetime=60, max_stale=3600,
                          monotonic=lambda: clock[0])

    validator = BearerValidator(settings, factory)
    assert validator.validate(token(key, claims(idp.issuer))).tenant == TENANT
    idp.mode = "fail"
    for step in (10, 100, 1000):  # fresh, expired-but-stale (refetch fails), rate-limited stale
        clock[0] += step
        assert validator.validate(token(key, claims(idp.issuer))).tenant == TENANT
    assert idp.hits["/jwks"] <= 3
    clock[0] += 10_000  # beyond max_stale: keys no longer trusted
    with pytest.raises(ServiceUnavailable):
        validator.validate(token(key, claims(idp.issuer)))


def test_verified_token_is_remembered_without_another_key_lookup(idp: FakeIdP, key: SigningKey) -> None:
    auth = make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE]}])
    tok = token(key, claims(idp.issuer))
    first = auth.authenticate(bearer(tok))
    hits = dict(idp.hits)
    idp.mode = "fail"  # the issuer going down changes nothing for a token already verified
    assert auth.authenticate(bearer(tok)) == first
    assert idp.hits == hits
    tampered = tok[:-4] + ("AAAA" if not tok.endswith("AAAA") else "BBBB")
    rejected(auth, tampered)


def test_remembered_token_still_expires(idp: FakeIdP, key: SigningKey) -> None:
    auth = make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE]}], VALET_AUTH_LEEWAY_SECONDS="0")
    now = int(time.time())
    tok = token(key, claims(idp.issuer, iat=now - 10, exp=now + 1))
    auth.authenticate(bearer(tok))
    time.sleep(1.2)
    rejected(auth, tok)


def test_remembered_token_still_needs_the_role(idp: FakeIdP, key: SigningKey) -> None:
    auth = make_auth([{"issuer": idp.issuer, "audiences": [AUDIENCE]}])
    tok = token(key, claims(idp.issuer, roles=["Other.Role"]))
    for _ in range(2):
        with pytest.raises(Forbidden):
            auth.authenticate(bearer(tok))


def test_token_cache_is_bounded_and_can_be_disabled() -> None:
    from valet.auth.tokencache import VerifiedTokenCache
    from valet.caller import Caller

    clock = [0.0]
    cache = VerifiedTokenCache(300, max_entries=2, clock=lambda: clock[0])
    callers = [Caller(kind="bearer", issuer="i", subject=str(n)) for n in range(3)]
    for n, caller in enumerate(callers):
        cache.put(bytes([n]), caller, valid_until=1000)
    assert cache.get(bytes([0])) is None and cache.get(bytes([2])) == callers[2]
    clock[0] = 300  # ttl reached
    assert cache.get(bytes([2])) is None
    off = VerifiedTokenCache(0)
    off.put(b"k", callers[0], valid_until=1000)
    assert off.get(b"k") is None
