"""Settings of the authentication layer, read once at start-up.

=================================== ================ ===========================================================
Setting                             Default          Meaning
=================================== ================ ===========================================================
``VALET_AUTH_ISSUERS``              ``[]``           JSON list of trusted token issuers (see :class:`IssuerConfig`).
                                                     Empty: bearer tokens are refused.
``VALET_AUTH_REQUIRED_ROLES``       ``Uploads.Write`` Space/comma separated; every value must appear in the
                                                     token's ``roles`` claim or space-separated ``scp`` or
                                                     ``scope`` (RFC 9068) claim
                                                     (API keys: in the key record's scopes).
``VALET_AUTH_LEEWAY_SECONDS``       ``60``           Clock skew allowed on ``exp``/``nbf``/``iat`` (0-300).
``VALET_AUTH_HTTP_TIMEOUT_SECONDS`` ``3``            Timeout of one discovery/JWKS request (0.1-30).
``VALET_AUTH_JWKS_MIN_REFETCH_SECONDS`` ``30``       Minimum interval between two JWKS/discovery fetches per
                                                     issuer (unknown ``kid`` floods, outages).
``VALET_AUTH_JWKS_CACHE_SECONDS``   ``3600``         Age after which a JWKS is refreshed.
``VALET_AUTH_JWKS_MAX_STALE_SECONDS`` ``86400``      How long cached keys keep working while the JWKS
                                                     endpoint is down.
``VALET_AUTH_TOKEN_CACHE_SECONDS`` ``300``          How long a verified token is remembered (0-900; 0 off);
                                                     never past its ``exp``. See :mod:`valet.auth.tokencache`.
``VALET_APIKEY_PEPPER``             (unset)          Secret, base64/base64url of >= 32 bytes; key of the
                                                     HMAC-SHA-256 stored per API key. Unset: API keys disabled.
``VALET_APIKEY_ALLOW_QUERY``        ``false``        Accept the key in the ``apiKey`` query parameter.
``VALET_APIKEY_CACHE_SECONDS``      ``60``           Key records are cached this long (0-600): the upper
                                                     bound on how late a revocation or expiry edit takes effect.
``VALET_APIKEY_CONTAINER``          ``valet-apikeys`` Blob container of the key records.
``VALET_ALLOW_INSECURE_HTTP``       ``false``        Accept API keys over plain HTTP (local development only).
``VALET_TRUSTED_PROXIES``           (none)           Comma separated IPs/CIDRs whose ``X-Forwarded-Proto`` is
                                                     honoured (see :mod:`valet.auth.transport`).
``VALET_RATE_LIMIT_PER_MINUTE``     ``120``          Sustained requests per caller per instance (0 disables).
``VALET_RATE_LIMIT_BURST``          ``20``           Bucket size: requests a caller may send at once.
``VALET_STATUS_RATE_LIMIT_PER_MINUTE`` ``600``       Status reads and profile lists per caller per instance
                                                     (its own bucket; clients poll). 0 disables.
``VALET_STATUS_RATE_LIMIT_BURST``   ``60``           Bucket size of the status budget.
``VALET_AUTH_FAILURES_PER_MINUTE``  ``30``           Failed authentications (401) per client address per
                                                     instance; beyond the burst: 429 before any check or
                                                     lookup (see :class:`valet.auth.ratelimit.FailureThrottle`).
                                                     0 disables.
``VALET_AUTH_FAILURES_BURST``       ``20``           Failures an address may have at once.
``VALET_AUTH_GLOBAL_FAILURES_PER_MINUTE`` ``600``    Key-store reads for uncached key ids that may fail, all
                                                     addresses together, per instance. 0 disables.
``VALET_AUTH_GLOBAL_FAILURES_BURST`` ``100``         Bucket size of that global ceiling.
``VALET_APIKEY_NEGATIVE_CACHE_SECONDS`` ``10``       Unknown key ids are remembered this long (0-600, never
                                                     longer than ``VALET_APIKEY_CACHE_SECONDS``; 0 off).
=================================== ================ ===========================================================
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from valet.envreader import EnvReader
from valet.errors import ConfigurationError

AUTH_ISSUERS = "VALET_AUTH_ISSUERS"
AUTH_REQUIRED_ROLES = "VALET_AUTH_REQUIRED_ROLES"
AUTH_LEEWAY_SECONDS = "VALET_AUTH_LEEWAY_SECONDS"
AUTH_HTTP_TIMEOUT_SECONDS = "VALET_AUTH_HTTP_TIMEOUT_SECONDS"
AUTH_JWKS_MIN_REFETCH_SECONDS = "VALET_AUTH_JWKS_MIN_REFETCH_SECONDS"
AUTH_JWKS_CACHE_SECONDS = "VALET_AUTH_JWKS_CACHE_SECONDS"
AUTH_JWKS_MAX_STALE_SECONDS = "VALET_AUTH_JWKS_MAX_STALE_SECONDS"
AUTH_TOKEN_CACHE_SECONDS = "VALET_AUTH_TOKEN_CACHE_SECONDS"  # noqa: S105 - a setting name
APIKEY_PEPPER = "VALET_APIKEY_PEPPER"
APIKEY_ALLOW_QUERY = "VALET_APIKEY_ALLOW_QUERY"
APIKEY_CACHE_SECONDS = "VALET_APIKEY_CACHE_SECONDS"
APIKEY_CONTAINER = "VALET_APIKEY_CONTAINER"
ALLOW_INSECURE_HTTP = "VALET_ALLOW_INSECURE_HTTP"
TRUSTED_PROXIES = "VALET_TRUSTED_PROXIES"
RATE_LIMIT_PER_MINUTE = "VALET_RATE_LIMIT_PER_MINUTE"
RATE_LIMIT_BURST = "VALET_RATE_LIMIT_BURST"
STATUS_RATE_LIMIT_PER_MINUTE = "VALET_STATUS_RATE_LIMIT_PER_MINUTE"
STATUS_RATE_LIMIT_BURST = "VALET_STATUS_RATE_LIMIT_BURST"
AUTH_FAILURES_PER_MINUTE = "VALET_AUTH_FAILURES_PER_MINUTE"
AUTH_FAILURES_BURST = "VALET_AUTH_FAILURES_BURST"
AUTH_GLOBAL_FAILURES_PER_MINUTE = "VALET_AUTH_GLOBAL_FAILURES_PER_MINUTE"
AUTH_GLOBAL_FAILURES_BURST = "VALET_AUTH_GLOBAL_FAILURES_BURST"
APIKEY_NEGATIVE_CACHE_SECONDS = "VALET_APIKEY_NEGATIVE_CACHE_SECONDS"

TENANT_PLACEHOLDER = "{tenantid}"
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}

ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class IssuerConfig:
    """One trusted issuer (an element of ``VALET_AUTH_ISSUERS``).

    JSON keys: ``issuer`` (exact ``iss``; may hold ``{tenantid}`` for Entra multi-tenant apps),
    ``audiences`` (non-empty list), ``jwksUri`` (optional), ``discovery`` (optional: ``true`` (default),
    ``false`` (then ``jwksUri`` is required) or the URL of the discovery document; default
    ``<issuer>/.well-known/openid-configuration`` with ``{tenantid}`` replaced by ``organizations``),
    ``tenants`` (allowed ``tid`` GUIDs; required for ``{tenantid}`` issuers), ``algorithms`` (default
    ``["RS256"]``; asymmetric only).
    """

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256",)
    jwks_uri: str | None = None
    discovery_url: str | None = None
    tenants: frozenset[str] | None = None

    @property
    def is_template(self) -> bool:
        return TENANT_PLACEHOLDER in self.issuer


@dataclass(frozen=True)
class AuthSettings:
    issuers: tuple[IssuerConfig, ...] = ()
    required_roles: frozenset[str] = frozenset({"Uploads.Write"})
    leeway_seconds: int = 60
    http_timeout_seconds: float = 3.0
    jwks_min_refetch_seconds: float = 30.0
    jwks_cache_seconds: float = 3600.0
    jwks_max_stale_seconds: float = 86400.0
    token_cache_seconds: float = 300.0
    apikey_pepper: bytes | None = field(default=None, repr=False)
    apikey_allow_query: bool = False
    apikey_cache_seconds: float = 60.0
    apikey_container: str = "valet-apikeys"
    allow_insecure_http: bool = False
    trusted_proxies: tuple[ProxyNetwork, ...] = ()
    rate_limit_per_minute: int = 120
    rate_limit_burst: int = 20
    status_rate_limit_per_minute: int = 600
    status_rate_limit_burst: int = 60
    auth_failures_per_minute: int = 30
    auth_failures_burst: int = 20
    auth_global_failures_per_minute: int = 600
    auth_global_failures_burst: int = 100
    apikey_negative_cache_seconds: float = 10.0

    @property
    def apikeys_enabled(self) -> bool:
        return self.apikey_pepper is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AuthSettings:
        """Read and validate every setting; raise :class:`ConfigurationError` naming the bad one."""
        env = EnvReader(environ)
        return cls(
            issuers=_issuers(env.text(AUTH_ISSUERS)),
            required_roles=_roles(env.text(AUTH_REQUIRED_ROLES, "Uploads.Write")),
            leeway_seconds=int(env.number(AUTH_LEEWAY_SECONDS, 60, 0, 300, integer=True)),
            http_timeout_seconds=env.number(AUTH_HTTP_TIMEOUT_SECONDS, 3, 0.1, 30),
            jwks_min_refetch_seconds=env.number(AUTH_JWKS_MIN_REFETCH_SECONDS, 30, 1, 3600),
            jwks_cache_seconds=env.number(AUTH_JWKS_CACHE_SECONDS, 3600, 60, 86400),
            jwks_max_stale_seconds=env.number(AUTH_JWKS_MAX_STALE_SECONDS, 86400, 0, 7 * 86400),
            token_cache_seconds=env.number(AUTH_TOKEN_CACHE_SECONDS, 300, 0, 900),
            apikey_pepper=_pepper(env.text(APIKEY_PEPPER)),
            apikey_allow_query=env.flag(APIKEY_ALLOW_QUERY),
            apikey_cache_seconds=env.number(APIKEY_CACHE_SECONDS, 60, 0, 600),
            apikey_container=env.container(APIKEY_CONTAINER, "valet-apikeys"),
            allow_insecure_http=env.flag(ALLOW_INSECURE_HTTP),
            trusted_proxies=_proxies(env.text(TRUSTED_PROXIES)),
            rate_limit_per_minute=int(
                env.number(RATE_LIMIT_PER_MINUTE, 120, 0, 1_000_000, integer=True)
            ),
            rate_limit_burst=int(env.number(RATE_LIMIT_BURST, 20, 1, 100_000, integer=True)),
            status_rate_limit_per_minute=int(
                env.number(STATUS_RATE_LIMIT_PER_MINUTE, 600, 0, 1_000_000, integer=True)
            ),
            status_rate_limit_burst=int(env.number(STATUS_RATE_LIMIT_BURST, 60, 1, 100_000, integer=True)),
            auth_failures_per_minute=int(
                env.number(AUTH_FAILURES_PER_MINUTE, 30, 0, 1_000_000, integer=True)
            ),
            auth_failures_burst=int(env.number(AUTH_FAILURES_BURST, 20, 1, 100_000, integer=True)),
            auth_global_failures_per_minute=int(
                env.number(AUTH_GLOBAL_FAILURES_PER_MINUTE, 600, 0, 1_000_000, integer=True)
            ),
            auth_global_failures_burst=int(
                env.number(AUTH_GLOBAL_FAILURES_BURST, 100, 1, 100_000, integer=True)
            ),
            apikey_negative_cache_seconds=env.number(APIKEY_NEGATIVE_CACHE_SECONDS, 10, 0, 600),
        )


def _roles(raw: str) -> frozenset[str]:
    roles = frozenset(part for part in re.split(r"[\s,]+", raw.strip()) if part)
    if not roles:
        raise ConfigurationError(f"{AUTH_REQUIRED_ROLES} must name at least one role or scope")
    return roles


def _pepper(raw: str) -> bytes | None:
    if not raw:
        return None
    text = raw.replace("-", "+").replace("_", "/")
    try:
        value = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{APIKEY_PEPPER} must be base64 or base64url") from None
    if len(value) < 32:
        raise ConfigurationError(f"{APIKEY_PEPPER} must decode to at least 32 bytes")
    return value


def _proxies(raw: str) -> tuple[ProxyNetwork, ...]:
    networks: list[ProxyNetwork] = []
    for part in re.split(r"[\s,]+", raw.strip()):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigurationError(f"{TRUSTED_PROXIES} must be a list of IP addresses or CIDRs") from None
    return tuple(networks)


def check_fetch_url(url: str, setting: str) -> str:
    """Metadata URLs must be https (plain http only to a loopback host, for tests and local IdPs)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS:
        return url
    raise ConfigurationError(f"{setting} URLs must be https")


def _issuers(raw: str) -> tuple[IssuerConfig, ...]:
    if not raw:
        return ()
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{AUTH_ISSUERS} must be a JSON list") from None
    if not isinstance(data, list):
        raise ConfigurationError(f"{AUTH_ISSUERS} must be a JSON list")
    issuers = tuple(_issuer(entry) for entry in data)
    if len({i.issuer for i in issuers}) != len(issuers):
        raise ConfigurationError(f"{AUTH_ISSUERS} must not list an issuer twice")
    return issuers


def _issuer(entry: Any) -> IssuerConfig:
    bad = ConfigurationError
    if not isinstance(entry, dict):
        raise bad(f"{AUTH_ISSUERS} entries must be JSON objects")
    issuer = entry.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise bad(f"{AUTH_ISSUERS} entries must have an issuer string")
    if issuer.count(TENANT_PLACEHOLDER) > 1 or ("{" in issuer.replace(TENANT_PLACEHOLDER, "")):
        raise bad(f"{AUTH_ISSUERS} issuer may hold {TENANT_PLACEHOLDER} once and no other placeholder")
    check_fetch_url(issuer.replace(TENANT_PLACEHOLDER, "organizations"), AUTH_ISSUERS)
    audiences = entry.get("audiences")
    if (
        not isinstance(audiences, list)
        or not audiences
        or not all(isinstance(a, str) and a for a in audiences)
    ):
        raise bad(f"{AUTH_ISSUERS} audiences must be a non-empty list of strings")
    algorithms = entry.get("algorithms", ["RS256"])
    if (
        not isinstance(algorithms, list)
        or not algorithms
        or not all(isinstance(a, str) and a in ALLOWED_ALGORITHMS for a in algorithms)
    ):
        raise bad(f"{AUTH_ISSUERS} algorithms must be asymmetric (RS*, PS*, ES*, EdDSA)")
    jwks_uri = entry.get("jwksUri")
    if jwks_uri is not None:
        if not isinstance(jwks_uri, str):
            raise bad(f"{AUTH_ISSUERS} jwksUri must be a string")
        check_fetch_url(jwks_uri, AUTH_ISSUERS)
    discovery = entry.get("discovery", True)
    discovery_url: str | None
    if discovery is True:
        discovery_url = None if jwks_uri else _default_discovery(issuer)
    elif discovery is False:
        if not jwks_uri:
            raise bad(f"{AUTH_ISSUERS} jwksUri is required when discovery is false")
        discovery_url = None
    elif isinstance(discovery, str):
        discovery_url = check_fetch_url(discovery, AUTH_ISSUERS)
    else:
        raise bad(f"{AUTH_ISSUERS} discovery must be true, false or a URL")
    tenants_raw = entry.get("tenants")
    tenants: frozenset[str] | None = None
    if tenants_raw is not None:
        if not isinstance(tenants_raw, list) or not all(
            isinstance(t, str) and GUID.fullmatch(t) for t in tenants_raw
        ):
            raise bad(f"{AUTH_ISSUERS} tenants must be a list of tenant GUIDs")
        tenants = frozenset(t.lower() for t in tenants_raw)
    if TENANT_PLACEHOLDER in issuer and not tenants:
        raise bad(f"{AUTH_ISSUERS} issuers with {TENANT_PLACEHOLDER} must list the allowed tenants")
    return IssuerConfig(
        issuer=issuer,
        audiences=tuple(audiences),
        algorithms=tuple(algorithms),
        jwks_uri=jwks_uri,
        discovery_url=discovery_url,
        tenants=tenants,
    )


def _default_discovery(issuer: str) -> str:
    base = issuer.replace(TENANT_PLACEHOLDER, "organizations").rstrip("/")
    return f"{base}/.well-known/openid-configuration"
