"""Authentication and authorization of valet callers (bearer tokens from trusted issuers, API keys)."""

from .authenticator import Authenticator
from .keystore import BlobKeyStore, CachedKeyLookup, KeyRecord, KeyStore
from .ratelimit import FailureThrottle, RateLimiter
from .settings import AuthSettings, IssuerConfig

__all__ = [
    "AuthSettings",
    "Authenticator",
    "BlobKeyStore",
    "CachedKeyLookup",
    "FailureThrottle",
    "IssuerConfig",
    "KeyRecord",
    "KeyStore",
    "RateLimiter",
]
