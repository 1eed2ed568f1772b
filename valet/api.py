"""HTTP handlers. Each parses the request, calls the services and maps the result; no storage calls or
policy decisions live here."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import azure.functions as func

from valet import cors, openapi, webui
from valet.errors import BadRequest, ConfigurationError, Conflict, PayloadTooLarge, UnsupportedMediaType
from valet.grants.request import parse_grant_request, parse_renew_request
from valet.grants.state import BlobUploadState
from valet.http import json_response, problems
from valet.runtime import Runtime, RuntimeHolder

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


Handler = Callable[[Callable[[], Runtime], func.HttpRequest], func.HttpResponse]


def _origins(get_runtime: Callable[[], Runtime]) -> tuple[str, ...]:
    try:
        return get_runtime().settings.cors_origins
    except ConfigurationError:
        return ()  # misconfigured: no origin is trusted; the handler reports the error itself


@problems
def _options(get_runtime: Callable[[], Runtime], req: func.HttpRequest, methods: tuple[str, ...]) -> func.HttpResponse:
    origin = req.headers.get("origin")
    if req.headers.get("access-control-request-method") is None:  # a plain OPTIONS, not a CORS preflight
        response = func.HttpResponse(status_code=204, headers={"Allow": ", ".join((*methods, "OPTIONS"))})
        cors.add_cors_headers(response.headers, _origins(get_runtime), origin)
        return response
    return func.HttpResponse(status_code=204, headers=cors.preflight(_origins(get_runtime), origin, methods))


def _with_cors(get_runtime: Callable[[], Runtime], req: func.HttpRequest, methods: tuple[str, ...],
               handler: Handler) -> func.HttpResponse:
    """Answer ``OPTIONS`` (preflights), else run the handler and mark its response, error or not, readable
    by the calling page when its origin is allowed."""
    if req.method.upper() == "OPTIONS":
        return _options(get_runtime, req, methods)
    response = handler(get_runtime, req)
    cors.add_cors_headers(response.headers, _origins(get_runtime), req.headers.get("origin"))
    return response


def create_upload(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return _with_cors(get_runtime, req, ("POST",), _create_upload)


def upload_status(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    handler = _cancel_upload if req.method.upper() == "DELETE" else _upload_status
    return _with_cors(get_runtime, req, ("GET", "DELETE"), handler)


def list_profiles(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return _with_cors(get_runtime, req, ("GET",), _list_profiles)


@problems
def _create_upload(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    caller = runtime.authenticator.admit(req)
    grant_request = parse_grant_request(_body(req, runtime.settings.max_request_bytes))
    grant = runtime.grants.issue(caller, grant_request)
    status_url = f"{_base_url(req, runtime)}{ROUTE_PREFIX}/uploads/{grant.upload_id}"
    return json_response(201, grant.to_json(status_url), headers={"Location": status_url})


def renew_upload(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return _with_cors(get_runtime, req, ("POST",), _renew_upload)


@problems
def _renew_upload(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    caller = runtime.authenticator.admit(req)
    blob_uri = parse_renew_request(_body(req, runtime.settings.max_request_bytes))
    upload_id = req.route_params.get("uploadId", "")
    state = BlobUploadState(runtime.blob_service, runtime.settings.storage.uploads_container,
                            runtime.validation.validator.is_tombstone)
    grant = runtime.grants.renew(caller, upload_id, blob_uri, state)
    status_url = f"{_base_url(req, runtime)}{ROUTE_PREFIX}/uploads/{grant.upload_id}"
    return json_response(200, grant.to_json(status_url))


@problems
def _upload_status(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    caller = runtime.authenticator.admit_read(req)  # its own per-caller budget: clients poll
    upload_id = req.route_params.get("uploadId", "")
    return json_response(200, runtime.validation.status.status(caller.partition, upload_id))


@problems
def _cancel_upload(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    """``DELETE /api/uploads/{uploadId}?blobUri=...``: give an unused grant back (seed 002's "the
    application can invalidate the key", for a SAS that cannot be revoked one by one)."""
    runtime = get_runtime()
    caller = runtime.authenticator.admit(req)  # the grant budget: it writes to storage
    blob_uri = req.params.get("blobUri") or ""
    if not blob_uri or len(blob_uri) > 4096:
        raise BadRequest("'blobUri' is required: the blobUri of the grant to cancel.", code="invalid_blob_uri")
    upload_id = req.route_params.get("uploadId", "")
    name, facts, _, _ = runtime.grants.granted_name(caller, upload_id, blob_uri)
    if runtime.validation.validator.now() >= facts.deadline:
        raise Conflict("The upload's window has closed: its SAS can no longer be used.", code="upload_window_closed")
    runtime.validation.validator.cancel(name, upload_id=upload_id, caller=caller.id,
                                        until=facts.deadline + runtime.settings.validation.tombstone_grace)
    return func.HttpResponse(status_code=204)


def upload_download(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return _with_cors(get_runtime, req, ("GET",), _upload_download)


@problems
def _upload_download(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    caller = runtime.authenticator.admit(req)  # rate-limited like a grant: it signs a SAS
    download = runtime.downloads.issue(caller, req.route_params.get("uploadId", ""))
    return json_response(200, download.to_json(), headers={"Cache-Control": "no-store"})


@problems
def _list_profiles(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    """The upload profiles this caller may use (its roles/scopes against each profile's ``requiredRoles``)."""
    runtime = get_runtime()
    caller = runtime.authenticator.admit_read(req)
    return json_response(200, runtime.settings.policy.usable(caller.roles | caller.scopes))


@problems
def upload_page(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    """The browser upload page and its two files (``VALET_UI_ENABLED``)."""
    return webui.serve(get_runtime().settings, req.route_params.get("asset") or "")


@problems
def health(holder: RuntimeHolder, req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous and cheap (no storage or identity-provider call), for load balancers: 200 when this
    instance can serve, 503 when its configuration did not load. Shared outages (storage, issuer) are
    reported per request instead, so they never take every instance out of rotation at once."""
    runtime = holder.loaded
    if runtime is None:
        return json_response(503, {"status": "unavailable", "configuration": "error"}, headers={"Retry-After": "30"})
    key = "ready" if runtime.key_cache.ready else "pending"
    return json_response(200, {"status": "ok", "configuration": "loaded", "delegationKey": key})


@problems
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 document of this API, as kept in the repository (``valet/openapi.json``)."""
    return func.HttpResponse(
        openapi.document_bytes(),
        status_code=200,
        mimetype="application/json",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
