"""The app takes what start-up built out of the garbage collector's full rounds (valet.runtime.settle_heap)."""

from __future__ import annotations

import ast
import gc
import weakref
from pathlib import Path

from valet.runtime import settle_heap

ROOT = Path(__file__).resolve().parents[2]


def test_settle_heap_freezes_what_is_alive_and_keeps_nothing_dead() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    before = gc.get_freeze_count()
    dead = weakref.ref(Cycle())  # garbage only a cyclic collection frees: collected first, not frozen
    alive = Cycle()
    try:
        settle_heap()
        assert dead() is None
        assert gc.get_freeze_count() > before
        assert all(o is not alive for o in gc.get_objects())  # frozen: out of every generation's rounds
    finally:
        gc.unfreeze()  # the test process goes on as it was


def test_function_app_settles_the_heap_last() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text())
    last = tree.body[-1]
    assert isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
    assert isinstance(last.value.func, ast.Name) and last.value.func.id == "settle_heap"
