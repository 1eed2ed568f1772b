"""A fresh quota table on the test session's Azurite, made with the app's own client factory."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from azure.data.tables import TableClient

from valet.quotas import QuotaSettings
from valet.settings import StorageSettings
from valet.storage import EmulatorCredential, RequestCounter, make_table_client


def storage_settings(blob_url: str, ca_bundle: str | None) -> StorageSettings:
    return StorageSettings(account_url=blob_url, credential="emulator", client_id=None, ca_bundle=ca_bundle,
                           timeout_seconds=5, uploads_container="uploads", accepted_container="accepted",
                           quarantine_container="quarantine")


def table_client(blob_url: str, table_url: str, ca_bundle: str | None, table: str,
                 counter: RequestCounter | None = None) -> TableClient:
    storage = storage_settings(blob_url, ca_bundle)
    url = table_url or QuotaSettings.from_env({}, blob_url).table_url
    return make_table_client(storage, EmulatorCredential(url), url, table, counter)


def new_table_name() -> str:
    return f"q{secrets.token_hex(8)}"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 12, 6, 20, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
