"""Upload profiles: what a caller may upload, and the checks made before any SAS exists.

A profile names a maximum size and the content types it accepts, each with the file extensions that
type may carry. Profiles come from a JSON document (built in: ``valet/default_profiles.json``; replaced
with the ``VALET_PROFILES`` or ``VALET_PROFILES_FILE`` setting)::

    {"default": "images",
     "profiles": {"images": {"maxBytes": 20971520,
                             "types": {"image/png": ["png"], "image/jpeg": ["jpg", "jpeg"]}}}}

Optional per profile: ``allowEmpty`` (default false), ``requireSha256`` (default false),
``requiredRoles`` (a list: a caller must hold every one, in its token's ``roles``/``scp``/``scope`` or its
API key's scopes, else ``403 insufficient_scope``; default none), for profiles that accept zip archives,
``archive`` limits (``maxEntries``, ``maxTotalBytes``, ``maxRatio``), and for profiles that accept PDFs,
``allowPdfActions``: the PDF actions that reach outside the document which the profile accepts (any of
``GoToR``, ``GoToE``, ``URI``, ``SubmitForm``, ``ImportData``, ``Thread``; default none: each is active
content). ``Launch`` and ``JavaScript`` can never be allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeGuard

from valet.auth.challenge import insufficient_scope
from valet.errors import BadRequest, ConfigurationError, PayloadTooLarge, UnsupportedMediaType

# Largest block blob Azure accepts (50,000 blocks of 4,000 MiB).
MAX_BLOB_BYTES = 50_000 * 4_000 * 1024 * 1024

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_EXT = re.compile(r"^[a-z0-9]{1,10}$")
# PDF actions that reach outside the document; a profile may accept them (see docs/validation.md).
PDF_OUTBOUND_ACTIONS = frozenset({"/GoToR", "/GoToE", "/URI", "/SubmitForm", "/ImportData", "/Thread"})
_ROLE = re.compile(r"^[!#-\[\]-~]{1,256}$")  # printable ASCII without space, quote or backslash


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 1000
    max_total_bytes: int = 1024 * 1024 * 1024
    max_ratio: int = 100


@dataclass(frozen=True)
class Profile:
    name: str
    max_bytes: int
    types: Mapping[str, tuple[str, ...]]
    allow_empty: bool = False
    require_sha256: bool = False
    archive: ArchiveLimits | None = None
    required_roles: frozenset[str] = frozenset()
    pdf_actions: frozenset[str] = frozenset()  # outbound PDF actions accepted, e.g. {"/URI"}

    def permits(self, held: frozenset[str]) -> bool:
        """May a caller holding these roles/scopes use this profile?"""
        return self.required_roles <= held

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/profiles`` shows of this profile (not who may use it)."""
        return {
            "name": self.name,
            "maxBytes": self.max_bytes,
            "types": {mime: list(exts) for mime, exts in self.types.items()},
            "allowEmpty": self.allow_empty,
            "requireSha256": self.require_sha256,
        }

    def extension_for(self, content_type: str) -> str:
        """The canonical (first listed) extension for an accepted type."""
        return self.types[content_type][0]

    def check(self, content_type: str, size: int, sha256: str | None) -> None:
        """Refuse what this profile does not allow, before any SAS is made."""
        if content_type not in self.types:
            allowed = ", ".join(sorted(self.types))
            raise UnsupportedMediaType(
                f"Profile '{self.name}' does not accept '{content_type}'. Accepted types: {allowed}.",
                code="content_type_not_allowed",
            )
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"Declared size {size} bytes exceeds the '{self.name}' profile maximum of {self.max_bytes} bytes.",
                code="size_exceeds_profile",
                extra={"maxBytes": self.max_bytes},
            )
        if size == 0 and not self.allow_empty:
            raise BadRequest(f"Profile '{self.name}' does not accept empty files.", code="empty_not_allowed")
        if self.require_sha256 and sha256 is None:
            raise BadRequest(f"Profile '{self.name}' requires 'sha256'.", code="sha256_required")


@dataclass(frozen=True)
class Policy:
    default: str
    profiles: Mapping[str, Profile]

    def profile(self, name: str | None) -> Profile:
        chosen = self.default if name is None else name
        try:
            return self.profiles[chosen]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise BadRequest(
                f"Unknown profile. Known profiles: {known}.", code="unknown_profile"
            ) from None

    def profile_for(self, name: str | None, held: frozenset[str]) -> Profile:
        """The named (or default) profile, if a caller holding ``held`` may use it (403 otherwise)."""
        profile = self.profile(name)
        if not profile.permits(held):
            raise insufficient_scope(
                f"Profile '{profile.name}' needs a role or scope this caller lacks.", profile.required_roles
            )
        return profile

    def usable(self, held: frozenset[str]) -> dict[str, Any]:
        """The ``GET /api/profiles`` document: the profiles a caller holding ``held`` may use."""
        profiles = [p.describe() for p in self.profiles.values() if p.permits(held)]
        default = self.profiles[self.default]
        return {"default": default.name if default.permits(held) else None, "profiles": profiles}

    @classmethod
    def from_json(cls, text: str, *, setting: str) -> Policy:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"{setting} is not valid JSON") from exc
        return cls.from_document(doc, setting=setting)

    @classmethod
    def builtin(cls) -> Policy:
        text = resources.files("valet").joinpath("default_profiles.json").read_text("utf-8")
        return cls.from_json(text, setting="valet/default_profiles.json")

    @classmethod
    def from_document(cls, doc: Any, *, setting: str) -> Policy:
        def bad(why: str) -> ConfigurationError:
            return ConfigurationError(f"{setting}: {why}")

        if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict) or not doc["profiles"]:
            raise bad("must be an object with a non-empty 'profiles' object")
        profiles: dict[str, Profile] = {}
        for name, raw in doc["profiles"].items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise bad("profile names must match [a-z0-9][a-z0-9_-]{0,31}")
            profiles[name] = _profile(name, raw, bad)
        default = doc.get("default", next(iter(profiles)))
        if default not in profiles:
            raise bad("'default' must name one of the profiles")
        return cls(default=default, profiles=profiles)


def _profile(name: str, raw: Any, bad: Any) -> Profile:
    if not isinstance(raw, dict):
        raise bad(f"profile '{name}' must be an object")
    max_bytes = raw.get("maxBytes")
    if not _is_int(max_bytes) or not 0 < max_bytes <= MAX_BLOB_BYTES:
        raise bad(f"profile '{name}': maxBytes must be an integer between 1 and {MAX_BLOB_BYTES}")
    types_raw = raw.get("types")
    if not isinstance(types_raw, dict) or not types_raw:
        raise bad(f"profile '{name}': types must be a non-empty object")
    types: dict[str, tuple[str, ...]] = {}
    for mime, exts in types_raw.items():
        if not isinstance(mime, str) or not _MIME.fullmatch(mime):
            raise bad(f"profile '{name}': content types must be lower-case type/subtype")
        if not isinstance(exts, list) or not exts or not all(isinstance(e, str) and _EXT.fullmatch(e) for e in exts):
            raise bad(f"profile '{name}': '{mime}' needs a list of extensions matching [a-z0-9]{{1,10}}")
        types[mime] = tuple(exts)
    archive = None
    if "archive" in raw:
        a = raw["archive"]
        if not isinstance(a, dict) or not all(_is_int(a.get(k, 1)) and a.get(k, 1) > 0 for k in
                                                ("maxEntries", "maxTotalBytes", "maxRatio")):
            raise bad(f"profile '{name}': archive limits must be positive integers")
        defaults = ArchiveLimits()
        archive = ArchiveLimits(
            max_entries=a.get("maxEntries", defaults.max_entries),
            max_total_bytes=a.get("maxTotalBytes", defaults.max_total_bytes),
            max_ratio=a.get("maxRatio", defaults.max_ratio),
        )
    for flag in ("allowEmpty", "requireSha256"):
        if not isinstance(raw.get(flag, False), bool):
            raise bad(f"profile '{name}': {flag} must be true or false")
    roles = raw.get("requiredRoles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) and _ROLE.fullmatch(r) for r in roles):
        raise bad(f"profile '{name}': requiredRoles must be a list of role or scope names")
    actions = raw.get("allowPdfActions", [])
    if not isinstance(actions, list) or not all(isinstance(a, str) and f"/{a}" in PDF_OUTBOUND_ACTIONS
                                                for a in actions):
        allowed = ", ".join(sorted(a[1:] for a in PDF_OUTBOUND_ACTIONS))
        raise bad(f"profile '{name}': allowPdfActions must be a list of PDF action types among {allowed}")
    return Profile(
        name=name,
        max_bytes=max_bytes,
        types=types,
        allow_empty=raw.get("allowEmpty", False),
        require_sha256=raw.get("requireSha256", False),
        archive=archive,
        required_roles=frozenset(roles),
        pdf_actions=frozenset(f"/{a}" for a in actions),
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def normalize_content_type(value: str) -> str:
    """``Image/PNG; charset=x`` -> ``image/png``; raises :class:`BadRequest` for anything else."""
    base = value.split(";", 1)[0].strip(" \t")  # HTTP's optional whitespace only, as the OpenAPI document says
    if not base.isascii() or not _MIME.fullmatch(base := base.lower()):  # ASCII first: "\u212a".lower() == "k"
        raise BadRequest("'contentType' must be a media type such as 'image/png'.", code="invalid_content_type")
    return base
