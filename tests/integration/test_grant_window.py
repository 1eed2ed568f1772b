"""The grant window against a real Azurite: a blob created after the window closed is ``grant_expired``,
one created within the clock-skew allowance after it is not. The blobs are written with the app's own
identity at granted names (a SAS would be refused by storage itself after its expiry), the grants issued
on a clock set back so their windows are already over."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

from tests.support import samples
from valet import api
from valet.runtime import Runtime
from valet.validation.reasons import Outcome

pytestmark = pytest.mark.azurite


def late_upload(runtime: Runtime, blob_service: BlobServiceClient, window_closed_ago: timedelta) -> str:
    """A granted name whose window closed ``window_closed_ago``, with a PNG written at it now."""
    data = samples.png()
    back = runtime.settings.upload_window + window_closed_ago
    runtime.grants._clock = lambda: datetime.now(UTC) - back  # type: ignore[attr-defined]
    response = api.create_upload(lambda: runtime, func.HttpRequest(
        method="POST", url="https://valet.example/api/uploads", headers={"content-type": "application/json"},
        body=json.dumps({"filename": "cat.png", "contentType": "image/png", "size": len(data)}).encode()))
    assert response.status_code == 201
    container = runtime.settings.storage.uploads_container
    name = unquote(json.loads(response.get_body())["blobUri"].split(f"/{container}/", 1)[1])
    blob_service.get_blob_client(container, name).upload_blob(data)
    return name


def test_a_blob_created_after_the_window_is_grant_expired(runtime: Runtime, blob_service: BlobServiceClient) -> None:
    name = late_upload(runtime, blob_service, runtime.settings.clock_skew + timedelta(minutes=2))
    decision = runtime.validation.validator.process(name)
    assert decision is not None and (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "grant_expired")


def test_a_blob_created_within_the_skew_after_the_window_is_accepted(runtime: Runtime,
                                                                     blob_service: BlobServiceClient) -> None:
    name = late_upload(runtime, blob_service, runtime.settings.clock_skew - timedelta(minutes=2))
    decision = runtime.validation.validator.process(name)
    assert decision is not None and (decision.outcome, decision.reason) == (Outcome.ACCEPTED, "ok")
