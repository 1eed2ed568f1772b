"""Attack 6: HTTP properties the client chose (``x-ms-blob-content-*``, ``x-ms-blob-cache-control``).

Before the fix, ``x-ms-blob-content-encoding: gzip`` on an ordinary PNG made every ranged read fail in the
SDK (it tries to decompress), so the upload was never decided and its status stayed ``pending``; and
Content-Encoding, Content-Disposition, Cache-Control and Content-Language survived into ``accepted``
(Copy Blob copies the source's properties)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from tests.adversarial.kit import decided, hooked_validation, status_of
from tests.conftest import StorageEndpoint
from tests.integration.test_validation import Upload, containers
from tests.support import samples
from valet.runtime import Runtime
from valet.validation.reasons import Outcome

pytestmark = pytest.mark.azurite

CHOSEN = {"x-ms-blob-content-encoding": "gzip", "x-ms-blob-content-disposition": "inline; filename=evil.html",
          "x-ms-blob-cache-control": "public, max-age=31536000", "x-ms-blob-content-language": "xx"}


class Requests:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request: Any) -> None:
        self.seen.append((request.http_request.method, request.http_request.url))

    def setting_properties(self) -> int:
        return sum(1 for method, url in self.seen if method == "PUT" and "comp=properties" in url)


def test_gzip_encoded_png_is_read_as_stored_and_decided(grant: Callable[..., Upload], runtime: Runtime,
                                                        blob_service: BlobServiceClient) -> None:
    data = samples.png()
    up = grant(size=len(data))
    assert up.put(data, {**up.headers, **CHOSEN}).status_code == 201
    decision = up.decide()
    assert (decision.outcome, decision.reason) == (Outcome.ACCEPTED, "ok")
    copy = blob_service.get_blob_client(containers(runtime)[1], up.name)
    settings = copy.get_blob_properties().content_settings
    assert settings.content_type == "image/png"
    assert (settings.content_encoding, settings.content_disposition, settings.cache_control,
            settings.content_language) == (None, None, None, None)
    assert copy.download_blob().readall() == data
    assert status_of(runtime, up)["status"] == "accepted"


def test_gzip_encoded_html_is_still_found_out(grant: Callable[..., Upload], runtime: Runtime,
                                              blob_service: BlobServiceClient) -> None:
    data = samples.html()
    up = grant(size=len(data))
    assert up.put(data, {**up.headers, **CHOSEN}).status_code == 201
    decision = up.decide()
    assert (decision.outcome, decision.reason) == (Outcome.QUARANTINED, "active_content")
    held = blob_service.get_blob_client(containers(runtime)[2], up.name).get_blob_properties().content_settings
    assert (held.content_type, held.content_encoding, held.content_disposition) == ("application/octet-stream",
                                                                                   None, None)


def test_properties_cost_one_request_only_when_the_client_changed_them(
        grant: Callable[..., Upload], runtime: Runtime, storage_endpoint: StorageEndpoint) -> None:
    counted = Requests()
    validation = hooked_validation(runtime, storage_endpoint, counted)
    honest = grant(size=len(samples.png()))
    assert honest.put(samples.png()).status_code == 201
    assert decided(validation, honest).outcome is Outcome.ACCEPTED
    assert counted.setting_properties() == 0  # the upload already had exactly the verdict's properties
    counted.seen.clear()
    chosen = grant(size=len(samples.png()))
    assert chosen.put(samples.png(), {**chosen.headers, "x-ms-blob-cache-control": "max-age=1"}).status_code == 201
    assert decided(validation, chosen).outcome is Outcome.ACCEPTED
    assert counted.setting_properties() == 1
