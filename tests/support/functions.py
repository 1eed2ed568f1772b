"""Reach the app's registered functions the documented way (``app.get_functions()``), once per import:
azure-functions refuses to index the same app twice."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest

_INDEX = "_valet_test_functions"


def functions(module: ModuleType) -> dict[str, Any]:
    index = getattr(module, _INDEX, None)
    if index is None:
        index = {f.get_function_name(): f for f in module.app.get_functions()}
        setattr(module, _INDEX, index)
    return index


def user_function(module: ModuleType, name: str) -> Callable[..., Any]:
    return functions(module)[name].get_user_function()  # type: ignore[no-any-return]


@contextmanager
def fresh_app(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Iterator[ModuleType]:
    """Import ``function_app`` anew with ``env`` set (settings are read at import, as in Azure)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("function_app", None)
    try:
        yield importlib.import_module("function_app")
    finally:
        sys.modules.pop("function_app", None)
