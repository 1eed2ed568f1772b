"""valet: the Azure Functions app. Wiring only: every function, route and binding on one screen; the
logic lives in the ``valet`` package."""

import azure.functions as func

from valet import api
from valet.runtime import RuntimeHolder

runtime = RuntimeHolder()  # settings are read and validated once, at start-up

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)  # valet authenticates callers itself


@app.function_name("create_upload")
@app.route(route="uploads", methods=["POST"])
def create_upload(req: func.HttpRequest) -> func.HttpResponse:
    return api.create_upload(runtime, req)
