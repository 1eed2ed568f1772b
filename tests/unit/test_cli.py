"""The ``valet`` command itself."""

from __future__ import annotations

import pytest


def test_valet_dev_without_the_development_extra_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    import valet.local
    from valet.local import cli

    for name in ("dev", "devhost", "demo"):  # so each is imported afresh (from valet.local import dev reads both)
        monkeypatch.delitem(sys.modules, f"valet.local.{name}", raising=False)
        monkeypatch.delattr(valet.local, name, raising=False)
    monkeypatch.setitem(sys.modules, "waitress", None)  # what importing an uninstalled package raises
    for command in ("dev", "demo"):
        assert cli.main([command]) == 2
        err = capsys.readouterr().err
        assert f"valet {command}: this command needs the development extra (missing module 'waitress')" in err
        assert "pip install -e '.[dev]'" in err and "Traceback" not in err


def test_valet_upload_without_the_client_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from valet.local import cli

    for name in ("valet.local.upload", "valet_client", "valet_client.cli", "valet_client.client"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "valet_client", None)  # what importing an uninstalled package raises
    assert cli.main(["upload", "photo.png"]) == 2
    err = capsys.readouterr().err
    assert "valet upload: this command needs the Python client (missing module 'valet_client')" in err
    assert "pip install -e ./clients/python" in err and "Traceback" not in err
