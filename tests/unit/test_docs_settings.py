"""Every setting the app reads has a row in the configuration page's table (docs/configuration.md)."""

from __future__ import annotations

import re
from pathlib import Path

from valet import settings
from valet.audit import settings as audit_settings
from valet.auth import settings as auth_settings
from valet.review import rules as review_settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def setting_names(module: object) -> set[str]:
    return {v for v in vars(module).values() if isinstance(v, str) and re.fullmatch(r"VALET_[A-Z0-9_]+", v)}


def all_names() -> set[str]:
    return (setting_names(settings) | setting_names(auth_settings) | setting_names(audit_settings)
            | setting_names(review_settings))


def documented_in_table() -> set[str]:
    text = PAGE.read_text("utf-8")
    table = text[text.index("## App settings") : text.index("## Profiles")]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `VALET_")]
    return {name for row in rows for name in re.findall(r"`(VALET_[A-Z0-9_]+)`", row)}


def test_every_setting_has_a_row_in_the_configuration_table() -> None:
    names = all_names()
    assert len(names) >= 50 and {"VALET_STORAGE_ACCOUNT_URL", "VALET_UI_ENABLED"} <= names
    assert not names - documented_in_table()


def test_the_table_names_no_setting_the_app_does_not_read() -> None:
    assert not documented_in_table() - all_names()
