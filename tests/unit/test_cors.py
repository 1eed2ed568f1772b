from __future__ import annotations

import pytest

from valet.cors import parse_origins, storage_cors_rules
from valet.errors import ConfigurationError


def test_origins_are_exact_and_deduplicated() -> None:
    assert parse_origins(" https://app.example.com/, http://localhost:7071,https://app.example.com ",
                         setting="S") == ("https://app.example.com", "http://localhost:7071")
    assert parse_origins(None, setting="S") == ()
    assert storage_cors_rules(()) == []


@pytest.mark.parametrize("value", ["*", "https://*.example.com", "app.example.com", "https://a.example/path",
                                   "ftp://a.example", "https://a.example?x=1"])
def test_wildcards_and_non_origins_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_origins(value, setting="VALET_CORS_ORIGINS")
    assert "VALET_CORS_ORIGINS" in info.value.detail


def test_rules_allow_only_what_an_upload_sends() -> None:
    (rule,) = storage_cors_rules(("https://app.example.com",))
    assert rule.allowed_origins == "https://app.example.com"
    assert rule.allowed_methods == "PUT,OPTIONS"
    assert "x-ms-meta-*" in rule.allowed_headers and "*" not in rule.allowed_headers.split(",")


def test_documented_storage_cors_json_is_what_the_code_applies() -> None:
    import json
    import re
    from pathlib import Path

    from valet.cors import arm_cors_rules

    page = (Path(__file__).resolve().parents[2] / "docs" / "clients.md").read_text("utf-8")
    section = page[page.index("### CORS, on both sides"):page.index("### Tested in a real browser")]
    [block] = re.findall(r"```json\n(.*?)```", section, flags=re.S)
    assert json.loads(block) == arm_cors_rules(("https://app.example.com",))
