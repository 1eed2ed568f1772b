"""Telemetry leaves the process the way the environment says: to an OTLP collector, to Application
Insights with an Entra token, or nowhere. Each case runs in its own Python process (OpenTelemetry's
global providers can be set once per process) against a loopback endpoint that keeps what it receives;
the exporters are the real ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.collector import collector
from valet.errors import ConfigurationError
from valet.local.emulator import PROJECT_ROOT, make_certificate
from valet.telemetry.setup import TelemetrySettings

UPLOAD_ID = "01a24cf1-1e00-7010-8304-05060708090a"

# A grant, its decision and its event, and one log line, then every provider flushed and shut down.
SCRIPT = textwrap.dedent(f"""
    import json, logging, sys
    from opentelemetry import metrics, trace, _logs
    from valet.telemetry.setup import TelemetrySettings, configure
    from valet import telemetry

    class StaticToken:  # a TokenCredential for a loopback endpoint; never a real identity
        def get_token(self, *scopes, **kwargs):
            from azure.core.credentials import AccessToken
            import time
            return AccessToken("test-entra-token", int(time.time()) + 3600)
        def get_token_info(self, *scopes, options=None):
            from azure.core.credentials import AccessTokenInfo
            import time
            return AccessTokenInfo("test-entra-token", int(time.time()) + 3600)

    settings = TelemetrySettings.from_env(__import__("os").environ)
    t = telemetry.install(configure(settings, credential=lambda s: StaticToken() if s.entra else None))
    t = telemetry.current()
    logging.getLogger("valet.audit").setLevel(logging.INFO)
    with t.grant() as grant:
        grant.upload_id, grant.profile = "{UPLOAD_ID}", "images"
    with t.decision("{UPLOAD_ID}"):
        t.decided(outcome="accepted", reason="ok", profile="images", size=68, lag_seconds=2.0)
        with t.decision_event("valet-decisions") as traceparent:
            logging.getLogger("valet.audit").info("decision event sent")
    t.close()  # the grant's span is made off the request thread: flush it before the providers stop
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider()):
        getattr(provider, "force_flush", lambda *a: None)()
        getattr(provider, "shutdown", lambda: None)()
    from azure.core.settings import settings as azure_settings
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    instrumented = [name for name, on in (
        ("azure_sdk", azure_settings.tracing_implementation() is not None),
        ("requests", RequestsInstrumentor().is_instrumented_by_opentelemetry),
        ("urllib3", URLLib3Instrumentor().is_instrumented_by_opentelemetry)) if on]
    print(json.dumps({{"enabled": t.enabled, "traceparent": traceparent, "instrumented": instrumented}}))
""")


def run_script(env: dict[str, str]) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, env={**base, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_nothing_is_exported_without_an_endpoint() -> None:
    assert run_script({}) == {"enabled": False, "traceparent": None, "instrumented": []}
    assert not TelemetrySettings.from_env({"OTEL_SDK_DISABLED": "true",
                                           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}).enabled


def test_otlp_receives_the_uploads_trace_its_metrics_and_the_apps_logs() -> None:
    with collector() as otlp:
        out = run_script({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_METRIC_EXPORT_INTERVAL": "60000"})
    assert out["enabled"] is True
    spans = []
    for body in otlp.bodies("/v1/traces"):
        request = ExportTraceServiceRequest.FromString(body)
        spans += [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert {span.name for span in spans} == {"valet.grant", "valet.decide", "send valet-decisions"}
    assert {span.trace_id.hex() for span in spans} == {UPLOAD_ID.replace("-", "")}
    metrics = set()
    for body in otlp.bodies("/v1/metrics"):
        request = ExportMetricsServiceRequest.FromString(body)
        metrics |= {m.name for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"valet.grants", "valet.grant.duration", "valet.decisions", "valet.decision.lag", "valet.accepted.bytes",
            "valet.decision_events"} <= metrics
    assert any(b"decision event sent" in body for body in otlp.bodies("/v1/logs"))  # the worker no longer pipes them
    assert str(out["traceparent"]).startswith(f"00-{UPLOAD_ID.replace('-', '')}-")


def test_application_insights_gets_the_telemetry_with_an_entra_token(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path)
    with collector(cert, reply=b'{"itemsReceived": 1, "itemsAccepted": 1, "errors": []}') as ingestion:
        connection = (f"InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                      f"IngestionEndpoint={ingestion.url}/;LiveEndpoint={ingestion.url}/")
        out = run_script({
            "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=5a1f0c0e-3c57-4d0a-9a55-0c6f1d2b7e11;Authorization=AAD",
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",  # no calls to Microsoft's statsbeat endpoint
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",  # nor to its settings service
            # Anything else that would leave the machine goes to a closed loopback port instead.
            "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",  # no Azure VM metadata probe off this machine
            "REQUESTS_CA_BUNDLE": str(cert[0]),
            # Every trace kept: the distro's default rate-limited sampler keeps few spans in the first
            # instants after start-up (docs/telemetry.md#sampling).
            "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage", "OTEL_TRACES_SAMPLER_ARG": "1.0",
        })
    assert out["enabled"] is True
    assert out["instrumented"] == []  # no storage call traced with its URL, no exporter call traced (#1342)
    tracks = [r for r in ingestion.requests if "/v2.1/track" in r.path]
    assert tracks, [r.path for r in ingestion.requests]
    assert {r.headers.get("authorization") for r in tracks} == {"Bearer test-entra-token"}
    items = [item for r in tracks for item in json.loads(r.body)]  # each request: a JSON array of envelopes
    kinds = {item["data"]["baseType"] for item in items}
    assert {"RequestData", "RemoteDependencyData", "MetricData", "MessageData"} <= kinds, kinds  # spans, metrics, the log
    operations = {item["tags"].get("ai.operation.id") for item in items
                  if item["data"]["baseType"] in ("RequestData", "RemoteDependencyData")}
    assert operations == {UPLOAD_ID.replace("-", "")}  # search Application Insights by upload id
    metric_names = {m["name"] for item in items if item["data"]["baseType"] == "MetricData"
                    for m in item["data"]["baseData"]["metrics"]}
    assert "valet.grants" in metric_names and "valet.decisions" in metric_names


def test_settings_read_the_identity_from_the_hosts_authentication_string() -> None:
    settings = TelemetrySettings.from_env({
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=secret-ish",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc;Authorization=AAD"})
    assert (settings.entra, settings.client_id, settings.otlp_endpoint) == (True, "abc", None)
    assert "secret-ish" not in repr(settings)
    system = TelemetrySettings.from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING": "x",
                                         "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD"})
    assert system.entra and system.client_id is None
    with pytest.raises(ConfigurationError, match="APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        TelemetrySettings.from_env({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Key"})
    with pytest.raises(ConfigurationError, match="APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        TelemetrySettings.from_env({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "garbage"})
    with pytest.raises(ConfigurationError, match="http/protobuf"):
        TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_an_exporter_that_cannot_start_leaves_the_app_serving_with_telemetry_off() -> None:
    script = textwrap.dedent("""
        import json, logging, os
        from valet import telemetry
        from valet.telemetry.setup import install_from_env
        logging.basicConfig(level=logging.INFO)
        t = install_from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING": "not a connection string",
                              "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"})
        print(json.dumps({"enabled": t.enabled, "installed": telemetry.current() is t}))
    """)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, env={**base, "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                                            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
                                            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
                                            "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"enabled": False, "installed": True}
    assert "telemetry: exporters not started (ValueError)" in done.stderr
    assert "not a connection string" not in done.stderr  # the setting's value is never logged


def test_logs_take_one_path_in_a_functions_worker() -> None:
    base = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}
    assert TelemetrySettings.from_env(base).export_logs  # valet dev, tests, any other host
    piped = TelemetrySettings.from_env({**base, "FUNCTIONS_WORKER_RUNTIME": "python"})
    assert not piped.export_logs  # the worker still sends the app's logs to the host: exporting them too doubles them
    handed = TelemetrySettings.from_env({**base, "FUNCTIONS_WORKER_RUNTIME": "python", "PYTHON_ENABLE_OPENTELEMETRY": "true"})
    assert handed.export_logs  # the worker stopped piping them (WorkerOpenTelemetryEnabled): the app exports them
