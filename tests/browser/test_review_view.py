"""The upload page's review view in a real headless Chromium against ``valet dev``: hidden from a caller
without the review role; for a reviewer, the quarantine list, a record with its attachment-only read URL,
release and purge with a reason. The screenshot it saves (test-artifacts/review-view.png) is the one in
docs/img/review-view.png."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.browser.test_upload_page import ARTIFACTS, browser, page  # noqa: F401 - shared fixtures
from tests.support.devstack import DevStack, valet_dev
from tests.support.samples import html

pytestmark = [pytest.mark.azurite, pytest.mark.browser]



@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with valet_dev(tmp_path_factory.mktemp("review-dev")) as running:
        yield running


def quarantined(stack: DevStack) -> str:
    """An upload by the dev user (not the reviewer) that the validator quarantines: HTML declared as PNG."""
    data = html()
    auth = {"Authorization": f"Bearer {stack.token}"}
    grant = requests.post(f"{stack.url}/api/uploads", json={"filename": "cat.png", "contentType": "image/png",
                                                          "size": len(data)}, headers=auth, timeout=10).json()
    assert requests.put(grant["uploadUrl"], data=data, headers=grant["headers"], verify=stack.ca,
                        timeout=30).status_code == 201
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(grant["statusUrl"], headers=auth, timeout=10).json()["status"]
        if status == "quarantined":
            return str(grant["uploadId"])
        time.sleep(0.3)
    raise AssertionError("the upload was not decided")


def status(stack: DevStack, upload_id: str) -> str:
    return str(requests.get(f"{stack.url}/api/uploads/{upload_id}", timeout=10,
                            headers={"Authorization": f"Bearer {stack.token}"}).json()["status"])


def sign_in(page: Any, stack: DevStack, token: str) -> None:  # noqa: F811
    page.goto(f"{stack.url}/api/ui")
    page.select_option("#kind", "bearer")
    page.fill("#credential", token)
    page.locator("#credential").dispatch_event("change")


def test_the_view_stays_hidden_without_the_review_role(page: Any, stack: DevStack) -> None:  # noqa: F811
    quarantined(stack)
    sign_in(page, stack, stack.token)
    page.wait_for_timeout(1500)
    assert page.locator("#review").is_hidden()


def test_a_reviewer_lists_opens_releases_and_purges(page: Any, stack: DevStack) -> None:  # noqa: F811
    released, purged = quarantined(stack), quarantined(stack)
    sign_in(page, stack, stack.env["VALET_DEV_REVIEW_TOKEN"])
    page.wait_for_selector("#review:not([hidden])", timeout=10_000)
    page.wait_for_selector(f"#review-rows tr[data-upload-id='{released}']", timeout=10_000)
    page.fill("#f-reason", "active_content")
    page.click("#f-apply")
    page.wait_for_selector(f"#review-rows tr[data-upload-id='{purged}']", timeout=10_000)

    page.click(f"#review-rows tr[data-upload-id='{released}']")
    page.wait_for_selector("#record-download:not([hidden])", timeout=10_000)
    href = page.get_attribute("#record-download", "href") or ""
    assert "sp=r" in href and "rscd=attachment" in href.replace("%3B", ";").replace("%20", " ")
    assert released in page.inner_text("#record-fields")
    page.fill("#review-reason", "a test page, not an image: the uploader was told")
    page.click("#release")
    page.locator("#review-result").filter(has_text="Released").wait_for(timeout=30_000)
    assert status(stack, released) == "accepted"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "review-view.png"
    page.screenshot(path=str(shot), full_page=True)

    page.click(f"#review-rows tr[data-upload-id='{purged}']")
    page.locator("#record-fields").filter(has_text=purged).wait_for(timeout=10_000)
    page.fill("#review-reason", "no")  # too short: the API says why
    page.click("#purge")
    page.locator("#review-result").filter(has_text="invalid_reason").wait_for(timeout=10_000)
    page.fill("#review-reason", "abusive content")
    page.click("#purge")
    page.locator("#review-result").filter(has_text="Purged").wait_for(timeout=30_000)
    assert status(stack, purged) == "quarantined"
    rows = json.dumps(page.inner_text("#review-rows"))
    assert "purged" in rows and "released" in rows
    assert shot.stat().st_size > 10_000
