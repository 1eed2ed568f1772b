from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from valet.local.localsettings import effective_environment, init
from valet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "local.settings.sample.json", tmp_path / "local.settings.sample.json")
    return tmp_path


def test_init_generates_fresh_secrets_and_a_loadable_configuration(project: Path) -> None:
    first = json.loads(init(project).read_text())["Values"]
    second = json.loads(init(project, force=True).read_text())["Values"]
    assert not first["VALET_GRANT_SIGNING_KEYS"].startswith("<")
    assert first["VALET_GRANT_SIGNING_KEYS"] != second["VALET_GRANT_SIGNING_KEYS"]
    assert first["VALET_APIKEY_PEPPER"] != second["VALET_APIKEY_PEPPER"]
    env = effective_environment(project, environ={})
    env["VALET_STORAGE_CA_BUNDLE"] = ""  # the emulator's certificate only exists once Azurite ran
    settings = Settings.from_env(env)
    assert settings.storage.credential == "emulator" and settings.auth.apikeys_enabled


def test_init_never_overwrites_without_force(project: Path) -> None:
    init(project)
    with pytest.raises(FileExistsError):
        init(project)


def test_real_environment_wins_over_the_file(project: Path) -> None:
    init(project)
    env = effective_environment(project, environ={"VALET_SAS_TTL_MINUTES": "7"})
    assert env["VALET_SAS_TTL_MINUTES"] == "7"


def test_sample_is_used_when_local_settings_is_missing(project: Path) -> None:
    assert effective_environment(project, environ={})["VALET_UPLOADS_CONTAINER"] == "uploads"
