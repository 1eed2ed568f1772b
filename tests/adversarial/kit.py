"""What the attacker holds (a valid grant and its URL) and what the defender checks afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from azure.core.pipeline import PipelineRequest
from azure.storage.blob import BlobServiceClient

from tests.conftest import StorageEndpoint
from tests.integration.test_validation import Upload, containers, names_in
from valet.runtime import Runtime
from valet.storage import EmulatorCredential
from valet.validation.records import Decision
from valet.validation.service import Validation

API_VERSION = "2026-06-06"  # what Azurite 3.37 accepts; the SDK's own version needs --skipApiVersionCheck


def sas_request(up: Upload, method: str, query: str = "", headers: dict[str, str] | None = None,
                data: bytes = b"") -> requests.Response:
    """A raw request with the upload's own SAS URL (plus ``query``), as the attacker would send it."""
    url = str(up.grant["uploadUrl"]) + query
    return requests.request(method, url, data=data, headers={"x-ms-version": API_VERSION, **(headers or {})},
                            verify=up.ca or True, timeout=30)


def where(up: Upload, blob_service: BlobServiceClient) -> dict[str, bool]:
    uploads, accepted, quarantine = containers(up.runtime)
    return {name: up.name in names_in(blob_service, container)
            for name, container in (("uploads", uploads), ("accepted", accepted), ("quarantine", quarantine))}


def status_of(runtime: Runtime, up: Upload) -> dict[str, Any]:
    from tests.support.fakes import ALICE

    return runtime.validation.status.status(ALICE.partition, up.upload_id)


class OnRequest:
    """A storage client ``raw_request_hook`` that runs ``action`` once, just before the first request
    ``match`` selects is sent: a deterministic way to interleave two invocations."""

    def __init__(self, match: Callable[[Any], bool], action: Callable[[], object]) -> None:
        self.match, self.action, self.fired = match, action, False

    def __call__(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        if not self.fired and self.match(request.http_request):
            self.fired = True
            self.action()


def hooked_validation(runtime: Runtime, endpoint: StorageEndpoint, hook: Callable[..., None],
                      **client: Any) -> Validation:
    service = BlobServiceClient(endpoint.blob_url, credential=EmulatorCredential(endpoint.blob_url),
                                connection_verify=endpoint.ca_bundle or True, raw_request_hook=hook, **client)
    return Validation.from_settings(runtime.settings, service)


def decided(validation: Validation, up: Upload) -> Decision:
    decision = validation.validator.process(up.name)
    assert decision is not None
    return decision
