"""The README's first command runs this demo; keep it honest: it must pass, and it must be able to fail."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from valet.local.demo import Demo

pytestmark = pytest.mark.azurite


@pytest.fixture
def isolated_environment() -> Iterator[None]:
    saved = dict(os.environ)
    sys.modules.pop("function_app", None)
    yield
    os.environ.clear()
    os.environ.update(saved)
    sys.modules.pop("function_app", None)


def test_demo_passes_end_to_end(tmp_path: Path, isolated_environment: None) -> None:
    lines: list[str] = []
    assert Demo(out=lines.append).run(tmp_path) == 0, "\n".join(lines)
    text = "\n".join(lines)
    assert "FAIL" not in text
    assert "hello.png: accepted" in text and "cute-cat.png: quarantined, reason content_not_allowed" in text


def test_demo_reports_failed_checks() -> None:
    demo = Demo(out=lambda line: None)
    demo.check(False, "something that went wrong")
    assert demo.failures == 1
