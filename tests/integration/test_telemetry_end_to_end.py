"""A grant, the upload and its decision through the app's registered functions, with the SDK's in-memory
exporter and reader installed: the documented instruments, one trace linked from the grant to the queue
message, and nothing sensitive in any attribute. Real RS256 token from the dev issuer, real Azurite,
real SAS, real queue."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from types import ModuleType
from urllib.parse import unquote, urlsplit

import azure.functions as func
import pytest
import requests
from azure.storage.queue import QueueClient, TextBase64DecodePolicy
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tests.conftest import StorageEndpoint
from tests.support import samples
from tests.support.functions import fresh_app, user_function
from tests.support.telemetry import Recorded, installed
from valet.local.devhost import BlobRef
from valet.local.devidp import DevIssuer
from valet.storage import EmulatorCredential
from valet.telemetry import INSTRUMENTS, traces

pytestmark = pytest.mark.azurite

CLIENT_TRACE, CLIENT_SPAN = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, valet_env: dict[str, str], issuer: DevIssuer) -> Iterator[ModuleType]:
    with fresh_app(monkeypatch, {**valet_env, "VALET_AUTH_ISSUERS": issuer.settings_value()}) as module:
        yield module


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    with installed() as rec:
        yield rec


def grant(app: ModuleType, token: str, body: dict[str, object]) -> func.HttpResponse:
    req = func.HttpRequest(method="POST", url="https://valet.example/api/uploads",
                           headers={"content-type": "application/json", "authorization": f"Bearer {token}",
                                    "traceparent": f"00-{CLIENT_TRACE:032x}-{CLIENT_SPAN:016x}-01"},
                           body=json.dumps(body).encode())
    # The Functions host (PYTHON_ENABLE_OPENTELEMETRY) makes the request's context current; so does this.
    incoming = NonRecordingSpan(SpanContext(CLIENT_TRACE, CLIENT_SPAN, is_remote=True,
                                            trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    with trace.use_span(incoming):
        return user_function(app, "create_upload")(req)  # type: ignore[no-any-return]


def test_a_grant_and_its_decision_make_one_trace_to_the_queue_message_and_the_documented_metrics(
        app: ModuleType, issuer: DevIssuer, recorded: Recorded, valet_env: dict[str, str],
        storage_endpoint: StorageEndpoint) -> None:
    token = issuer.mint("alice")
    body = samples.png()
    response = grant(app, token, {"filename": "Secret Plans.png", "contentType": "image/png", "size": len(body)})
    assert response.status_code == 201, response.get_body()
    doc = json.loads(response.get_body())
    put = requests.put(doc["uploadUrl"], data=body, headers=doc["headers"],
                       verify=storage_endpoint.ca_bundle or True, timeout=30)
    assert put.status_code == 201
    refused = grant(app, token, {"filename": "a.exe", "contentType": "application/x-msdownload", "size": 3})
    assert refused.status_code == 415

    container, _, name = unquote(urlsplit(doc["blobUri"]).path).lstrip("/").split("/", 1)[1].partition("/")
    user_function(app, "validate_upload")(BlobRef(container, name))

    # The queue message carries the send span's traceparent.
    consumer = QueueClient(valet_env["VALET_QUEUE_SERVICE_URL"], valet_env["VALET_DECISION_QUEUE"],
                           credential=EmulatorCredential(valet_env["VALET_STORAGE_ACCOUNT_URL"]),
                           connection_verify=storage_endpoint.ca_bundle or True,
                           message_decode_policy=TextBase64DecodePolicy())
    [message] = [json.loads(m.content) for m in consumer.receive_messages(max_messages=32)]
    consumer.close()
    assert message["status"] == "accepted" and message["uploadId"] == doc["uploadId"]

    upload_trace = uuid.UUID(doc["uploadId"]).int
    spans = recorded.spans()
    ours = [s for s in spans if s.context.trace_id == upload_trace]
    by_name = {s.name: s for s in ours}
    assert set(by_name) == {"valet.grant", "valet.decide", f"send {valet_env['VALET_DECISION_QUEUE']}"}
    grant_span, decide = by_name["valet.grant"], by_name["valet.decide"]
    send = by_name[f"send {valet_env['VALET_DECISION_QUEUE']}"]
    assert grant_span.parent is None and grant_span.context.span_id == traces.grant_span_id(doc["uploadId"])
    assert [link.context.trace_id for link in grant_span.links] == [CLIENT_TRACE]  # the client's: a link only
    assert decide.parent is not None and decide.parent.span_id == grant_span.context.span_id
    assert send.parent is not None and send.parent.span_id == decide.context.span_id
    assert message["traceparent"] == f"00-{upload_trace:032x}-{send.context.span_id:016x}-01"
    [refused_span] = [s for s in spans if s.name == "valet.grant" and s.context.trace_id == CLIENT_TRACE]
    assert refused_span.attributes == {"valet.profile": "images", "valet.outcome": "content_type_not_allowed"}

    assert recorded.total("valet.grants", valet__profile="images", valet__outcome="granted") == 1
    assert recorded.total("valet.grants", valet__outcome="content_type_not_allowed") == 1
    assert recorded.total("valet.decisions", valet__outcome="accepted", valet__reason="ok") == 1
    assert recorded.total("valet.decision.lag", valet__outcome="accepted") == 1
    assert recorded.total("valet.accepted.bytes", valet__profile="images") == len(body)
    assert recorded.total("valet.decision_events", valet__result="ok") == 1
    assert recorded.total("valet.jwks.fetches", valet__result="ok") >= 1
    specs = {spec.name: set(spec.attributes) for spec in INSTRUMENTS}
    for metric, attributes, _ in recorded.points():
        assert set(attributes) == specs[metric], metric

    # Nothing sensitive anywhere: not the caller, the token, the file name, the blob name, the SAS.
    signature = doc["signature"]
    secrets = {token, token.split(".")[2], "alice", issuer.issuer, "Secret Plans", name, container + "/" + name,
               signature, dict(p.split("=", 1) for p in signature.split("&"))["sig"],
               doc["headers"]["x-ms-meta-valetgrant"], doc["blobUri"]}
    said = []
    for span in spans:
        said += [span.name, *map(str, (span.attributes or {}).values()),
                 *(str(v) for link in span.links for v in (link.attributes or {}).values()),
                 *(str(v) for event in span.events for v in (event.attributes or {}).values())]
    for _, attributes, _ in recorded.points():
        said += [str(v) for v in attributes.values()]
    text = "\n".join(said)
    for secret in secrets:
        assert secret not in text
    assert base64.b64encode(b"alice").decode() not in text
