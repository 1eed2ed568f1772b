"""All of valet's settings, read once at start-up into a frozen object.

Setting names live here and nowhere else. :meth:`Settings.from_env` validates everything and raises
:class:`~valet.errors.ConfigurationError` naming the offending setting (never echoing its value, which
may be a secret). Explicit arguments win over the environment: tests build settings from a dict.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from valet.audit.settings import AuditSettings
from valet.auth.settings import AuthSettings
from valet.cors import parse_origins
from valet.envreader import EnvReader
from valet.errors import ConfigurationError
from valet.grants.policy import Policy
from valet.grants.token import GrantKeyRing
from valet.quotas.limits import ProfileQuota, parse_quotas
from valet.quotas.settings import QUOTA_TABLE, TABLE_SERVICE_URL, QuotaSettings
from valet.review.rules import ReviewSettings

# Names of settings (app settings in Azure, local.settings.json "Values" locally).
STORAGE_ACCOUNT_URL = "VALET_STORAGE_ACCOUNT_URL"
STORAGE_CREDENTIAL = "VALET_STORAGE_CREDENTIAL"
STORAGE_CLIENT_ID = "VALET_STORAGE_CLIENT_ID"
STORAGE_CA_BUNDLE = "VALET_STORAGE_CA_BUNDLE"
STORAGE_TIMEOUT_SECONDS = "VALET_STORAGE_TIMEOUT_SECONDS"
UPLOADS_CONTAINER = "VALET_UPLOADS_CONTAINER"
ACCEPTED_CONTAINER = "VALET_ACCEPTED_CONTAINER"
QUARANTINE_CONTAINER = "VALET_QUARANTINE_CONTAINER"
SAS_TTL_MINUTES = "VALET_SAS_TTL_MINUTES"
SAS_START_SKEW_MINUTES = "VALET_SAS_START_SKEW_MINUTES"
DOWNLOAD_TTL_MINUTES = "VALET_DOWNLOAD_TTL_MINUTES"
CLOCK_SKEW_SECONDS = "VALET_CLOCK_SKEW_SECONDS"
UPLOAD_WINDOW_MINUTES = "VALET_UPLOAD_WINDOW_MINUTES"
DELEGATION_KEY_LIFETIME_HOURS = "VALET_DELEGATION_KEY_LIFETIME_HOURS"
DELEGATION_KEY_REFRESH_MINUTES = "VALET_DELEGATION_KEY_REFRESH_MINUTES"
GRANT_SIGNING_KEYS = "VALET_GRANT_SIGNING_KEYS"
PROFILES = "VALET_PROFILES"
PROFILES_FILE = "VALET_PROFILES_FILE"
PUBLIC_BASE_URL = "VALET_PUBLIC_BASE_URL"
MAX_REQUEST_BYTES = "VALET_MAX_REQUEST_BYTES"
CORS_ORIGINS = "VALET_CORS_ORIGINS"
UI_ENABLED = "VALET_UI_ENABLED"
# Validation of uploads (blob trigger, Defender events, tombstone sweep). The trigger settings are read at
# import by function_app.py (bindings are fixed at deploy time); the rest at start-up with the others.
TRIGGER_SOURCE = "VALET_TRIGGER_SOURCE"
TRIGGER_CONNECTION = "VALET_TRIGGER_CONNECTION"
SWEEP_SCHEDULE = "VALET_TOMBSTONE_SWEEP_SCHEDULE"
SNIFF_BYTES = "VALET_SNIFF_BYTES"
TOMBSTONE_GRACE_MINUTES = "VALET_TOMBSTONE_GRACE_MINUTES"
SWEEP_LIMIT = "VALET_TOMBSTONE_SWEEP_LIMIT"
COPY_WAIT_SECONDS = "VALET_COPY_WAIT_SECONDS"
SCANNERS = "VALET_SCANNERS"
RECONCILE_SCHEDULE = "VALET_RECONCILE_SCHEDULE"
RECONCILE_AFTER_SECONDS = "VALET_RECONCILE_AFTER_SECONDS"
RECONCILE_LIMIT = "VALET_RECONCILE_LIMIT"
MAX_DECISION_ATTEMPTS = "VALET_MAX_DECISION_ATTEMPTS"
DECISION_QUEUE = "VALET_DECISION_QUEUE"
QUEUE_SERVICE_URL = "VALET_QUEUE_SERVICE_URL"
NO_QUEUE = "none"  # VALET_DECISION_QUEUE=none: decisions are not announced
QUOTA_SETTINGS = (TABLE_SERVICE_URL, QUOTA_TABLE)  # the quota store (valet/quotas/settings.py reads them)
IMAGE_MAX_PIXELS = "VALET_IMAGE_MAX_PIXELS"
IMAGE_MAX_DIMENSION = "VALET_IMAGE_MAX_DIMENSION"
STRUCTURE_READ_BYTES = "VALET_STRUCTURE_READ_BYTES"

CREDENTIAL_MODES = ("managedidentity", "default", "emulator")
TRIGGER_SOURCES = ("EventGrid", "LogsAndContainerScan")
SCANNER_NAMES = ("defender",)

# The settings without a default: a deployment that leaves one out cannot start (infra/ tests use this).
REQUIRED_SETTINGS = frozenset({STORAGE_ACCOUNT_URL, GRANT_SIGNING_KEYS})


def setting_names() -> frozenset[str]:
    """Every setting name valet reads (the constants here and in :mod:`valet.auth.settings`), so deployment
    templates can be checked for names the app would ignore."""
    from valet.audit import settings as audit_settings
    from valet.auth import settings as auth_settings
    from valet.review import rules as review_settings

    scopes = (globals(), vars(auth_settings), vars(audit_settings), vars(review_settings))
    return frozenset(v for scope in scopes for v in scope.values() if isinstance(v, str) and v.startswith("VALET_"))


@dataclass(frozen=True)
class TriggerSettings:
    """What the blob trigger binds to. Read at import time by ``function_app.py``: no storage call, no
    secret, only names; invalid values fail the app's indexing with a message naming the setting."""

    source: str
    connection: str
    uploads_container: str
    sweep_schedule: str
    reconcile_schedule: str = "30 */5 * * * *"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TriggerSettings:
        env = EnvReader(os.environ if environ is None else environ)
        raw_source = env.optional(TRIGGER_SOURCE) or "LogsAndContainerScan"
        source = next((s for s in TRIGGER_SOURCES if s.lower() == raw_source.lower()), None)
        if source is None:
            raise ConfigurationError(f"{TRIGGER_SOURCE} must be one of: {', '.join(TRIGGER_SOURCES)}")
        connection = env.optional(TRIGGER_CONNECTION) or "ValetStorage"
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", connection):
            raise ConfigurationError(f"{TRIGGER_CONNECTION} must be a connection name prefix ([A-Za-z][A-Za-z0-9_]*)")
        schedules = {name: env.optional(name) or default
                     for name, default in ((SWEEP_SCHEDULE, "0 */5 * * * *"), (RECONCILE_SCHEDULE, "30 */5 * * * *"))}
        for name, schedule in schedules.items():
            if len(schedule.split()) != 6:
                raise ConfigurationError(f"{name} must be a six-field NCRONTAB expression")
        return cls(source, connection, env.container(UPLOADS_CONTAINER, "uploads"), schedules[SWEEP_SCHEDULE],
                   schedules[RECONCILE_SCHEDULE])


@dataclass(frozen=True)
class ValidationSettings:
    trigger: TriggerSettings
    sniff_bytes: int
    tombstone_grace: timedelta
    sweep_limit: int
    copy_wait_seconds: float
    scanners: tuple[str, ...]
    reconcile_after: timedelta = timedelta(minutes=10)
    reconcile_limit: int = 100
    max_attempts: int = 8
    image_max_pixels: int = 64_000_000
    image_max_dimension: int = 16_384
    structure_read_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ValidationSettings:
        env = EnvReader(os.environ if environ is None else environ)
        raw = env.optional(SCANNERS)
        scanners = ("defender",) if raw is None else tuple(s.strip().lower() for s in raw.split(",") if s.strip())
        if raw is not None and raw.strip().lower() == "none":
            scanners = ()
        if any(s not in SCANNER_NAMES for s in scanners):
            raise ConfigurationError(f"{SCANNERS} must be 'none' or a list of: {', '.join(SCANNER_NAMES)}")
        return cls(
            trigger=TriggerSettings.from_env(environ),
            sniff_bytes=int(env.number(SNIFF_BYTES, 64 * 1024, 4 * 1024, 1024 * 1024)),
            tombstone_grace=timedelta(minutes=env.number(TOMBSTONE_GRACE_MINUTES, 15, 1, 24 * 60)),
            sweep_limit=int(env.number(SWEEP_LIMIT, 500, 1, 100_000)),
            copy_wait_seconds=env.number(COPY_WAIT_SECONDS, 60, 1, 600),
            scanners=scanners,
            reconcile_after=timedelta(seconds=env.number(RECONCILE_AFTER_SECONDS, 600, 0, 7 * 24 * 3600)),
            reconcile_limit=int(env.number(RECONCILE_LIMIT, 100, 1, 10_000)),
            max_attempts=int(env.number(MAX_DECISION_ATTEMPTS, 8, 1, 1000)),
            image_max_pixels=int(env.number(IMAGE_MAX_PIXELS, 64_000_000, 1, 1_000_000_000)),
            image_max_dimension=int(env.number(IMAGE_MAX_DIMENSION, 16_384, 1, 1_000_000)),
            structure_read_bytes=int(env.number(STRUCTURE_READ_BYTES, 8 * 1024 * 1024, 64 * 1024, 256 * 1024 * 1024)),
        )


@dataclass(frozen=True)
class StorageSettings:
    account_url: str
    credential: str
    client_id: str | None
    ca_bundle: str | None
    timeout_seconds: float
    uploads_container: str
    accepted_container: str
    quarantine_container: str
    queue_url: str = ""
    decision_queue: str = "valet-decisions"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_url(self.account_url)


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    sas_ttl: timedelta
    sas_start_skew: timedelta
    delegation_key_lifetime: timedelta
    delegation_key_refresh_before: timedelta
    grant_keys: GrantKeyRing
    policy: Policy
    public_base_url: str | None
    max_request_bytes: int
    auth: AuthSettings
    validation: ValidationSettings
    cors_origins: tuple[str, ...] = ()
    ui_enabled: bool = False
    download_ttl: timedelta = timedelta(minutes=5)
    clock_skew: timedelta = timedelta(seconds=300)  # grant token iat, "created before the grant expired"
    upload_window: timedelta = timedelta(hours=4)  # how long an upload's SAS may be renewed
    quotas: Mapping[str, ProfileQuota] = field(default_factory=dict)  # by profile; only profiles with limits
    quota_store: QuotaSettings | None = None  # where the quota table is (used only when a profile has a quota)
    audit: AuditSettings = field(default_factory=AuditSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = EnvReader(os.environ if environ is None else environ)
        storage = StorageSettings(
            account_url=env.url(STORAGE_ACCOUNT_URL),
            credential=env.choice(STORAGE_CREDENTIAL, CREDENTIAL_MODES, "managedidentity"),
            client_id=env.optional(STORAGE_CLIENT_ID),
            ca_bundle=env.existing_file(STORAGE_CA_BUNDLE),
            timeout_seconds=env.number(STORAGE_TIMEOUT_SECONDS, 5, 1, 60),
            uploads_container=env.container(UPLOADS_CONTAINER, "uploads"),
            accepted_container=env.container(ACCEPTED_CONTAINER, "accepted"),
            quarantine_container=env.container(QUARANTINE_CONTAINER, "quarantine"),
            queue_url=env.optional_url(QUEUE_SERVICE_URL) or queue_url_for(env.url(STORAGE_ACCOUNT_URL)),
            decision_queue=env.queue(DECISION_QUEUE, "valet-decisions"),
        )
        if len({storage.uploads_container, storage.accepted_container, storage.quarantine_container}) != 3:
            raise ConfigurationError(
                f"{UPLOADS_CONTAINER}, {ACCEPTED_CONTAINER} and {QUARANTINE_CONTAINER} must be different"
            )
        if storage.credential == "emulator" and not storage.is_loopback:
            raise ConfigurationError(
                f"{STORAGE_CREDENTIAL}=emulator is only allowed with a loopback {STORAGE_ACCOUNT_URL}"
            )
        if storage.credential != "emulator" and urlsplit(storage.account_url).scheme != "https":
            raise ConfigurationError(f"{STORAGE_ACCOUNT_URL} must use https")
        if storage.credential == "emulator" and not is_loopback_url(storage.queue_url):
            raise ConfigurationError(
                f"{STORAGE_CREDENTIAL}=emulator is only allowed with a loopback {QUEUE_SERVICE_URL}"
            )
        if storage.credential != "emulator" and urlsplit(storage.queue_url).scheme != "https":
            raise ConfigurationError(f"{QUEUE_SERVICE_URL} must use https")

        sas_ttl = timedelta(minutes=env.number(SAS_TTL_MINUTES, 3, 1, 60))
        skew = env.number(SAS_START_SKEW_MINUTES, 15, 0, 60)
        if 0 < skew < 15:
            raise ConfigurationError(f"{SAS_START_SKEW_MINUTES} must be 0 (no start time) or 15 to 60")
        lifetime = timedelta(hours=env.number(DELEGATION_KEY_LIFETIME_HOURS, 4, 0.25, 168))
        refresh = timedelta(minutes=env.number(DELEGATION_KEY_REFRESH_MINUTES, 30, 2, 24 * 60))
        if refresh <= sas_ttl + timedelta(minutes=1):
            raise ConfigurationError(
                f"{DELEGATION_KEY_REFRESH_MINUTES} must exceed {SAS_TTL_MINUTES} by more than a minute, "
                "so every SAS expires before the key that signed it"
            )
        if refresh >= lifetime:
            raise ConfigurationError(
                f"{DELEGATION_KEY_REFRESH_MINUTES} must be shorter than {DELEGATION_KEY_LIFETIME_HOURS}"
            )

        policy, quotas = _policy(env)
        quota_store = QuotaSettings.from_env(env.environ, storage.account_url)  # used when a profile has a quota
        if storage.credential == "emulator" and not is_loopback_url(quota_store.table_url):
            raise ConfigurationError(
                f"{STORAGE_CREDENTIAL}=emulator is only allowed with a loopback {TABLE_SERVICE_URL}")
        if storage.credential != "emulator" and urlsplit(quota_store.table_url).scheme != "https":
            raise ConfigurationError(f"{TABLE_SERVICE_URL} must use https")
        return cls(
            storage=storage,
            sas_ttl=sas_ttl,
            sas_start_skew=timedelta(minutes=skew),
            delegation_key_lifetime=lifetime,
            delegation_key_refresh_before=refresh,
            grant_keys=GrantKeyRing.parse(env.required(GRANT_SIGNING_KEYS), setting=GRANT_SIGNING_KEYS),
            policy=policy,
            public_base_url=env.optional_url(PUBLIC_BASE_URL),
            max_request_bytes=int(env.number(MAX_REQUEST_BYTES, 16 * 1024, 1024, 1024 * 1024)),
            auth=AuthSettings.from_env(env.environ),
            validation=ValidationSettings.from_env(env.environ),
            cors_origins=parse_origins(env.optional(CORS_ORIGINS), setting=CORS_ORIGINS),
            ui_enabled=env.flag(UI_ENABLED),
            download_ttl=timedelta(minutes=env.number(DOWNLOAD_TTL_MINUTES, 5, 1, 60)),
            clock_skew=timedelta(seconds=env.number(CLOCK_SKEW_SECONDS, 300, 0, 900)),
            upload_window=max(sas_ttl, timedelta(minutes=env.number(UPLOAD_WINDOW_MINUTES, 240, 0, 7 * 24 * 60))),
            quotas=quotas,
            quota_store=quota_store,
            audit=AuditSettings.from_env(env.environ),
            review=ReviewSettings.from_env(env.environ),
        )


def _policy(env: EnvReader) -> tuple[Policy, dict[str, ProfileQuota]]:
    """The profiles, and the quotas they configure (one document, read once)."""
    inline, path = env.optional(PROFILES), env.optional(PROFILES_FILE)
    if inline and path:
        raise ConfigurationError(f"set only one of {PROFILES} and {PROFILES_FILE}")
    if not inline and not path:
        return Policy.builtin(), {}
    setting = PROFILES if inline else PROFILES_FILE
    if inline:
        text = inline
    else:
        file = env.existing_file(PROFILES_FILE)
        assert file is not None
        text = Path(file).read_text("utf-8")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{setting} is not valid JSON") from exc
    policy = Policy.from_document(doc, setting=setting)
    return policy, parse_quotas(doc, setting=setting)


def queue_url_for(blob_url: str) -> str:
    """The queue endpoint of the account behind ``blob_url``: ``<account>.queue.<suffix>`` for Azure's
    host names, the next port for a path-style emulator URL (Azurite's 10000/10001 convention)."""
    parts = urlsplit(blob_url)
    host = parts.hostname or ""
    if ".blob." in host:
        return blob_url.replace(".blob.", ".queue.", 1)
    if parts.port is not None:
        return blob_url.replace(f":{parts.port}", f":{parts.port + 1}", 1)
    return blob_url


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
