from __future__ import annotations

import io

from valet_client.cli import Progress


def test_terminal_progress_is_a_bar_with_rate_and_eta() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True)
    for sent in (0, 512, 1024):
        progress(sent, 1024)
    text = out.getvalue()
    assert text.count("\r[") == 3 and "100.0%" in text and "MiB/s" in text and "ETA" in text
    assert text.endswith("\n")


def test_non_terminal_progress_is_a_line_per_ten_percent() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    for sent in range(0, 1001, 50):
        progress(sent, 1000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("uploaded 1000 of 1000 bytes (100%")
    assert "\r" not in out.getvalue()
