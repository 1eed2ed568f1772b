"""valet: the Azure Functions app. Wiring only: every function, route and binding on one screen; the
logic lives in the ``valet`` package."""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from valet import api
from valet.runtime import RuntimeHolder, settle_heap
from valet.settings import TriggerSettings

runtime = RuntimeHolder()  # settings are read and validated once, at start-up
bindings = TriggerSettings.from_env()  # deploy-time choices: trigger source, connection, container, schedule

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)  # valet authenticates callers itself


@app.function_name("create_upload")
@app.route(route="uploads", methods=["POST", "OPTIONS"])  # OPTIONS: CORS preflights (VALET_CORS_ORIGINS)
def create_upload(req: func.HttpRequest) -> func.HttpResponse:
    return api.create_upload(runtime, req)


@app.function_name("upload_status")
@app.route(route="uploads/{uploadId}", methods=["GET", "DELETE", "OPTIONS"])  # DELETE: cancel an unused grant
def upload_status(req: func.HttpRequest) -> func.HttpResponse:
    return api.upload_status(runtime, req)


@app.function_name("upload_download")
@app.route(route="uploads/{uploadId}/download", methods=["GET", "OPTIONS"])
def upload_download(req: func.HttpRequest) -> func.HttpResponse:
    return api.upload_download(runtime, req)


@app.function_name("upload_blocks")
@app.route(route="uploads/{uploadId}/blocks", methods=["GET", "OPTIONS"])  # resuming: what storage holds
def upload_blocks(req: func.HttpRequest) -> func.HttpResponse:
    return api.upload_blocks(runtime, req)


@app.function_name("renew_upload")
@app.route(route="uploads/{uploadId}/renew", methods=["POST", "OPTIONS"])
def renew_upload(req: func.HttpRequest) -> func.HttpResponse:
    return api.renew_upload(runtime, req)


@app.function_name("list_profiles")
@app.route(route="profiles", methods=["GET", "OPTIONS"])  # the profiles this caller may use
def list_profiles(req: func.HttpRequest) -> func.HttpResponse:
    return api.list_profiles(runtime, req)


@app.function_name("batch_status")
@app.route(route="batches/{batchId}", methods=["GET", "OPTIONS"])  # a batch grant's files and outcomes
def batch_status(req: func.HttpRequest) -> func.HttpResponse:
    return api.batch_status(runtime, req)


@app.function_name("quota")
@app.route(route="quota", methods=["GET", "OPTIONS"])  # what remains of this caller's quotas
def quota(req: func.HttpRequest) -> func.HttpResponse:
    return api.quota(runtime, req)


@app.function_name("upload_page")
@app.route(route="ui/{asset?}", methods=["GET"])  # 404 unless VALET_UI_ENABLED
def upload_page(req: func.HttpRequest) -> func.HttpResponse:
    return api.upload_page(runtime, req)


@app.function_name("health")
@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    return api.health(runtime, req)


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"])
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return api.openapi_document(req)


# Quarantine review (valet.review): the review role only; 404 for everyone else. No CORS.
@app.function_name("review_quarantine")
@app.route(route="review/quarantine", methods=["GET"])
def review_quarantine(req: func.HttpRequest) -> func.HttpResponse:
    return api.review("review_quarantine")(runtime, req)


@app.function_name("review_record")
@app.route(route="review/quarantine/{uploadId}", methods=["GET"])
def review_record(req: func.HttpRequest) -> func.HttpResponse:
    return api.review("review_record")(runtime, req)


@app.function_name("review_release")
@app.route(route="review/quarantine/{uploadId}/release", methods=["POST"])
def review_release(req: func.HttpRequest) -> func.HttpResponse:
    return api.review("review_release")(runtime, req)


@app.function_name("review_purge")
@app.route(route="review/quarantine/{uploadId}/purge", methods=["POST"])
def review_purge(req: func.HttpRequest) -> func.HttpResponse:
    return api.review("review_purge")(runtime, req)


@app.function_name("review_audit")
@app.route(route="review/audit", methods=["GET"])
def review_audit(req: func.HttpRequest) -> func.HttpResponse:
    return api.review("review_audit")(runtime, req)


@app.function_name("validate_upload")
@app.blob_trigger(
    arg_name="client",
    path=f"{bindings.uploads_container}/{{name}}",
    connection=bindings.connection,
    source=func.BlobSource(bindings.source),
)
def validate_upload(client: blob.BlobClient) -> None:
    # Properties and ranges are read through the app's own client; the SDK-type binding loads nothing.
    runtime().validation.on_blob(client.container_name, client.blob_name)


@app.function_name("malware_scan_result")
@app.event_grid_trigger(arg_name="event")
def malware_scan_result(event: func.EventGridEvent) -> None:
    runtime().validation.on_event(event.event_type, event.get_json())


@app.function_name("sweep_tombstones")
@app.timer_trigger(arg_name="timer", schedule=bindings.sweep_schedule, run_on_startup=False)
def sweep_tombstones(timer: func.TimerRequest) -> None:
    runtime().validation.sweep()


@app.function_name("reconcile_uploads")
@app.timer_trigger(arg_name="timer", schedule=bindings.reconcile_schedule, run_on_startup=False)
def reconcile_uploads(timer: func.TimerRequest) -> None:
    runtime().validation.reconcile()  # uploads no trigger decided: missed events, exhausted retries


settle_heap()  # last: what start-up built stays out of the garbage collector's full rounds
