"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakes import FixedCaller
from valet.runtime import Runtime
from valet.settings import Settings


@pytest.fixture
def runtime(valet_env: dict[str, str]) -> Iterator[Runtime]:
    """The app's runtime on the session's Azurite, every request made by the fixed caller (a module that
    needs another runtime defines its own ``runtime``, which takes precedence)."""
    rt = Runtime.from_settings(Settings.from_env(valet_env), authenticator=FixedCaller())
    yield rt
    rt.audit.close()  # appends what is buffered while the container still exists
    rt.blob_service.close()
