"""Which credential ``valet-upload`` sends: a flag beats the environment, what the user set beats the
development credentials ``.valet/dev.env`` holds, and never both."""

from __future__ import annotations

from pathlib import Path

import pytest

from valet_client.cli import credential, main
from valet_client.client import EXIT_USAGE

DEV = {"VALET_DEV_TOKEN": "dev-token", "VALET_DEV_API_KEY": "dev-key"}


@pytest.mark.parametrize(("flags", "env", "expected"), [
    (("typed-token", None), DEV, ("typed-token", None)),  # --token with dev.env loaded: the typed token
    ((None, "typed-key"), DEV, (None, "typed-key")),
    ((None, None), DEV, (None, "dev-key")),  # dev.env alone: the dev API key, as the walkthrough says
    ((None, None), {**DEV, "VALET_TOKEN": "mine"}, ("mine", None)),  # the user's own beats the dev ones
    ((None, None), {"VALET_TOKEN": "mine", "VALET_API_KEY": "my-key"}, (None, "my-key")),
    ((None, None), {"VALET_DEV_TOKEN": "dev-token"}, ("dev-token", None)),
    ((None, None), {"VALET_API_KEY": ""}, (None, None)),  # empty is unset
    ((None, None), {}, (None, None)),
])
def test_which_credential(flags: tuple[str | None, str | None], env: dict[str, str],
                          expected: tuple[str | None, str | None]) -> None:
    assert credential(*flags, env) == expected


def test_both_flags_are_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n")
    code = main([str(photo), "--url", "http://127.0.0.1:9", "--token", "t", "--api-key", "k"], environ={})
    assert code == EXIT_USAGE
    assert capsys.readouterr().err == "valet-upload: give --token or --api-key, not both\n"  # and no secret
