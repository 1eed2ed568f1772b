"""The upload page in a real headless Chromium (Debian's, driven by Playwright; no browser download),
against ``valet dev``: a real image ends ``accepted``, a disguised page ends ``quarantined``, and a page on
an origin that is not allowed is stopped by CORS, both at the app and at the storage account.

A screenshot of the finished page is saved in ``test-artifacts/`` (``VALET_TEST_ARTIFACTS`` to move it).
Without Chromium the tests are skipped with the reason (``scripts/browser.sh`` installs it).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import samples
from tests.support.devstack import DevStack, valet_dev
from tests.support.samples import png
from valet.local.emulator import PROJECT_ROOT
from valet.webui import ASSETS

pytestmark = [pytest.mark.azurite, pytest.mark.browser]

CHROMIUM = os.environ.get("VALET_CHROMIUM", "/usr/bin/chromium")
# The flags this machine's Chromium needs: no sandbox as root, and no background calls to Google's hosts
# (the closed network refuses them, many at a time).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("VALET_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts"))
DECISION_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (scripts/browser.sh installs Debian's package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# The built-in profiles plus a tiny one, so the page's size check can be shown with a small file.
PROFILES = json.loads((PROJECT_ROOT / "valet" / "default_profiles.json").read_text())
PROFILES["profiles"]["tiny"] = {"maxBytes": 64, "types": {"image/png": ["png"]}}
PROFILES["profiles"]["metered"] = {"maxBytes": 1_000_000, "types": {"image/png": ["png"]},
                                   "quota": {"filesPerDay": 1, "pendingFiles": 1}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with valet_dev(tmp_path_factory.mktemp("browser-dev"), extra_env={"VALET_PROFILES": json.dumps(PROFILES)}) as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # Azurite's certificate is self-signed for this run; a deployed account has a public one.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.console_messages = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console_messages.append(message.text))
    try:
        yield page
    finally:
        context.close()


class _ForeignOrigin(BaseHTTPRequestHandler):
    """The same page, served from an origin that VALET_CORS_ORIGINS does not list."""

    def do_GET(self) -> None:
        asset = self.path.split("?", 1)[0].removeprefix("/api/ui").strip("/")
        if asset not in ASSETS:
            self.send_error(404)
            return
        path, media_type = ASSETS[asset]
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", f"{media_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def foreign_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForeignOrigin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def upload(page: Any, path: Path | dict[str, Any], kind: str, secret: str, profile: str | None = None) -> dict[str, str]:
    page.select_option("#kind", kind)
    page.fill("#credential", secret)
    if profile is not None:
        page.locator("#credential").dispatch_event("change")  # what leaving the field does: list the profiles
        page.wait_for_selector(f"#profile option[value={profile}]", state="attached", timeout=10_000)
        page.select_option("#profile", profile)
    page.set_input_files("#file", str(path) if isinstance(path, Path) else path)
    page.click("#upload")
    page.wait_for_selector("#result:is([data-status=accepted],[data-status=quarantined],[data-status=error],"
                           "[data-status=expired])", timeout=DECISION_TIMEOUT_MS)
    result = page.locator("#result")
    return {"status": result.get_attribute("data-status") or "", "text": result.inner_text(),
            "progress": page.eval_on_selector("#progress", "p => String(p.value)")}


def test_uploads_from_the_page_end_accepted_and_quarantined(stack: DevStack, page: Any, tmp_path: Path) -> None:
    page.goto(f"{stack.url}/api/ui")
    assert page.title() == "valet: upload a file"

    image = tmp_path / "holiday.png"
    image.write_bytes(png())
    accepted = upload(page, image, "bearer", stack.token)
    assert accepted["status"] == "accepted", accepted
    assert accepted["text"] == "accepted: holiday.png"
    assert accepted["progress"] == "100"
    steps = page.locator("#steps li").all_inner_texts()
    assert steps[0].startswith("Granted upload ") and steps[1] == f"Uploaded {image.stat().st_size} bytes."
    page.wait_for_selector("#download", timeout=DECISION_TIMEOUT_MS)  # the read link for the accepted file
    link = page.get_attribute("#download", "href") or ""
    got = requests.get(link, verify=stack.ca, timeout=30)
    assert got.status_code == 200 and got.content == png()
    assert got.headers["Content-Disposition"].startswith('attachment; filename="holiday.png"')

    disguised = tmp_path / "cute.png"  # the browser declares image/png from the name; the bytes are a page
    disguised.write_bytes(b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>")
    quarantined = upload(page, disguised, "apikey", stack.api_key)
    assert quarantined["status"] == "quarantined", quarantined
    assert quarantined["text"] == "quarantined (content_not_allowed): cute.png"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "upload-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty frame
    assert page.input_value("#credential") == stack.api_key  # in the field...
    stored = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage}) + "
                           "document.cookie")
    assert stack.api_key not in stored and stack.token not in stored  # ...and nowhere else


def test_the_page_offers_the_callers_profiles_and_checks_the_file_before_any_grant(
        stack: DevStack, page: Any, tmp_path: Path) -> None:
    grants: list[str] = []
    page.on("request", lambda r: grants.append(r.url) if r.method == "POST" and "/api/uploads" in r.url else None)
    page.goto(f"{stack.url}/api/ui")
    page.fill("#credential", stack.token)
    page.locator("#credential").dispatch_event("change")
    page.wait_for_selector("#profile option[value=tiny]", state="attached", timeout=10_000)
    offered = page.eval_on_selector_all("#profile option", "options => options.map(o => o.value)")
    assert offered == ["images", "documents", "tiny", "metered"]  # archives and large need roles the dev token lacks
    assert page.input_value("#profile") == "images"  # the default
    assert "image/png (.png)" in page.inner_text("#profile-hint")
    assert ".png" in (page.get_attribute("#file", "accept") or "")

    big = tmp_path / "big.png"
    big.write_bytes(png() + bytes(100))
    too_big = upload(page, big, "bearer", stack.token, profile="tiny")
    assert too_big["status"] == "error" and too_big["text"].endswith("[size_exceeds_profile]"), too_big
    text = tmp_path / "notes.txt"
    text.write_text("plain words")
    wrong_type = upload(page, text, "bearer", stack.token, profile="images")
    assert wrong_type["status"] == "error" and wrong_type["text"].endswith("[content_type_not_allowed]"), wrong_type
    assert grants == []  # both refused in the page: no grant was asked for

    accepted = upload(page, text, "apikey", stack.api_key, profile="documents")  # the dev key: the same profiles
    assert accepted["status"] == "accepted", accepted
    assert len(grants) == 1 and page.locator("#steps li").first.inner_text().find("profile documents") > 0


def test_a_phone_photo_the_browser_has_no_type_for_is_declared_by_its_extension(
        stack: DevStack, page: Any) -> None:
    """Browsers on Linux and Windows give a .heic file no type; the page declares the profile's type for the
    extension, and the photo is accepted and offered for download as an attachment."""
    page.goto(f"{stack.url}/api/ui")
    photo = {"name": "IMG_0042.HEIC", "mimeType": "", "buffer": samples.heic(640, 480)}
    accepted = upload(page, photo, "bearer", stack.token, profile="images")
    assert accepted["status"] == "accepted", accepted
    page.wait_for_selector("#download", timeout=DECISION_TIMEOUT_MS)
    got = requests.get(page.get_attribute("#download", "href") or "", verify=stack.ca, timeout=30)
    assert got.status_code == 200 and got.content == photo["buffer"]
    assert got.headers["Content-Type"] == "image/heic"
    assert got.headers["Content-Disposition"].startswith('attachment; filename="IMG_0042.HEIC"')


def test_the_page_reports_a_refused_grant(stack: DevStack, page: Any, tmp_path: Path) -> None:
    page.goto(f"{stack.url}/api/ui")
    image = tmp_path / "a.png"
    image.write_bytes(png())
    refused = upload(page, image, "bearer", "not-a-token")
    assert refused["status"] == "error"
    assert refused["text"].endswith("[invalid_token]"), refused
    assert refused["progress"] == "0"


def test_a_page_on_another_origin_is_stopped_by_cors(stack: DevStack, page: Any, foreign_origin: str,
                                                     tmp_path: Path) -> None:
    # The app: the grant request from the foreign page is refused at the preflight, so the page gets no
    # response to read (and valet issues no grant).
    page.goto(f"{foreign_origin}/api/ui")
    page.click("summary")  # the API base URL field is folded away by default
    page.fill("#api", f"{stack.url}/api/")
    image = tmp_path / "a.png"
    image.write_bytes(png())
    blocked = upload(page, image, "bearer", stack.token)
    assert blocked["status"] == "error"
    assert blocked["text"].endswith("[network_error]"), blocked
    assert any("CORS policy" in text for text in page.console_messages), page.console_messages

    # Storage: even holding a valid grant, the foreign page cannot PUT, because the account's CORS rules do
    # not list its origin. Nothing reaches the blob: the upload stays "pending" with nothing uploaded.
    grant = requests.post(f"{stack.url}/api/uploads", headers={"Authorization": f"Bearer {stack.token}"},
                          json={"filename": "a.png", "contentType": "image/png", "size": len(png())},
                          timeout=10).json()
    page.console_messages.clear()
    outcome = page.evaluate(
        """async ([url, headers, body]) => {
             try {
               const r = await fetch(url, {method: "PUT", headers, body: new Uint8Array(body)});
               return "status " + r.status;
             } catch (e) { return "blocked: " + e.name; }
           }""",
        [grant["uploadUrl"], grant["headers"], list(png())],
    )
    assert outcome == "blocked: TypeError"
    assert any("CORS policy" in text for text in page.console_messages), page.console_messages
    status = requests.get(grant["statusUrl"], headers={"Authorization": f"Bearer {stack.token}"}, timeout=10).json()
    assert status["status"] == "pending" and "expiresOn" in status  # expiresOn: nothing was uploaded

    # The same grant from the allowed origin (the app's own page) goes through: the refusal above was CORS.
    page.goto(f"{stack.url}/api/ui")
    allowed = page.evaluate(
        """async ([url, headers, body]) => {
             const r = await fetch(url, {method: "PUT", headers, body: new Uint8Array(body)});
             return r.status;
           }""",
        [grant["uploadUrl"], grant["headers"], list(png())],
    )
    assert allowed == 201


@pytest.fixture
def lagging_stack(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: Any,
                  blob_service: Any) -> Iterator[tuple[str, str, Any]]:
    """The app's functions in this process on the session's Azurite, its first grant issued on a clock 2
    minutes behind with a 1-minute SAS (a real expired SAS, without waiting for one), the page served from
    the host's own origin and that origin allowed by the storage account's CORS rules (restored after)."""
    from datetime import UTC, datetime, timedelta

    from tests.support.functions import fresh_app
    from valet.cors import apply_storage_cors
    from valet.local.dev import BlobWatcher, bind_loopback
    from valet.local.devhost import FunctionHost

    listener = bind_loopback(0)
    origin = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value(), "VALET_SAS_TTL_MINUTES": "1",
           "VALET_SAS_START_SKEW_MINUTES": "0", "VALET_DELEGATION_KEY_REFRESH_MINUTES": "5",
           "VALET_UI_ENABLED": "true", "VALET_CORS_ORIGINS": origin, "VALET_PUBLIC_BASE_URL": origin,
           "VALET_ALLOW_INSECURE_HTTP": "true"}
    saved = blob_service.get_service_properties()["cors"]
    apply_storage_cors(blob_service, (origin,))
    try:
        with fresh_app(monkeypatch, env) as module, FunctionHost(module.app, listener=listener) as host:
            calls = [0]

            def lagging_first() -> datetime:
                calls[0] += 1
                return datetime.now(UTC) - (timedelta(minutes=2) if calls[0] == 1 else timedelta(0))

            monkeypatch.setattr(module.runtime().grants, "_clock", lagging_first)
            watcher = BlobWatcher(blob_service, valet_env["VALET_UPLOADS_CONTAINER"], host, "validate_upload",
                                  interval=0.2).start()
            try:
                yield host.url, issuer.mint("page-late"), calls
            finally:
                watcher.stop()
    finally:
        blob_service.set_service_properties(cors=saved)
        listener.close()


EXPIRED_PUT = """async ([apiBase, token, png, renew, clockLagMs]) => {
  const m = await import("/api/ui/valet-upload.js");
  const auth = { kind: "bearer", secret: token };
  const file = new File([new Uint8Array(png)], "late.png", { type: "image/png" });
  const grant = await m.requestGrant(apiBase, auth, file);
  const before = grant.uploadUrl;
  const realNow = Date.now;
  Date.now = () => realNow() - clockLagMs;  // this page's clock lags: only storage knows the SAS expired
  try {
    await m.putToStorage(grant, file, () => {}, renew ? { apiBase, auth } : {});
  } catch (error) {
    return { code: error.code, message: error.message, status: error.status };
  } finally {
    Date.now = realNow;
  }
  const decision = await m.waitForDecision(grant.statusUrl, auth, { timeoutMs: 60000 });
  return { renewed: grant.uploadUrl !== before, sameBlob: grant.uploadUrl.split("?")[0] === before.split("?")[0],
           status: decision.status };
}"""


@pytest.mark.parametrize("lag_ms", [0, 180_000], ids=["page-clock-true", "page-clock-3-min-behind"])
def test_the_module_says_an_expired_upload_url_expired_and_renews_it_when_it_can(
        lagging_stack: tuple[str, str, Any], page: Any, lag_ms: int) -> None:
    url, token, calls = lagging_stack
    page.goto(f"{url}/api/ui")
    api = f"{url}/api/"
    refused = page.evaluate(EXPIRED_PUT, [api, token, list(png()), False, lag_ms])
    assert (refused["code"], refused["status"]) == ("grant_expired", 403), refused
    assert "upload URL expired" in refused["message"] and "renewGrant" in refused["message"]
    calls[0] = 0  # the next grant is issued on the lagging clock again
    done = page.evaluate(EXPIRED_PUT, [api, token, list(png()), True, lag_ms])
    assert done == {"renewed": True, "sameBlob": True, "status": "accepted"}, done


def test_the_page_shows_what_remains_of_the_quota_and_a_quota_refusal(stack: DevStack, page: Any,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "quota.png"
    path.write_bytes(png())
    page.goto(f"{stack.url}/api/ui")
    first = upload(page, path, "apikey", stack.api_key, profile="metered")
    assert first["status"] == "accepted", first
    page.wait_for_function("() => document.getElementById('quota-hint').textContent.includes('0 files left today')",
                           timeout=10_000)
    assert page.inner_text("#quota-hint") == "metered (caller): 0 files left today, 1 more pending"
    second = upload(page, path, "apikey", stack.api_key, profile="metered")
    assert second["status"] == "error" and "[quota_exceeded]" in second["text"], second
