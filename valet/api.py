"""The HTTP API: one route table, and the one place where every route gets its CORS, its admission (the
caller's rate-limit budget) and its problem mapping.

A handler parses the request, calls one service and maps the result; nothing else happens in it (no
storage call, no policy decision, no error handling: :func:`serve` does those once for every route). A
new route is a handler and a line in :data:`ROUTES` (and its binding in ``function_app.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import azure.functions as func

from valet import cors, openapi, telemetry, webui
from valet.audit import Action, Actor
from valet.caller import Caller
from valet.errors import ConfigurationError, PayloadTooLarge, UnsupportedMediaType
from valet.grants.blocks import parse_blocks_request
from valet.grants.cancel import parse_cancel_request
from valet.grants.multi import BatchRejected, BatchRequest, parse_upload_request
from valet.grants.request import parse_renew_request
from valet.http import answer, json_response
from valet.quotas.idempotency import HEADER as IDEMPOTENCY_HEADER
from valet.quotas.idempotency import parse_key
from valet.quotas.rules import QuotaExceeded
from valet.review import api as review_api
from valet.runtime import Runtime, RuntimeHolder
from valet.validation import records

ROUTE_PREFIX = "/api"

# Admission: which per-caller budget a request spends (see valet.auth.ratelimit).
GRANT = "grant"  # authenticated; the grant budget (it signs a SAS or writes to storage)
READ = "read"  # authenticated; its own per-caller budget (clients poll)
ANONYMOUS = "anonymous"  # no caller: cheap, public, nothing per caller
REVIEW = "review"  # the review role (valet.review); anyone else gets 404, as if the route did not exist


@dataclass(frozen=True)
class Call:
    """What a handler gets: the runtime, the HTTP request and the caller admitted for it."""

    get_runtime: Callable[[], Runtime]
    req: func.HttpRequest
    admitted: Caller | None = None

    @property
    def runtime(self) -> Runtime:
        return self.get_runtime()

    @property
    def caller(self) -> Caller:
        if self.admitted is None:  # a route table error, never a request's
            raise RuntimeError("an anonymous route asked for its caller")
        return self.admitted

    @property
    def upload_id(self) -> str:
        return str(self.req.route_params.get("uploadId", ""))


Handler = Callable[[Call], func.HttpResponse]


@dataclass(frozen=True)
class Endpoint:
    handler: Handler
    admission: str = GRANT
    observed: bool = False  # counted, timed and traced as a grant (valet.telemetry), admission included


@dataclass(frozen=True)
class Route:
    endpoints: Mapping[str, Endpoint]  # HTTP method -> endpoint (the first one answers any other method)
    cors: bool = True  # answer preflights and mark responses readable by allowed origins

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.endpoints)


def serve(route: Route, get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    """Answer ``req`` on ``route``: preflights, then admission and the handler; every error becomes
    problem+json; every response, error or not, carries the CORS headers of an allowed origin."""
    if route.cors and req.method.upper() == "OPTIONS":
        return answer(lambda: _options(get_runtime, req, route.methods))
    response = answer(lambda: _run(route, get_runtime, req))
    if route.cors:
        cors.add_cors_headers(response.headers, _origins(get_runtime), req.headers.get("origin"))
    return response


def _run(route: Route, get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    endpoint = route.endpoints.get(req.method.upper()) or next(iter(route.endpoints.values()))
    if endpoint.observed:
        with telemetry.current().grant():
            return _admit_and_handle(endpoint, get_runtime, req)
    return _admit_and_handle(endpoint, get_runtime, req)


def _admit_and_handle(endpoint: Endpoint, get_runtime: Callable[[], Runtime],
                      req: func.HttpRequest) -> func.HttpResponse:
    if endpoint.admission == ANONYMOUS:
        return endpoint.handler(Call(get_runtime, req))
    runtime = get_runtime()
    authenticator = runtime.authenticator
    if endpoint.admission == REVIEW:
        caller = runtime.review.admit(req)
    else:
        caller = authenticator.admit(req) if endpoint.admission == GRANT else authenticator.admit_read(req)
    return endpoint.handler(Call(lambda: runtime, req, caller))


def _origins(get_runtime: Callable[[], Runtime]) -> tuple[str, ...]:
    try:
        return get_runtime().settings.cors_origins
    except ConfigurationError:
        return ()  # misconfigured: no origin is trusted; the handler reports the error itself


def _options(get_runtime: Callable[[], Runtime], req: func.HttpRequest, methods: tuple[str, ...]) -> func.HttpResponse:
    origin = req.headers.get("origin")
    if req.headers.get("access-control-request-method") is None:  # a plain OPTIONS, not a CORS preflight
        response = func.HttpResponse(status_code=204, headers={"Allow": ", ".join((*methods, "OPTIONS"))})
        cors.add_cors_headers(response.headers, _origins(get_runtime), origin)
        return response
    return func.HttpResponse(status_code=204, headers=cors.preflight(_origins(get_runtime), origin, methods))


# -- parsing helpers ----------------------------------------------------------------------------------


def _body(req: func.HttpRequest, limit: int) -> bytes:
    declared = (req.headers.get("content-type") or "application/json").split(";", 1)[0].strip().lower()
    if declared != "application/json" and not declared.endswith("+json"):
        raise UnsupportedMediaType("Send the request body as application/json.", code="unsupported_request_type")
    body = req.get_body() or b""
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes.", code="request_too_large")
    return body


def _status_url(call: Call, upload_id: str) -> str:
    base = call.runtime.settings.public_base_url
    if not base:
        parts = urlsplit(call.req.url)
        base = f"{parts.scheme}://{parts.netloc}"
    return f"{base}{ROUTE_PREFIX}/uploads/{upload_id}"


# -- handlers: parse, call one service, map the result ------------------------------------------------


def _actor(call: Call) -> Actor:
    return Actor.of(call.caller, call.runtime.authenticator.client_address(call.req))


def _create_upload(call: Call) -> func.HttpResponse:
    """One grant, or a batch (``files``); with ``Idempotency-Key``, the same answer for the same request."""
    runtime = call.runtime
    request = parse_upload_request(_body(call.req, runtime.settings.max_request_bytes))
    key = parse_key(call.req.headers.get(IDEMPOTENCY_HEADER))
    try:
        if isinstance(request, BatchRequest):
            batch = runtime.book.batch(call.caller, request, key)
        else:
            grant = (runtime.book.single(call.caller, request, key) if key
                     else runtime.grants.issue(call.caller, request))
    except (QuotaExceeded, BatchRejected) as refused:
        if isinstance(refused, QuotaExceeded) or isinstance(refused.__cause__, QuotaExceeded):
            runtime.audit.record(Action.QUOTA_REFUSED, actor=_actor(call), outcome="refused",
                                 reason=QuotaExceeded.code, data={"profile": request.profile or ""})
        raise
    if isinstance(request, BatchRequest):
        actor = _actor(call)
        for each in batch.grants:
            runtime.audit.record(Action.GRANT, actor=actor, upload_id=each.upload_id, batch_id=batch.batch_id,
                                 data=each.audit_data())
        batch_url = _status_url(call, batch.batch_id).replace("/uploads/", "/batches/", 1)
        uploads = [g.to_json(_status_url(call, g.upload_id)) for g in batch.grants]
        return json_response(201, {"batchId": batch.batch_id, "statusUrl": batch_url, "uploads": uploads},
                             headers={"Location": batch_url})
    runtime.audit.record(Action.GRANT, actor=_actor(call), upload_id=grant.upload_id, data=grant.audit_data())
    status_url = _status_url(call, grant.upload_id)
    return json_response(201, grant.to_json(status_url), headers={"Location": status_url})


def _batch_status(call: Call) -> func.HttpResponse:
    """``GET /api/batches/{batchId}``: the caller's own batch (404 for anyone else's)."""
    batch_id = str(call.req.route_params.get("batchId", ""))
    return json_response(200, call.runtime.book.batch_status(call.caller, batch_id))


def _renew_upload(call: Call) -> func.HttpResponse:
    runtime = call.runtime
    blob_uri = parse_renew_request(_body(call.req, runtime.settings.max_request_bytes))
    grant = runtime.grants.renew(call.caller, call.upload_id, blob_uri, runtime.upload_state)
    runtime.audit.record(Action.RENEW, actor=_actor(call), upload_id=grant.upload_id, data=grant.audit_data())
    return json_response(200, grant.to_json(_status_url(call, grant.upload_id)))


def _upload_status(call: Call) -> func.HttpResponse:
    return json_response(200, call.runtime.validation.status.status(call.caller.partition, call.upload_id))


def _cancel_upload(call: Call) -> func.HttpResponse:
    """``DELETE /api/uploads/{uploadId}?blobUri=...``: give an unused grant back (the valet key pattern's
    "the application can invalidate the key", for a SAS that cannot be revoked one by one)."""
    blob_uri = parse_cancel_request(call.req.params.get("blobUri"))
    call.runtime.cancels.cancel(call.caller, call.upload_id, blob_uri)
    call.runtime.audit.record(Action.CANCEL, actor=_actor(call), upload_id=call.upload_id, outcome="cancelled")
    return func.HttpResponse(status_code=204)


def _upload_blocks(call: Call) -> func.HttpResponse:
    """``GET /api/uploads/{uploadId}/blocks?blobUri=...``: the blocks storage holds for the grant's blob, so
    an interrupted block upload sends only the missing ones (docs/resumable-uploads.md)."""
    blob_uri = parse_blocks_request(call.req.params.get("blobUri"))
    doc = call.runtime.blocks.blocks(call.caller, call.upload_id, blob_uri)
    return json_response(200, doc, headers={"Cache-Control": "no-store"})


def _upload_download(call: Call) -> func.HttpResponse:
    download = call.runtime.downloads.issue(call.caller, call.upload_id)
    call.runtime.audit.record(Action.DOWNLOAD, actor=_actor(call), upload_id=call.upload_id,
                              data={"expiresOn": records.timestamp(download.expires_on)})
    return json_response(200, download.to_json(), headers={"Cache-Control": "no-store"})


def _list_profiles(call: Call) -> func.HttpResponse:
    """The upload profiles this caller may use (its roles/scopes against each profile's ``requiredRoles``)."""
    caller = call.caller
    return json_response(200, call.runtime.settings.policy.usable(caller.roles | caller.scopes))


def _quota(call: Call) -> func.HttpResponse:
    """``GET /api/quota``: for every profile this caller may use, the ``quota`` object of each scope that
    has limits (one Table read per profile with a quota; none for profiles without)."""
    caller = call.caller
    usable = [p["name"] for p in call.runtime.settings.policy.usable(caller.roles | caller.scopes)["profiles"]]
    return json_response(200, call.runtime.quotas.document(caller, usable))


def _upload_page(call: Call) -> func.HttpResponse:
    """The browser upload page and its two files (``VALET_UI_ENABLED``)."""
    return webui.serve(call.runtime.settings, call.req.route_params.get("asset") or "")


def _health(call: Call) -> func.HttpResponse:
    """Anonymous and cheap (no storage or identity-provider call), for load balancers: 200 when this
    instance can serve, 503 when its configuration did not load. Shared outages (storage, issuer) are
    reported per request instead, so they never take every instance out of rotation at once."""
    holder = call.get_runtime
    runtime = holder.loaded if isinstance(holder, RuntimeHolder) else holder()
    if runtime is None:
        return json_response(503, {"status": "unavailable", "configuration": "error"}, headers={"Retry-After": "30"})
    key = "ready" if runtime.key_cache.ready else "pending"
    return json_response(200, {"status": "ok", "configuration": "loaded", "delegationKey": key})


def _openapi_document(call: Call) -> func.HttpResponse:
    """The OpenAPI 3.1 document of this API, as kept in the repository (``valet/openapi.json``)."""
    return func.HttpResponse(
        openapi.document_bytes(),
        status_code=200,
        mimetype="application/json",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


def _review_list(call: Call) -> func.HttpResponse:
    return review_api.quarantine_list(call.runtime.review, call.caller, call.req)


def _review_record(call: Call) -> func.HttpResponse:
    return review_api.quarantine_record(call.runtime.review, call.caller, call.req)


def _review_release(call: Call) -> func.HttpResponse:
    return review_api.quarantine_release(call.runtime.review, call.caller, call.req)


def _review_purge(call: Call) -> func.HttpResponse:
    return review_api.quarantine_purge(call.runtime.review, call.caller, call.req)


def _review_audit(call: Call) -> func.HttpResponse:
    return review_api.audit_query(call.runtime.review, call.caller, call.req)


# -- the route table (function name -> route); function_app.py binds each to its path -----------------

ROUTES: Mapping[str, Route] = {
    "create_upload": Route({"POST": Endpoint(_create_upload, observed=True)}),
    "upload_status": Route({"GET": Endpoint(_upload_status, READ), "DELETE": Endpoint(_cancel_upload)}),
    "renew_upload": Route({"POST": Endpoint(_renew_upload)}),
    "upload_download": Route({"GET": Endpoint(_upload_download)}),  # a grant's budget: it signs a SAS
    "upload_blocks": Route({"GET": Endpoint(_upload_blocks, READ)}),  # the status budget: resuming clients ask
    "list_profiles": Route({"GET": Endpoint(_list_profiles, READ)}),
    "quota": Route({"GET": Endpoint(_quota, READ)}),
    "batch_status": Route({"GET": Endpoint(_batch_status, READ)}),
    "upload_page": Route({"GET": Endpoint(_upload_page, ANONYMOUS)}, cors=False),
    "health": Route({"GET": Endpoint(_health, ANONYMOUS)}, cors=False),
    "openapi": Route({"GET": Endpoint(_openapi_document, ANONYMOUS)}, cors=False),
    # Review: no CORS (the review view is the app's own page), so a preflight reveals nothing either.
    "review_quarantine": Route({"GET": Endpoint(_review_list, REVIEW)}, cors=False),
    "review_record": Route({"GET": Endpoint(_review_record, REVIEW)}, cors=False),
    "review_release": Route({"POST": Endpoint(_review_release, REVIEW)}, cors=False),
    "review_purge": Route({"POST": Endpoint(_review_purge, REVIEW)}, cors=False),
    "review_audit": Route({"GET": Endpoint(_review_audit, REVIEW)}, cors=False),
}


def create_upload(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["create_upload"], get_runtime, req)


def upload_status(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["upload_status"], get_runtime, req)


def renew_upload(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["renew_upload"], get_runtime, req)


def upload_download(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["upload_download"], get_runtime, req)


def upload_blocks(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["upload_blocks"], get_runtime, req)


def list_profiles(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["list_profiles"], get_runtime, req)


def batch_status(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["batch_status"], get_runtime, req)


def quota(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["quota"], get_runtime, req)


def upload_page(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["upload_page"], get_runtime, req)


def health(holder: RuntimeHolder, req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["health"], holder, req)


def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return serve(ROUTES["openapi"], _no_runtime, req)


def _no_runtime() -> Runtime:
    raise ConfigurationError("This route needs no runtime.")


def review(name: str) -> Callable[[Callable[[], Runtime], func.HttpRequest], func.HttpResponse]:
    """The entry of one review route (``review_quarantine``, ``review_record``, ...), for function_app."""
    route = ROUTES[name]
    return lambda get_runtime, req: serve(route, get_runtime, req)
