"""The reference client (`valet upload`) against the app's functions on a real HTTP host, real Azurite,
real tokens and API keys, and the watched blob trigger."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.support.functions import fresh_app
from tests.support.samples import html, pdf, png
from valet.local.dev import BlobWatcher
from valet.local.devhost import FunctionHost
from valet.local.devidp import DevIssuer
from valet.local.emulator import free_port
from valet.local.upload import main as upload_main
from valet_client import EXIT_ACCEPTED, EXIT_AUTH, EXIT_REJECTED, EXIT_TRANSIENT, EXIT_USAGE, UploadError, ValetClient

pytestmark = pytest.mark.azurite


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer,
          blob_service: BlobServiceClient) -> Iterator[FunctionHost]:
    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value()}
    with fresh_app(monkeypatch, env) as module, FunctionHost(module.app, port=0) as host:
        watcher = BlobWatcher(blob_service, valet_env["VALET_UPLOADS_CONTAINER"], host, "validate_upload",
                              interval=0.2).start()
        yield host
        watcher.stop()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    out = io.StringIO()
    code = upload_main(argv, out=out, environ=env)
    return code, out.getvalue()


def cli_env(host: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint) -> dict[str, str]:
    return {"VALET_URL": host.url, "VALET_TOKEN": issuer.mint("uploader"),
            "VALET_STORAGE_CA_BUNDLE": storage_endpoint.ca_bundle or ""}


def test_download_url_reads_back_the_accepted_file(stack: FunctionHost, issuer: DevIssuer,
                                                   storage_endpoint: StorageEndpoint, tmp_path: Path) -> None:
    import requests

    code, out = run([str(write(tmp_path, "cat.png", png())), "--download-url"], cli_env(stack, issuer, storage_endpoint))
    assert code == EXIT_ACCEPTED, out
    [line] = [line for line in out.splitlines() if line.startswith("download: ")]
    url = line.split()[1]
    got = requests.get(url, verify=storage_endpoint.ca_bundle or True, timeout=30)
    assert got.status_code == 200 and got.content == png()
    assert got.headers["Content-Disposition"].startswith('attachment; filename="cat.png"')


def test_good_png_is_accepted(stack: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint,
                              tmp_path: Path) -> None:
    code, out = run([str(write(tmp_path, "cat.png", png()))], cli_env(stack, issuer, storage_endpoint))
    assert code == EXIT_ACCEPTED, out
    assert "cat.png: accepted" in out and "single upload" in out


def test_disguised_html_is_rejected_with_its_reason(stack: FunctionHost, issuer: DevIssuer,
                                                   storage_endpoint: StorageEndpoint, tmp_path: Path) -> None:
    code, out = run([str(write(tmp_path, "cute.png", html()))], cli_env(stack, issuer, storage_endpoint))
    assert code == EXIT_REJECTED
    assert "cute.png: quarantined (content_not_allowed)" in out


def test_sha256_is_declared_and_checked(stack: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint,
                                        tmp_path: Path) -> None:
    code, out = run([str(write(tmp_path, "doc.pdf", pdf())), "--profile", "documents", "--sha256", "--quiet"],
                    cli_env(stack, issuer, storage_endpoint))
    assert code == EXIT_ACCEPTED, out
    assert out.strip().startswith("doc.pdf: accepted")


def test_blocks_fall_back_to_put_blob_where_create_only_blocks_are_refused(
        stack: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint, tmp_path: Path) -> None:
    big = write(tmp_path, "big.bin", png() + os.urandom(40 * 1024 * 1024))
    client = ValetClient(stack.url, token=issuer.mint("big", roles=("Uploads.Write", "Uploads.Large")), storage_verify=storage_endpoint.ca_bundle or True)
    seen: list[int] = []
    result = client.upload(big, content_type="application/octet-stream", profile="large",
                           progress=lambda sent, total: seen.append(sent))
    assert result.mode == "single"  # Azurite 3.37 refuses Put Block with sp=c; Azure allows it
    assert seen[-1] == big.stat().st_size
    assert result.status in ("accepted", "quarantined")


def test_no_wait_exits_0_after_a_successful_upload_and_says_pending(
        stack: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint, tmp_path: Path) -> None:
    code, out = run([str(write(tmp_path, "later.png", png())), "--no-wait", "--quiet"],
                    cli_env(stack, issuer, storage_endpoint))
    assert code == EXIT_ACCEPTED, out
    assert out.startswith("later.png: pending  upload "), out


def test_bad_token_is_an_auth_failure(stack: FunctionHost, tmp_path: Path) -> None:
    code, _ = run([str(write(tmp_path, "a.png", png()))], {"VALET_URL": stack.url, "VALET_TOKEN": "not.a.jwt"})
    assert code == EXIT_AUTH


def test_refused_grant_is_a_rejection(stack: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint,
                                      tmp_path: Path) -> None:
    code, _ = run([str(write(tmp_path, "page.html", html()))], cli_env(stack, issuer, storage_endpoint))
    assert code == EXIT_REJECTED


def test_unreachable_service_is_transient(tmp_path: Path) -> None:
    client = ValetClient(f"http://127.0.0.1:{free_port()}", token="x", retries=2, sleep=lambda s: None)
    with pytest.raises(UploadError) as info:
        client.upload(write(tmp_path, "a.png", png()))
    assert info.value.exit_code == EXIT_TRANSIENT


def test_usage_errors(tmp_path: Path) -> None:
    assert run([str(tmp_path / "missing.png")], {"VALET_URL": "http://127.0.0.1:1"})[0] == EXIT_USAGE
    assert run([str(write(tmp_path, "a.png", png()))], {})[0] == EXIT_USAGE


@pytest.mark.parametrize(("window", "grants", "renewals"), [("240", 1, 1), ("0", 2, 0)],
                         ids=["renewed", "window-closed-fresh-grant"])
def test_an_expired_sas_is_renewed_or_replaced(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str],
                                               issuer: DevIssuer, blob_service: BlobServiceClient,
                                               storage_endpoint: StorageEndpoint, tmp_path: Path,
                                               window: str, grants: int, renewals: int) -> None:
    """The first grant is issued on a clock 2 minutes behind with a 1-minute SAS, so its SAS has expired
    before the upload starts. The client renews it for the same blob while the upload window is open;
    with no window beyond the SAS (VALET_UPLOAD_WINDOW_MINUTES=0) renewal is refused and it asks for a
    fresh grant."""
    from datetime import UTC, datetime, timedelta

    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value(), "VALET_SAS_TTL_MINUTES": "1",
           "VALET_SAS_START_SKEW_MINUTES": "0", "VALET_DELEGATION_KEY_REFRESH_MINUTES": "5",
           "VALET_UPLOAD_WINDOW_MINUTES": window}
    with fresh_app(monkeypatch, env) as module, FunctionHost(module.app, port=0) as host:
        grant_issuer = module.runtime().grants
        calls = [0]

        def lagging_then_true() -> datetime:
            calls[0] += 1
            now = datetime.now(UTC)
            return now - timedelta(minutes=2) if calls[0] == 1 else now

        monkeypatch.setattr(grant_issuer, "_clock", lagging_then_true)
        watcher = BlobWatcher(blob_service, valet_env["VALET_UPLOADS_CONTAINER"], host, "validate_upload",
                              interval=0.2).start()
        try:
            client = ValetClient(host.url, token=issuer.mint("slow"), storage_verify=storage_endpoint.ca_bundle or True)
            result = client.upload(write(tmp_path, "late.png", png()))
        finally:
            watcher.stop()
    assert (result.grants, result.renewals) == (grants, renewals)
    assert result.status == "accepted"


def test_the_client_cancels_an_unused_grant(stack: FunctionHost, issuer: DevIssuer,
                                            storage_endpoint: StorageEndpoint) -> None:
    import requests

    client = ValetClient(stack.url, token=issuer.mint("canceller"), storage_verify=storage_endpoint.ca_bundle or True)
    grant = client.grant(filename="cat.png", content_type="image/png", size=len(png()))
    client.cancel(grant)
    refused = requests.put(grant["uploadUrl"], data=png(), headers=grant["headers"],
                           verify=storage_endpoint.ca_bundle or True, timeout=30)
    assert refused.status_code == 403
    assert client.status(grant["statusUrl"])["status"] == "cancelled"
    used = client.grant(filename="cat.png", content_type="image/png", size=len(png()))
    assert requests.put(used["uploadUrl"], data=png(), headers=used["headers"],
                        verify=storage_endpoint.ca_bundle or True, timeout=30).status_code == 201
    with pytest.raises(UploadError) as raised:
        client.cancel(used)
    assert (raised.value.exit_code, raised.value.code) == (EXIT_REJECTED, "upload_exists")


def test_an_untrusted_storage_certificate_fails_fast_and_says_how_to_pass_the_ca(
        stack: FunctionHost, issuer: DevIssuer, storage_endpoint: StorageEndpoint, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The standalone ``valet-upload`` against a stack whose storage has the emulator's self-signed
    certificate, without its CA: one attempt, no retries, and an error that names the cause and the fix
    (it used to retry for 8 s and say storage_unreachable)."""
    import time

    from valet_client.cli import main as standalone

    if not storage_endpoint.ca_bundle:
        pytest.skip("this storage endpoint has a publicly trusted certificate")
    slept: list[float] = []
    client = ValetClient(stack.url, token=issuer.mint("no-ca"), sleep=slept.append)  # system CAs only
    started = time.monotonic()
    with pytest.raises(UploadError) as raised:
        client.upload(write(tmp_path, "a.png", png()), wait=False)
    assert time.monotonic() - started < 5 and slept == []
    assert (raised.value.code, raised.value.exit_code) == ("storage_certificate_unverified", EXIT_TRANSIENT)
    message = str(raised.value)
    assert "certificate could not be verified" in message and "self-signed" in message
    assert "--storage-ca" in message and "VALET_STORAGE_CA_BUNDLE" in message
    assert "sig=" not in message and "127.0.0.1" not in message  # neither the SAS nor requests' URL text

    code = standalone([str(tmp_path / "a.png"), "--quiet"],
                      environ={"VALET_URL": stack.url, "VALET_TOKEN": issuer.mint("no-ca")})
    err = capsys.readouterr().err
    assert code == EXIT_TRANSIENT
    assert "(storage_certificate_unverified)" in err and "--storage-ca" in err


@pytest.mark.parametrize(("window", "grants", "renewals"), [("240", 1, 1), ("0", 2, 0)],
                         ids=["renewed", "window-closed-fresh-grant"])
def test_a_sas_storage_finds_expired_is_renewed_though_the_client_clock_says_fresh(
        monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer,
        blob_service: BlobServiceClient, storage_endpoint: StorageEndpoint, tmp_path: Path,
        window: str, grants: int, renewals: int) -> None:
    """A real expired SAS on Azurite: the first grant is issued on an app clock 2 minutes behind with a
    1-minute SAS, and the client's own clock lags 3 minutes, so only storage knows the SAS expired and
    answers its generic 403. The client takes that 403 for what it is, renews the SAS for the same blob
    (or, with no window left, asks for a fresh grant) and the upload is accepted."""
    from datetime import UTC, datetime, timedelta

    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value(), "VALET_SAS_TTL_MINUTES": "1",
           "VALET_SAS_START_SKEW_MINUTES": "0", "VALET_DELEGATION_KEY_REFRESH_MINUTES": "5",
           "VALET_UPLOAD_WINDOW_MINUTES": window}
    with fresh_app(monkeypatch, env) as module, FunctionHost(module.app, port=0) as host:
        calls = [0]

        def lagging_then_true() -> datetime:
            calls[0] += 1
            return datetime.now(UTC) - (timedelta(minutes=2) if calls[0] == 1 else timedelta(0))

        monkeypatch.setattr(module.runtime().grants, "_clock", lagging_then_true)
        watcher = BlobWatcher(blob_service, valet_env["VALET_UPLOADS_CONTAINER"], host, "validate_upload",
                              interval=0.2).start()
        try:
            client = ValetClient(host.url, token=issuer.mint("skewed"), storage_verify=storage_endpoint.ca_bundle or True,
                                 clock=lambda: datetime.now(UTC) - timedelta(minutes=3))
            calls[0] = 1  # a control grant on the true clock
            first = client.grant(filename="x.png", content_type="image/png", size=len(png()))
            calls[0] = 0  # the upload's own first grant is the lagging one
            import requests

            raw = requests.put(first["uploadUrl"], data=png(), headers=first["headers"], timeout=30,
                               verify=storage_endpoint.ca_bundle or True)
            assert raw.status_code == 201  # a grant on the true clock uploads
            result = client.upload(write(tmp_path, "late.png", png()))
        finally:
            watcher.stop()
    assert (result.grants, result.renewals) == (grants, renewals)
    assert result.status == "accepted"


def test_a_sas_that_cannot_be_renewed_says_the_grant_expired(
        monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer,
        storage_endpoint: StorageEndpoint, tmp_path: Path) -> None:
    """Every grant comes with an already expired SAS and no window to renew it in: the error says so."""
    from datetime import UTC, datetime, timedelta

    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value(), "VALET_SAS_TTL_MINUTES": "1",
           "VALET_SAS_START_SKEW_MINUTES": "0", "VALET_DELEGATION_KEY_REFRESH_MINUTES": "5",
           "VALET_UPLOAD_WINDOW_MINUTES": "0"}
    with fresh_app(monkeypatch, env) as module, FunctionHost(module.app, port=0) as host:
        monkeypatch.setattr(module.runtime().grants, "_clock", lambda: datetime.now(UTC) - timedelta(minutes=2))
        client = ValetClient(host.url, token=issuer.mint("stuck"), storage_verify=storage_endpoint.ca_bundle or True,
                             clock=lambda: datetime.now(UTC) - timedelta(minutes=3))
        with pytest.raises(UploadError) as raised:
            client.upload(write(tmp_path, "late.png", png()), max_grants=2)
    assert (raised.value.code, raised.value.exit_code) == ("grant_expired", EXIT_TRANSIENT)
    assert "upload URL expired" in str(raised.value)
