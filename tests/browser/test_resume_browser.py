"""The browser module's resume in a real headless Chromium against ``valet dev``: a block upload is cut by
a page reload half way, the same file is picked again after the reload, and ``uploadResumable`` sends only
the blocks storage lacks (its journal in localStorage), then the upload is decided like any other."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_upload_page import PROFILES, browser, page  # noqa: F401  (fixtures)
from tests.support.devstack import DevStack, valet_dev

pytestmark = [pytest.mark.azurite, pytest.mark.browser]

MIB = 1024 * 1024
BULK = {**PROFILES, "profiles": {**PROFILES["profiles"],
                                 "bulk": {"maxBytes": 256 * MIB, "types": {"application/octet-stream": ["bin"]}}}}

START = """async ([secret, resume]) => {
  const m = await import("/api/ui/valet-upload.js");
  window.__progress = {sent: 0, total: 0, rate: 0};
  const run = m.uploadResumable(new URL("/api/", location.href).href, {kind: "apikey", secret},
    document.getElementById("file").files[0], {profile: "bulk", blockBytes: 1048576, concurrency: 2,
    onProgress: (sent, total, rate) => { window.__progress = {sent, total, rate}; }});
  if (!resume) { window.__run = run.catch(() => null); return null; }
  const grant = await run;
  const decision = await m.waitForDecision(grant.statusUrl, {kind: "apikey", secret});
  return {resumedBlocks: grant.resumedBlocks, bytesSent: grant.bytesSent, status: decision.status,
          journal: Object.keys(localStorage).filter((k) => k.startsWith("valet-upload:")).length,
          rate: window.__progress.rate};
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with valet_dev(tmp_path_factory.mktemp("resume-dev"), extra_env={"VALET_PROFILES": json.dumps(BULK)}) as running:
        yield running


def test_a_reload_half_way_then_the_same_file_picked_again_sends_only_the_missing_blocks(
        stack: DevStack, page: Any, tmp_path: Path) -> None:  # noqa: F811
    size = 24 * MIB
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(size))
    page.goto(f"{stack.url}/api/ui")
    page.set_input_files("#file", str(big))
    page.evaluate(START, [stack.api_key, False])
    deadline = time.monotonic() + 60
    while page.evaluate("() => window.__progress.sent") < 10 * MIB:  # the page's CSP forbids eval'd predicates
        assert time.monotonic() < deadline, "the upload did not get to 10 MiB in 60 s"
        page.wait_for_timeout(50)
    stored = page.evaluate("() => Object.entries(localStorage).filter(([k]) => k.startsWith('valet-upload:'))")
    assert len(stored) == 1
    assert stack.api_key not in json.dumps(stored) and "sig=" not in json.dumps(stored)  # no credential, no SAS
    page.reload()  # the tab is reloaded in the middle of the upload: every request in flight is cut

    page.set_input_files("#file", str(big))  # the same file, picked again
    result = page.evaluate(START, [stack.api_key, True])
    assert result["status"] == "accepted", result
    assert result["resumedBlocks"] >= 8  # the blocks storage confirmed before the reload were not sent again
    assert result["bytesSent"] == size - result["resumedBlocks"] * MIB, result
    assert result["journal"] == 0  # removed once committed
    assert result["rate"] > 0


def test_the_upload_page_resumes_a_large_file_after_a_reload(stack: DevStack, page: Any, tmp_path: Path) -> None:  # noqa: F811
    size = 40 * MIB  # over 32 MiB: the page uploads in 8 MiB blocks
    big = tmp_path / "large.bin"
    big.write_bytes(os.urandom(size))

    def start() -> None:
        page.goto(f"{stack.url}/api/ui")
        page.select_option("#kind", "apikey")
        page.fill("#credential", stack.api_key)
        page.locator("#credential").dispatch_event("change")
        page.wait_for_selector("#profile option[value=bulk]", state="attached", timeout=10_000)
        page.select_option("#profile", "bulk")
        page.set_input_files("#file", str(big))
        page.click("#upload")

    start()
    deadline = time.monotonic() + 60
    confirmed = ("() => Object.entries(localStorage).filter(([k]) => k.startsWith('valet-upload:'))"
                 ".map(([, v]) => JSON.parse(v).done.length)[0] || 0")
    while page.evaluate(confirmed) < 1:  # a block confirmed by storage (the others are in flight)
        assert time.monotonic() < deadline, "no block was confirmed in 60 s"
        page.wait_for_timeout(50)
    assert "MiB/s" in page.text_content("#result")  # bytes and rate while it uploads
    page.reload()
    start()  # the same file, picked again
    page.wait_for_selector("#result:is([data-status=accepted],[data-status=quarantined],[data-status=error])",
                           timeout=120_000)
    steps = page.text_content("#steps")
    assert page.get_attribute("#result", "data-status") == "accepted", (page.text_content("#result"), steps)
    assert "resumed: " in steps and "blocks were already stored" in steps, steps
