"""The handler of ``GET /api/uploads/{uploadId}/blocks?blobUri=...`` (see :mod:`valet.blocks`): parse,
call, map. It joins the route table (CORS and problem mapping applied once) when the routes move there;
until then it is called as it stands."""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from valet.blocks import BlockReader, document
from valet.errors import BadRequest
from valet.http import json_response, problems
from valet.runtime import Runtime


@problems
def upload_blocks(get_runtime: Callable[[], Runtime], req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    caller = runtime.authenticator.admit_read(req)  # the status route's budget: clients ask while resuming
    blob_uri = req.params.get("blobUri") or ""
    if not blob_uri or len(blob_uri) > 4096:
        raise BadRequest("'blobUri' is required: the blobUri of the grant.", code="invalid_blob_uri")
    granted = runtime.grants.granted_name(caller, req.route_params.get("uploadId", ""), blob_uri)  # 404: not yours
    reader = BlockReader(runtime.blob_service, runtime.settings.storage.uploads_container)
    state = reader.read(granted.name)
    return json_response(200, document(state, granted.facts.deadline), headers={"Cache-Control": "no-store"})
