"""``valet upload`` shows what remains of the profile's quotas after an upload, and a refusal for quota
says what remains and when to try again (exit 4), without retrying in vain."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.support.functions import fresh_app
from tests.support.quota import new_table_name, table_client
from tests.support.samples import png
from valet.local.dev import BlobWatcher
from valet.local.devhost import FunctionHost
from valet.local.devidp import DevIssuer
from valet.local.upload import main as upload_main
from valet_client import EXIT_ACCEPTED, EXIT_TRANSIENT, ValetClient

pytestmark = pytest.mark.azurite

PROFILES = {"default": "metered", "profiles": {"metered": {
    "maxBytes": 10_000, "types": {"image/png": ["png"]}, "quota": {"filesPerDay": 2, "bytesPerDay": 5_000}}}}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer,
          blob_service: BlobServiceClient, storage_endpoint: StorageEndpoint) -> Iterator[FunctionHost]:
    table = new_table_name()
    client = table_client(storage_endpoint.blob_url, storage_endpoint.table_url, storage_endpoint.ca_bundle, table)
    client.create_table()
    env = {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value(), "VALET_PROFILES": json.dumps(PROFILES),
           "VALET_QUOTA_TABLE": table, "VALET_TABLE_SERVICE_URL": storage_endpoint.table_url}
    with fresh_app(monkeypatch, env) as module, FunctionHost(module.app, port=0) as host:
        watcher = BlobWatcher(blob_service, valet_env["VALET_UPLOADS_CONTAINER"], host, "validate_upload",
                              interval=0.2).start()
        yield host
        watcher.stop()
    client.delete_table()
    client.close()


def test_valet_upload_shows_what_remains_and_why_it_is_refused(stack: FunctionHost, issuer: DevIssuer,
                                                               storage_endpoint: StorageEndpoint, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png())
    token = issuer.mint("quota-user")
    argv = [str(path), "--url", stack.url, "--token", token, "--storage-ca", storage_endpoint.ca_bundle or ""]
    out = io.StringIO()
    assert upload_main(argv, out=out, environ={}) == EXIT_ACCEPTED
    used = len(png())
    assert f"quota: metered (caller): 1 files and {5_000 - used:,} bytes left today" in out.getvalue()
    assert upload_main(argv, out=io.StringIO(), environ={}) == EXIT_ACCEPTED
    refused = io.StringIO()
    assert upload_main(argv, out=refused, environ={}) == EXIT_TRANSIENT
    err = capsys.readouterr().err
    assert "Quota exceeded: metered (caller): 0 files" in err and "try again in" in err and "(quota_exceeded)" in err
    sleeps: list[float] = []
    client = ValetClient(stack.url, token=token, storage_verify=storage_endpoint.ca_bundle or True,
                         sleep=sleeps.append)
    assert client.quota()[0]["remaining"]["filesPerDay"] == 0
    with pytest.raises(Exception, match="Quota exceeded"):
        client.grant(filename="a.png", content_type="image/png", size=10)
    assert sleeps == []  # a quota refusal is not retried
