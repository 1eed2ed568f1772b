"""No token, API key, secret or hash ever reaches a log record, whatever the outcome."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from tests.support.auth import AUDIENCE, FakeIdP, bearer, claims, request, rsa_key, serve, token
from tests.support.fakes import InMemoryKeyStore
from valet.auth import Authenticator, AuthSettings, apikeys
from valet.auth.keytool import main as keytool
from valet.errors import ValetError

PEPPER = base64.b64encode(b"q" * 32).decode()


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    yield from serve(FakeIdP())


def test_no_credentials_in_logs(idp: FakeIdP, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root logger, every library included
    key = rsa_key("log-key")
    idp.jwks = {"keys": [key.jwk()]}
    env = {
        "VALET_AUTH_ISSUERS": json.dumps([{"issuer": idp.issuer, "audiences": [AUDIENCE]}]),
        "VALET_AUTH_HTTP_TIMEOUT_SECONDS": "0.5",
        "VALET_APIKEY_PEPPER": PEPPER,
        "VALET_RATE_LIMIT_BURST": "3",
    }
    store = InMemoryKeyStore()
    out = io.StringIO()
    assert keytool(["create", "--owner", "o", "--name", "n"], store_factory=lambda s: store,
                   environ=env, out=out) == 0
    match = re.search(apikeys.SCANNER_REGEX, out.getvalue())
    assert match
    api_key = match.group(0)
    record = store.list()[0]
    auth = Authenticator(AuthSettings.from_env(env), store)

    good = token(key, claims(idp.issuer))
    secrets = [
        good,
        good.split(".")[2],
        token(key, claims(idp.issuer, roles=[])),
        token(key, claims(idp.issuer, exp=1, iat=0)),
        token(key, claims(idp.issuer, aud="api://nope")),
        token(key, claims(idp.issuer), {"jku": idp.base + "/x"}),
        good[:-5],
        api_key,
        apikeys.parse(api_key).secret,
        api_key[:-1] + ("A" if api_key[-1] != "A" else "B"),
        apikeys.generate(record.key_id)[0],
        record.secret_hash,
        PEPPER,
    ]
    requests = [bearer(t) for t in secrets[:7] + [secrets[2]]]
    requests += [request({"X-API-Key": k}) for k in (api_key, secrets[9], secrets[10], api_key, api_key, api_key)]
    requests += [request({"X-API-Key": api_key}, url="http://valet.example/api/uploads")]
    requests += [request(params={"apiKey": api_key})]
    for req in requests:
        try:
            auth.admit(req)
        except ValetError as exc:
            for s in secrets:
                assert s not in exc.detail and s not in json.dumps(exc.headers)
    idp.mode = "fail"
    auth2 = Authenticator(AuthSettings.from_env(env), store)
    with pytest.raises(ValetError):
        auth2.admit(bearer(good))

    text = "\n".join(r.getMessage() + repr(r.args) + repr(r.__dict__) for r in caplog.records)
    assert "apikey accepted" in text and "bearer accepted" in text and "rate limited" in text
    for s in secrets:
        assert s not in text
