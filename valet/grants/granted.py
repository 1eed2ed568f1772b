"""What was granted for an upload, from what the server itself chose: pure functions, no I/O.

Two carriers, both signed by the app with the grant signing key ring (:class:`~valet.grants.token.GrantKeyRing`):

* the **blob name** (see :func:`valet.grants.naming.granted_blob_name`): the SAS is scoped to exactly this name,
  so every upload carries it, whatever the client sends. It binds the caller's partition, the profile, the
  declared size, the declared type (through the MAC) and the deadline of the grant window;
* the **grant header** ``x-ms-meta-valetgrant`` (optional since names carry the grant): adds what a name
  cannot carry, the declared ``sha256`` and the original filename, and the caller's full id.

When both are present they must agree (they come from the same grant); a header that is present but not
valid, or for another blob, quarantines the upload (fail closed). Metadata names are matched
case-insensitively: Azure Storage keeps a name with the case the client sent (``Valetgrant`` from Go's
net/http or Python's urllib, ``VALETGRANT`` from an upper-casing proxy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from valet.grants.naming import NameFacts, granted_type, name_mac_matches, parse_granted_name, parse_upload_id
from valet.grants.policy import Policy
from valet.grants.token import GRANT_METADATA_KEY, GrantKeyRing, GrantTokenError
from valet.validation.reasons import Reason, Rejection
from valet.validation.sniff import OCTET_STREAM, canonical

# The one clock-skew allowance (VALET_CLOCK_SKEW_SECONDS): grant token ``iat`` and "created before the grant
# window closed". See docs/configuration.md for why 300 s.
DEFAULT_CLOCK_SKEW = timedelta(seconds=300)


@dataclass(frozen=True)
class GrantFacts:
    """What was granted, from a verified name and/or a verified grant header."""

    upload_id: str
    caller: str
    profile: str
    content_type: str
    size: int
    sha256: str | None
    filename: str | None
    issued_at: datetime
    expires_at: datetime  # the end of the grant window: no SAS for this name expires later
    carrier: str  # "name", "header" or "name+header"


def metadata_value(metadata: Mapping[str, str] | None, key: str) -> str | None:
    """The value of metadata ``key`` matched case-insensitively, ``None`` if absent. Two names differing
    only in case cannot both be meant: that is a :class:`Rejection` (``bad_grant``)."""
    found = [value for name, value in (metadata or {}).items() if name.lower() == key.lower()]
    if len(found) > 1:
        raise Rejection(Reason.BAD_GRANT, f"the metadata name {key!r} appears more than once")
    return found[0] if found else None


def grant_facts(
    *,
    container: str,
    name: str,
    metadata: Mapping[str, str] | None,
    keys: GrantKeyRing,
    policy: Policy,
    skew: timedelta,
) -> GrantFacts:
    """The verified grant of the blob ``container/name``, or a :class:`Rejection` saying why there is none."""
    token = metadata_value(metadata, GRANT_METADATA_KEY)
    facts = parse_granted_name(name)
    if token is None:
        if facts is None:
            raise Rejection(Reason.MISSING_GRANT, "the upload carries no grant token")
        return _from_name(facts, container, keys, policy)
    try:
        claims = keys.verify(token, skew=skew.total_seconds())
    except GrantTokenError as exc:
        raise Rejection(Reason(exc.reason), exc.detail) from None
    if claims.container != container or claims.blob != name:
        raise Rejection(Reason.PATH_MISMATCH, "the grant was issued for another blob")
    expires, carrier = claims.expires_at, "header"
    if facts is not None:
        key = keys.key(facts.kid)
        if key is None or not name_mac_matches(facts, key, container, claims.content_type):
            raise Rejection(Reason.PATH_MISMATCH, "the blob name does not match its grant")
        expires, carrier = max(facts.deadline, claims.expires_at), "name+header"
    return GrantFacts(
        upload_id=claims.upload_id,
        caller=claims.caller,
        profile=claims.profile,
        content_type=claims.content_type,
        size=claims.size,
        sha256=claims.sha256.lower() if claims.sha256 else None,
        filename=claims.filename,
        issued_at=claims.issued_at,
        expires_at=expires,
        carrier=carrier,
    )


def _from_name(facts: NameFacts, container: str, keys: GrantKeyRing, policy: Policy) -> GrantFacts:
    key = keys.key(facts.kid)
    if key is None:
        raise Rejection(Reason.BAD_GRANT, "the blob name was not signed by a known key")
    profile = policy.profiles.get(facts.profile)
    if profile is None:
        raise Rejection(Reason.UNKNOWN_PROFILE, "the grant's profile is no longer configured")
    content_type = granted_type(facts, key, container, profile.types)
    if content_type is None:
        raise Rejection(Reason.BAD_GRANT, "the blob name was not issued by this app")
    if facts.sha256_declared:
        raise Rejection(Reason.MISSING_GRANT, "the grant declared a sha256, which only the grant header carries")
    return GrantFacts(
        upload_id=facts.upload_id,
        caller=facts.partition,
        profile=facts.profile,
        content_type=content_type,
        size=facts.size,
        sha256=None,
        filename=None,
        issued_at=parse_upload_id(facts.upload_id),
        expires_at=facts.deadline,
        carrier="name",
    )


def check_window(grant: GrantFacts, created: datetime | None, skew: timedelta) -> None:
    """The blob was created before the grant window closed, allowing ``skew`` between storage's clock
    (creation time) and the granting instance's (expiry)."""
    if created is not None and created > grant.expires_at + skew:
        raise Rejection(Reason.GRANT_EXPIRED, "the blob was created after the grant expired")


def check_stored_type(stored: str | None, granted: str) -> None:
    """The blob's Content-Type property against the granted type. Absent or ``application/octet-stream``
    (what every SDK sends when told nothing) means "not declared"; anything else must be the granted type."""
    declared = canonical(stored or "")
    if declared in ("", OCTET_STREAM) or declared == canonical(granted):
        return
    raise Rejection(Reason.CONTENT_TYPE_MISMATCH, f"stored Content-Type {declared}")
