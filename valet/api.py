"""HTTP handlers. Each parses the request, calls the services and maps the result; no storage calls or
policy decisions live here."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import azure.functions as func

from valet.errors import PayloadTooLarge, UnsupportedMediaType
from valet.grants import parse_grant_request
from valet.http import json_response, problems
from valet.runtime import Runtime

ROUTE_PREFIX = "/api"


def _body(req: func.HttpRequest, limit: int) -> bytes:
    declared = (req.headers.get("content-type") or "application/json").split(";", 1)[0].strip().lower()
    if declared != "application/json" and not declared.endswith("+json"):
        raise UnsupportedMediaType("Send the request body as application/json.", code="unsupported_request_type")
    body = req.get_body() or b""
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.", code="request_too_large")
    return body


def _base_url(req: func.HttpRequest, runtime: Runtime) -> str:
    if runtime.settings.public_base_url:
        return runtime.settings.public_base_url
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


@problems
def create_upload(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    caller = runtime.authenticator.admit(req)
    grant_request = parse_grant_request(_body(req, runtime.settings.max_request_bytes))
    grant = runtime.grants.issue(caller, grant_request)
    status_url = f"{_base_url(req, runtime)}{ROUTE_PREFIX}/uploads/{grant.upload_id}"
    return json_response(201, grant.to_json(status_url), headers={"Location": status_url})


@problems
def upload_status(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    caller = runtime.authenticator.authenticate(req)
    upload_id = req.route_params.get("uploadId", "")
    return json_response(200, runtime.validation.status.status(caller.partition, upload_id))
