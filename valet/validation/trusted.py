"""What a decision trusts, and why the client holding the upload's SAS cannot forge it.

The caller's create-only SAS (``sp=c``) lets them write, once, everything about one blob: its bytes, its
metadata (``x-ms-meta-*``), its HTTP properties (``x-ms-blob-content-*``, ``x-ms-blob-cache-control``), and
on Azurite its index tags (``x-ms-tags`` on the Put Blob is accepted with ``sp=c``, checked); it also lets
them snapshot the blob and start a Copy Blob into the granted name from any URL (public docs; both checked
on Azurite). All of that is attacker input. The decision trusts only:

========================================  ===========================================================
fact                                      why the client cannot forge it
========================================  ===========================================================
the grant token (``valetgrant`` meta)     HS256 with the app's grant keys; any changed claim breaks it,
                                          and its container/blob claims pin it to one name
the blob's container and name             chosen by the server at grant time; the SAS covers that one
                                          name (the path check ties the token to it)
size, creation time, ETag, copy status,   set by storage itself on every write; no request header sets
copy source, index tag count              them (all in the head read's response headers)
the bytes, *as stored*                    read with ``decompress=False``, so a client-chosen
                                          ``Content-Encoding`` cannot change what is checked
tombstone state (``valetstate`` etc.)     trusted only with a valid :class:`Sealer` seal: an HMAC, by a
                                          key derived from the grant keys, over the blob's path and
                                          every ``valet*`` value; metadata alone proves nothing
records in ``accepted``/``quarantine``    those containers are written by the app's identity only; no
                                          grant ever covers them
a ``Malicious`` scanner verdict           can only hurt the uploader; a *clean* verdict never overrides
                                          a failed check (index tags may have been set by the client)
========================================  ===========================================================

What is *not* trusted, and what happens to it: any ``valet*`` metadata other than the grant header makes
the upload suspect (:func:`reserved_metadata`, reason ``reserved_metadata``); the blob's Content-Type is
only compared with the grant and never reaches the accepted copy, whose HTTP properties the validator sets
itself (:func:`destination_settings`); a copy-created upload is quarantined. Snapshots are not looked
for: ``sp=c`` cannot change an existing blob, so a snapshot holds the bytes the decision checked, no grant
can read it back, and the sweep deletes it with the tombstone (``delete_snapshots="include"``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from azure.storage.blob import BlobProperties, ContentSettings

from valet.grants.token import GRANT_METADATA_KEY, GrantKeyRing

OCTET_STREAM = "application/octet-stream"
RESERVED_PREFIX = "valet"
CLIENT_METADATA = frozenset({GRANT_METADATA_KEY})  # the only valet* names a client may send
SEAL = "valetseal"
_SEAL_CONTEXT = b"valet record seal v1"
_SEAL_VERSION = "v1"


def reserved_metadata(metadata: Mapping[str, str] | None) -> list[str]:
    """``valet*`` metadata names (any case) that only the app writes, present on an upload."""
    return sorted(k for k in (metadata or {}) if k.lower().startswith(RESERVED_PREFIX)
                  and k.lower() not in CLIENT_METADATA)


class Sealer:
    """Seals the app's own records (tombstones) so that metadata a client wrote cannot pass for them.

    The seal is ``v1.<kid>.<base64url HMAC-SHA-256>`` over the container, the blob name and every other
    ``valet*`` name and value, with a per-purpose key derived from grant key ``kid``: a seal made for one
    blob does not verify on another, and keys rotate with the grant keys.
    """

    def __init__(self, keys: GrantKeyRing) -> None:
        self._keys = keys

    def __repr__(self) -> str:
        return "Sealer()"

    def seal(self, container: str, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """``metadata`` with its seal added."""
        kid = self._keys.active
        return {**metadata, SEAL: f"{_SEAL_VERSION}.{kid}.{self._mac(kid, container, name, metadata)}"}

    def verify(self, container: str, name: str, metadata: Mapping[str, str] | None) -> bool:
        """Whether ``metadata`` carries a valid seal for ``container/name``. Total: any value a client
        wrote (non-ASCII, lone surrogates, a mangled seal) is ``False``, never an exception."""
        if not metadata:
            return False
        lowered = {k.lower(): v for k, v in metadata.items() if isinstance(k, str) and isinstance(v, str)}
        version, _, rest = lowered.get(SEAL, "").partition(".")
        kid, _, mac = rest.partition(".")
        if version != _SEAL_VERSION or not mac.isascii() or self._keys.key(kid) is None:
            return False
        try:
            expected = self._mac(kid, container, name, lowered)
        except UnicodeError:  # a lone surrogate in some valet* value: not anything this app sealed
            return False
        return hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii"))

    def _mac(self, kid: str, container: str, name: str, metadata: Mapping[str, str]) -> str:
        root = self._keys.key(kid)
        assert root is not None
        key = hmac.new(root, _SEAL_CONTEXT, hashlib.sha256).digest()
        fields = sorted((k.lower(), v) for k, v in metadata.items()
                        if k.lower().startswith(RESERVED_PREFIX) and k.lower() != SEAL)
        message = "\n".join([container, name, *(f"{k}={v}" for k, v in fields)]).encode("utf-8")
        return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode().rstrip("=")


# Error codes with which storage refuses to serve an upload's bytes to the validator's identity: a blob
# in the Archive tier (or being rehydrated from it), or encrypted with a key the client provided (CPK).
UNSERVED_CODES = frozenset({"BlobArchived", "BlobBeingRehydrated", "BlobUsesCustomerSpecifiedEncryption"})
_UNREADABLE_TIERS = frozenset({"archive"})


def unreadable(props: BlobProperties) -> str | None:
    """Why storage will not serve this upload's bytes (a property the client chose at creation), or
    ``None``. Such an upload is quarantined with a record and no copy (nothing can be read or copied)."""
    tier = str(props.blob_tier or "")
    if tier.lower() in _UNREADABLE_TIERS or props.archive_status:
        return f"access tier {tier or 'Archive'} ({props.archive_status or 'offline'})"
    if props.encryption_key_sha256:
        return "encrypted with a customer-provided key"
    return None


def retention(props: BlobProperties) -> str | None:
    """A legal hold or immutability policy on the upload, or ``None``. Storage refuses both at creation
    unless the container has version-level immutability (valet's never has, and the SAS has no ``i``):
    seeing one means the account was changed under the app."""
    policy = props.immutability_policy
    if props.has_legal_hold:
        return "legal hold set"
    if policy is not None and (policy.expiry_time or policy.policy_mode):
        return "immutability policy set"
    return None


def destination_settings(outcome_accepted: bool, granted_type: str) -> ContentSettings:
    """The HTTP properties of a destination copy, all chosen here: the verdict's type for an accepted
    upload, ``application/octet-stream`` for a quarantined one, and no encoding, language, disposition or
    cache control (a client-chosen ``Content-Encoding: gzip`` or ``Content-Disposition`` never survives)."""
    return ContentSettings(content_type=granted_type if outcome_accepted and granted_type else OCTET_STREAM)


def settings_differ(have: ContentSettings, wanted: ContentSettings) -> bool:
    """Whether the copy (which inherits the upload's properties) needs its HTTP properties set."""
    return any((
        (have.content_type or "") != (wanted.content_type or ""),
        bool(have.content_encoding), bool(have.content_language),
        bool(have.content_disposition), bool(have.cache_control),
    ))
