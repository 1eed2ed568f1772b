"""docs/telemetry.md's metric table is the instrument table in valet/telemetry/instruments.py."""

from __future__ import annotations

import re
from pathlib import Path

from valet.telemetry.instruments import ATTRIBUTE_KEYS, INSTRUMENTS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


def rows(header: str) -> list[list[str]]:
    text = PAGE.read_text("utf-8")
    start = text.index(header)
    out = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        out.append([cell.strip() for cell in line.strip("|").split("|")])
    return out


def test_the_metric_table_is_the_instrument_table() -> None:
    documented = {}
    for name, kind, unit, attributes, description in rows("| Instrument | Kind |"):
        documented[name.strip("`")] = (kind, unit.strip("`"), tuple(re.findall(r"`([a-z._]+)`", attributes)),
                                       description)
    assert documented == {spec.name: (spec.kind, spec.unit, spec.attributes, spec.description)
                          for spec in INSTRUMENTS}


def test_every_attribute_key_has_a_row() -> None:
    assert {row[0].strip("`") for row in rows("| Attribute | Values |")} == ATTRIBUTE_KEYS
