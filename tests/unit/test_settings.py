from __future__ import annotations

import base64
import secrets
from datetime import timedelta

import pytest

from valet.errors import ConfigurationError
from valet.settings import REQUIRED_SETTINGS, Settings, setting_names

KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
BASE = {
    "VALET_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
    "VALET_GRANT_SIGNING_KEYS": f"k1:{KEY}",
}


def test_defaults() -> None:
    s = Settings.from_env(BASE)
    assert s.storage.credential == "managedidentity"
    assert s.sas_ttl == timedelta(minutes=3)
    assert s.sas_start_skew == timedelta(minutes=15)
    assert s.delegation_key_lifetime == timedelta(hours=4)
    assert s.delegation_key_refresh_before == timedelta(minutes=30)
    assert (s.storage.uploads_container, s.storage.accepted_container, s.storage.quarantine_container) == (
        "uploads", "accepted", "quarantine")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"VALET_STORAGE_ACCOUNT_URL": ""}, "VALET_STORAGE_ACCOUNT_URL"),
        ({"VALET_STORAGE_ACCOUNT_URL": "ftp://x"}, "VALET_STORAGE_ACCOUNT_URL"),
        ({"VALET_STORAGE_ACCOUNT_URL": "http://acct.blob.core.windows.net"}, "VALET_STORAGE_ACCOUNT_URL"),
        ({"VALET_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net?sv=x&sig=y"}, "VALET_STORAGE_ACCOUNT_URL"),
        ({"VALET_STORAGE_CREDENTIAL": "accountkey"}, "VALET_STORAGE_CREDENTIAL"),
        ({"VALET_STORAGE_CREDENTIAL": "emulator"}, "VALET_STORAGE_CREDENTIAL"),
        ({"VALET_SAS_TTL_MINUTES": "0"}, "VALET_SAS_TTL_MINUTES"),
        ({"VALET_SAS_TTL_MINUTES": "61"}, "VALET_SAS_TTL_MINUTES"),
        ({"VALET_SAS_TTL_MINUTES": "three"}, "VALET_SAS_TTL_MINUTES"),
        ({"VALET_SAS_START_SKEW_MINUTES": "5"}, "VALET_SAS_START_SKEW_MINUTES"),
        ({"VALET_DELEGATION_KEY_LIFETIME_HOURS": "200"}, "VALET_DELEGATION_KEY_LIFETIME_HOURS"),
        ({"VALET_SAS_TTL_MINUTES": "60"}, "VALET_DELEGATION_KEY_REFRESH_MINUTES"),
        ({"VALET_DELEGATION_KEY_LIFETIME_HOURS": "0.5", "VALET_DELEGATION_KEY_REFRESH_MINUTES": "40"},
         "VALET_DELEGATION_KEY_REFRESH_MINUTES"),
        ({"VALET_GRANT_SIGNING_KEYS": ""}, "VALET_GRANT_SIGNING_KEYS"),
        ({"VALET_UPLOADS_CONTAINER": "Bad_Name"}, "VALET_UPLOADS_CONTAINER"),
        ({"VALET_ACCEPTED_CONTAINER": "uploads"}, "VALET_ACCEPTED_CONTAINER"),
        ({"VALET_PROFILES": "{not json"}, "VALET_PROFILES"),
        ({"VALET_PROFILES_FILE": "/nonexistent/profiles.json"}, "VALET_PROFILES_FILE"),
        ({"VALET_STORAGE_CA_BUNDLE": "/nonexistent/ca.pem"}, "VALET_STORAGE_CA_BUNDLE"),
    ],
)
def test_invalid_settings_name_the_setting(override: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**BASE, **override})
    assert named in info.value.detail


def test_emulator_credential_only_with_loopback() -> None:
    s = Settings.from_env({**BASE, "VALET_STORAGE_CREDENTIAL": "emulator",
                           "VALET_STORAGE_ACCOUNT_URL": "https://127.0.0.1:10000/devstoreaccount1"})
    assert s.storage.is_loopback
    for host in ("https://10.0.0.1:10000/devstoreaccount1", "https://127.0.0.1.evil.example/x",
                 "https://localhost.evil.example/x"):
        with pytest.raises(ConfigurationError):
            Settings.from_env({**BASE, "VALET_STORAGE_CREDENTIAL": "emulator", "VALET_STORAGE_ACCOUNT_URL": host})


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**BASE, "VALET_GRANT_SIGNING_KEYS": "k1:c2VjcmV0"})
    assert "c2VjcmV0" not in str(info.value)


class _RecordingEnv(dict[str, str]):
    """A settings mapping that remembers every name the loader asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(name)
        return super().get(name, default)


def test_setting_names_are_exactly_what_the_loader_reads() -> None:
    env = _RecordingEnv(BASE)
    Settings.from_env(env)
    assert setting_names() == {name for name in env.asked if name.startswith("VALET_")}


def test_required_settings_are_the_only_ones_without_a_default() -> None:
    Settings.from_env({name: BASE[name] for name in REQUIRED_SETTINGS})  # nothing else is needed
    for name in REQUIRED_SETTINGS:
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_env({k: v for k, v in BASE.items() if k != name})
