"""Validation of ``Authorization: Bearer <JWT>`` access tokens from the configured issuers.

Order of checks, cheapest and most hostile-input-proof first: size and shape; unverified header (``alg``
in the issuer's allow-list, a well-formed ``kid``, no ``jku``/``x5u``/``jwk``/``x5c``); issuer chosen by
the unverified ``iss`` matched exactly (``{tenantid}`` templates by a GUID regex); key lookup (rate
limited, see :mod:`valet.auth.jwks`); signature and claims with pyjwt; tenant rules. Every failure is a
401 ``invalid_token`` (or 503 ``idp_unavailable`` when keys cannot be fetched), never an escaping
exception.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from valet.caller import Caller
from valet.errors import ServiceUnavailable, Unauthenticated

from .challenge import unauthenticated
from .compact import is_compact_jws
from .jwks import IssuerKeys, KeysUnavailable, UnknownKey
from .settings import GUID, TENANT_PLACEHOLDER, AuthSettings, IssuerConfig
from .tokencache import VerifiedTokenCache

log = logging.getLogger("valet.auth")

MAX_TOKEN_LENGTH = 16 * 1024
MAX_KID_LENGTH = 128
_KID = re.compile(r"^[A-Za-z0-9._~+/=-]{1,128}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]*={0,2}$")
_GUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_EMBEDDED_GUID = re.compile(rf"/({_GUID_PATTERN})(?:/|$)")
_KEY_REFERENCE_HEADERS = ("jku", "x5u", "jwk", "x5c")

KeysFactory = Callable[[IssuerConfig], IssuerKeys]


def _unverified_parts(token: str) -> tuple[Any, Any]:
    """Header and payload of a token whose shape ``_TOKEN`` already checked, for routing only (which
    issuer, which key). pyjwt verifies everything afterwards; parsing here once instead of through two
    extra pyjwt passes keeps its per-character alphabet scan off the hot path twice."""
    header_b64, payload_b64, _ = token.split(".")

    def load(segment: str) -> Any:
        raw = segment.rstrip("=")
        if len(raw) % 4 == 1:
            raise ValueError("bad base64url length")
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))

    return load(header_b64), load(payload_b64)


def _invalid(detail: str) -> Unauthenticated:
    return unauthenticated(detail, "invalid_token")


@dataclass(frozen=True)
class _Trusted:
    config: IssuerConfig
    pattern: re.Pattern[str] | None  # for {tenantid} templates
    keys: IssuerKeys


class BearerValidator:
    def __init__(self, settings: AuthSettings, keys_factory: KeysFactory | None = None) -> None:
        self._leeway = settings.leeway_seconds
        self._verified = VerifiedTokenCache(settings.token_cache_seconds)

        def default_factory(config: IssuerConfig) -> IssuerKeys:
            return IssuerKeys(
                config,
                timeout=settings.http_timeout_seconds,
                min_refetch=settings.jwks_min_refetch_seconds,
                cache_lifetime=settings.jwks_cache_seconds,
                max_stale=settings.jwks_max_stale_seconds,
            )

        factory = keys_factory or default_factory
        self._exact: dict[str, _Trusted] = {}
        self._templates: list[_Trusted] = []
        for config in settings.issuers:
            if config.is_template:
                head, tail = config.issuer.split(TENANT_PLACEHOLDER)
                pattern = re.compile(re.escape(head) + f"(?P<tid>{_GUID_PATTERN})" + re.escape(tail))
                self._templates.append(_Trusted(config, pattern, factory(config)))
            else:
                self._exact[config.issuer] = _Trusted(config, None, factory(config))

    def validate(self, token: str) -> Caller:
        if len(token) > MAX_TOKEN_LENGTH or not is_compact_jws(token):  # one spelling per token
            raise _invalid("The bearer token is not a well-formed JWT")
        key = VerifiedTokenCache.key(token)
        cached = self._verified.get(key)
        if cached is not None:
            return cached
        caller, expires = self._verify(token)
        self._verified.put(key, caller, expires + self._leeway)
        return caller

    def _verify(self, token: str) -> tuple[Caller, float]:
        if len(token) > MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(token):
            raise _invalid("The bearer token is not a well-formed JWT")
        try:
            header, unverified = _unverified_parts(token)
        except (ValueError, TypeError, RecursionError):
            raise _invalid("The bearer token is not a well-formed JWT") from None
        if not isinstance(header, dict) or not isinstance(unverified, dict):
            raise _invalid("The bearer token header or payload is not a JSON object")
        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise _invalid("The bearer token has no issuer")
        trusted, iss_tenant = self._match_issuer(iss)
        self._check_header(header, trusted.config)
        kid: str = header["kid"]
        try:
            signing_key = trusted.keys.get(kid)
        except UnknownKey:  # the last key fetch succeeded and did not list it: 401, never a 5xx
            log.info("bearer rejected: unknown kid issuer=%s", trusted.config.issuer)
            raise _invalid("The bearer token is signed with a key its issuer does not publish (keys are "
                           "refreshed at most once per interval; a newly rotated key is accepted after that)") from None
        except KeysUnavailable as exc:
            raise ServiceUnavailable(
                "The identity provider's signing keys cannot be fetched; retry later",
                code="idp_unavailable",
                retry_after=exc.retry_after,
            ) from None
        audiences = trusted.config.audiences
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=list(trusted.config.algorithms),
                audience=audiences[0] if len(audiences) == 1 else list(audiences),
                issuer=iss,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub"],
                    "strict_aud": len(audiences) == 1,
                },
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("The bearer token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("The bearer token is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(f"The bearer token lacks the {exc.claim} claim") from None
        except jwt.InvalidAudienceError:
            raise _invalid("The bearer token is not meant for this service") from None
        except jwt.InvalidSignatureError:
            raise _invalid("The bearer token signature is invalid") from None
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise _invalid("The bearer token is invalid") from None
        caller = self._caller(claims, trusted.config, iss, iss_tenant)
        log.info("bearer accepted caller=%s", caller.id)
        return caller, float(claims["exp"])

    def _match_issuer(self, iss: str) -> tuple[_Trusted, str | None]:
        trusted = self._exact.get(iss)
        if trusted is not None:
            embedded = _EMBEDDED_GUID.search(iss)
            return trusted, embedded.group(1).lower() if embedded else None
        for candidate in self._templates:
            assert candidate.pattern is not None
            match = candidate.pattern.fullmatch(iss)
            if match:
                return candidate, match.group("tid").lower()
        raise _invalid("The bearer token issuer is not trusted")

    @staticmethod
    def _check_header(header: Mapping[str, Any], config: IssuerConfig) -> None:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in config.algorithms:
            raise _invalid("The bearer token algorithm is not accepted")
        if any(name in header for name in _KEY_REFERENCE_HEADERS):
            raise _invalid("The bearer token header carries a key reference, which is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH or not _KID.fullmatch(kid) or ".." in kid:
            raise _invalid("The bearer token has a missing or malformed key id")

    def _caller(
        self, claims: Mapping[str, Any], config: IssuerConfig, iss: str, iss_tenant: str | None
    ) -> Caller:
        tid = claims.get("tid")
        if tid is not None and (not isinstance(tid, str) or not GUID.fullmatch(tid)):
            raise _invalid("The bearer token tenant is malformed")
        tenant = tid.lower() if isinstance(tid, str) else None
        if config.is_template and tenant is None:
            raise _invalid("The bearer token has no tenant")
        if iss_tenant is not None and tenant is not None and tenant != iss_tenant:
            raise _invalid("The bearer token tenant does not match its issuer")
        if config.tenants is not None and (tenant or iss_tenant) not in config.tenants:
            raise _invalid("The bearer token tenant is not allowed")
        # A tid claim counts only from a multi-tenant ({tenantid}) issuer, where it names the issuer;
        # any other issuer's tenant is the GUID its own URL holds, or none.
        tenant = tenant if config.is_template else iss_tenant
        subject = claims.get("oid") or claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _invalid("The bearer token has no usable subject")
        client_id = claims.get("azp") or claims.get("appid")
        roles_claim = claims.get("roles", [])
        roles = (
            frozenset(r for r in roles_claim if isinstance(r, str))
            if isinstance(roles_claim, list)
            else frozenset()
        )
        # Entra's "scp" and RFC 9068's "scope": space-separated strings with the same meaning.
        scopes: frozenset[str] = frozenset()
        for name in ("scp", "scope"):
            value = claims.get(name, "")
            if isinstance(value, str):
                scopes |= frozenset(value.split())
        return Caller(
            kind="bearer",
            issuer=iss,
            subject=subject,
            tenant=tenant or iss_tenant,
            client_id=client_id if isinstance(client_id, str) else None,
            roles=roles,
            scopes=scopes,
        )
