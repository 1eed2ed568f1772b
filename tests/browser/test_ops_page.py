"""valet dev's operations page in a real headless Chromium: after real grants and uploads against
``valet dev`` (real Azurite, the dev issuer's tokens), the page shows the app's own metrics, read from the
in-memory reader, and keeps refreshing. A screenshot goes to ``test-artifacts/ops-page.png`` (the one in
docs/ is a copy of it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.browser.test_upload_page import ARTIFACTS, browser, page  # noqa: F401 - fixtures
from tests.support.devstack import DevStack, valet_dev
from tests.support.samples import png
from valet.webui import ASSETS

pytestmark = [pytest.mark.azurite, pytest.mark.browser]

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with valet_dev(tmp_path_factory.mktemp("ops-dev")) as running:
        yield running


def upload(stack: DevStack, body: bytes, content_type: str = "image/png") -> requests.Response:
    auth = {"Authorization": f"Bearer {stack.token}"}
    grant = requests.post(f"{stack.url}/api/uploads", headers=auth, timeout=30,
                          json={"filename": "ops.png", "contentType": content_type, "size": len(body)})
    if grant.status_code == 201:
        doc = grant.json()
        put = requests.put(doc["uploadUrl"], data=body, headers=doc["headers"], verify=stack.ca, timeout=30)
        assert put.status_code == 201, put.text
    return grant


def texts(tab: Any, chart: str) -> list[str]:
    """The labels drawn in one of the page's SVG charts."""
    return list(tab.eval_on_selector_all(f"{chart} text", "nodes => nodes.map(n => n.textContent)"))


def test_the_page_shows_grants_verdicts_and_latency_and_refreshes(stack: DevStack, page: Any) -> None:  # noqa: F811
    page.goto(f"{stack.url}/api/ui/ops")
    assert page.title() == "valet dev: operations"
    page.wait_for_function("() => Number(document.getElementById('status').dataset.refreshes || 0) >= 1",
                           timeout=TIMEOUT_MS)
    assert page.inner_text("#grants") == "0"

    for _ in range(3):
        assert upload(stack, png()).status_code == 201
    assert upload(stack, b"<!DOCTYPE html><html><script>alert(1)</script></html>").status_code == 201
    assert upload(stack, b"plain", content_type="text/plain").status_code == 415  # not in the profile
    page.wait_for_function("() => Number(document.body.dataset.decisions || 0) >= 4", timeout=TIMEOUT_MS)

    assert page.inner_text("#grants") == "5"
    assert page.inner_text("#decisions") == "4"
    assert page.inner_text("#events") == "4 / 0"
    assert page.locator("#verdicts rect.accepted").count() >= 1
    assert page.locator("#verdicts rect.quarantined").count() >= 1
    assert "accepted: 3 (75 %)" in texts(page, "#verdicts")
    outcomes = texts(page, "#outcomes")
    assert "granted" in outcomes and "content_type_not_allowed" in outcomes
    reasons = texts(page, "#reasons")
    assert reasons and "ok" not in reasons  # only quarantine reasons
    latency = texts(page, "#latency")
    assert "grant p50" in latency and "upload→verdict p99" in latency
    data = requests.get(f"{stack.url}/api/ui/ops/data.json", timeout=10).json()
    assert data["grants"]["byOutcome"] == {"granted": 4, "content_type_not_allowed": 1}
    assert data["decisions"]["byOutcome"] == {"accepted": 3, "quarantined": 1}
    assert data["acceptedBytes"] == 3 * len(png())
    raw = json.dumps(data)
    assert stack.token not in raw and "ops.png" not in raw and "dev-user" not in raw  # aggregates only

    refreshes = int(page.eval_on_selector("#status", "s => s.dataset.refreshes"))
    page.wait_for_function(f"() => Number(document.getElementById('status').dataset.refreshes) > {refreshes}",
                           timeout=TIMEOUT_MS)  # live: it keeps polling
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ops-page.png"
    page.wait_for_timeout(4500)  # two more refreshes: the rates chart has points
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_the_page_is_only_on_the_development_host(stack: DevStack) -> None:
    response = requests.get(f"{stack.url}/api/ui/ops", timeout=10)
    assert response.status_code == 200 and "script-src 'self'" in response.headers["Content-Security-Policy"]
    # In Azure the same path reaches the upload page's route, which serves its own files only: 404.
    assert "ops" not in ASSETS and "ops/data.json" not in ASSETS
