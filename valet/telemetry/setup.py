"""Where telemetry goes, chosen from the environment at start-up:

* ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set: Application Insights through the Azure Monitor
  OpenTelemetry distro, authenticated with the managed identity that
  ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names (``ClientId=<id>;Authorization=AAD``, the setting the
  Functions host already uses for its own telemetry);
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` set: any OTLP backend (HTTP/protobuf, the standard ``OTEL_EXPORTER_OTLP_*``
  variables);
* both: both, as the Functions host does; neither (or ``OTEL_SDK_DISABLED=true``): nothing at all (the API's
  no-op providers, so instrumentation costs next to nothing).

The app's own log records (the ``valet`` loggers) are exported by the same pipeline: with
``PYTHON_ENABLE_OPENTELEMETRY`` the Python worker stops piping them to the host (capability
``WorkerOpenTelemetryEnabled``), which is how the duplicate-telemetry trap is avoided; only one path carries
each record. In a Functions worker without that setting the worker still pipes them, so the app exports no
logs then (metrics and traces only). The distro's automatic instrumentations stay off: they would trace
every storage call with its URL (blob names carry caller partitions) and the exporter's own calls
(azure-functions-python-worker #1342).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential

from valet import __name__ as _package
from valet.errors import ConfigurationError
from valet.telemetry import traces
from valet.telemetry.instruments import Telemetry, current, install

log = logging.getLogger("valet.telemetry")

SERVICE_NAME = "valet"
LOGGER = _package  # "valet": every logger of the app, nothing of the SDKs it uses
# The distro's instrumentations (library names as configure_azure_monitor knows them): all off.
DISTRO_INSTRUMENTATIONS = ("azure_sdk", "django", "fastapi", "flask", "httpx", "psycopg2", "requests", "urllib",
                           "urllib3")


@dataclass(frozen=True)
class TelemetrySettings:
    connection_string: str | None = None
    client_id: str | None = None  # the user-assigned identity; None with Authorization=AAD: system-assigned
    entra: bool = False
    otlp_endpoint: str | None = None
    export_logs: bool = True  # False in a Functions worker that still pipes the app's logs to the host

    def __repr__(self) -> str:  # the connection string holds the instrumentation key
        return (f"TelemetrySettings(azure_monitor={self.connection_string is not None}, entra={self.entra}, "
                f"otlp={self.otlp_endpoint is not None})")

    @property
    def enabled(self) -> bool:
        return self.connection_string is not None or self.otlp_endpoint is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TelemetrySettings:
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls()
        connection = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip() or None
        auth = _pairs(environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""),
                      "APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
        entra = auth.get("authorization", "").upper() == "AAD"
        if auth and not entra:
            raise ConfigurationError("APPLICATIONINSIGHTS_AUTHENTICATION_STRING must say Authorization=AAD.")
        otlp = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None
        protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip()
        if otlp and protocol != "http/protobuf":
            raise ConfigurationError("OTEL_EXPORTER_OTLP_PROTOCOL: valet exports OTLP over http/protobuf only.")
        in_worker = any(environ.get(name) for name in ("FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsScriptRoot"))
        worker_pipes_logs = in_worker and environ.get("PYTHON_ENABLE_OPENTELEMETRY", "").strip().lower() != "true"
        return cls(connection_string=connection, client_id=auth.get("clientid") or None, entra=entra,
                   otlp_endpoint=otlp, export_logs=not worker_pipes_logs)


def _pairs(text: str, setting: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ConfigurationError(f"{setting} must be Key=Value pairs separated by ';'.")
        out[key.strip().lower()] = value.strip()
    return out


def _credential(settings: TelemetrySettings) -> TokenCredential | None:
    if not settings.entra:
        return None
    from azure.identity import ManagedIdentityCredential

    if settings.client_id:
        return ManagedIdentityCredential(client_id=settings.client_id)
    return ManagedIdentityCredential()


def configure(settings: TelemetrySettings, *,
              credential: Callable[[TelemetrySettings], TokenCredential | None] = _credential) -> Telemetry:
    """Set up the process's providers for ``settings`` (once per process: OpenTelemetry's global providers
    can be set only once) and return the :class:`Telemetry` that records through them."""
    if not settings.enabled:
        return Telemetry()
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": SERVICE_NAME})
    span_processors, readers = _otlp(settings) if settings.otlp_endpoint else ([], [])
    if settings.connection_string is not None:
        from azure.monitor.opentelemetry import configure_azure_monitor

        options: dict[str, Any] = {name: {"enabled": False} for name in DISTRO_INSTRUMENTATIONS}
        configure_azure_monitor(connection_string=settings.connection_string, credential=credential(settings),
                                disable_logging=not settings.export_logs,
                                resource=resource, logger_name=LOGGER, instrumentation_options=options,
                                span_processors=span_processors, metric_readers=readers)
        if settings.otlp_endpoint and settings.export_logs:  # the distro's log pipeline also goes to OTLP
            _otlp_logs(resource, shared=True)
    else:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        ours = TracerProvider(resource=resource)
        for processor in span_processors:
            ours.add_span_processor(processor)
        trace.set_tracer_provider(ours)
        metrics.set_meter_provider(MeterProvider(metric_readers=readers, resource=resource))
        if settings.export_logs:
            _otlp_logs(resource)
    tracer_provider = trace.get_tracer_provider()
    if not traces.adopt(tracer_provider):
        log.warning("telemetry: the tracer provider is not the SDK's; uploads' traces will not link")
    log.info("telemetry: exporting to %s", " and ".join(
        name for name, on in (("Application Insights", settings.connection_string), ("OTLP", settings.otlp_endpoint))
        if on))
    return Telemetry(metrics.get_meter_provider(), tracer_provider)


def _otlp(settings: TelemetrySettings) -> tuple[list[Any], list[Any]]:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return [BatchSpanProcessor(OTLPSpanExporter())], [PeriodicExportingMetricReader(OTLPMetricExporter())]


def _otlp_logs(resource: Any, *, shared: bool = False) -> None:
    from opentelemetry._logs import get_logger_provider, set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    processor = BatchLogRecordProcessor(OTLPLogExporter())
    current = get_logger_provider()
    if shared and isinstance(current, LoggerProvider):
        current.add_log_record_processor(processor)
        return
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(processor)
    set_logger_provider(provider)
    logging.getLogger(LOGGER).addHandler(LoggingHandler(logger_provider=provider))


def install_from_env(environ: Mapping[str, str]) -> Telemetry:
    """The process's telemetry, set up once: the one already installed (``valet dev`` installs its own
    before the app starts), else :func:`configure` from ``environ``, installed. Exporters that fail to
    start (a connection string the distro refuses, say) leave telemetry off and the app serving."""
    if current().enabled:
        return current()
    settings = TelemetrySettings.from_env(environ)  # a malformed setting stops start-up, naming it
    try:
        configured = configure(settings)
    except Exception as exc:  # noqa: BLE001 - an exporter that cannot start must not stop the app
        log.error("telemetry: exporters not started (%s); telemetry is off", type(exc).__name__)
        return current()
    install(configured)
    return configured
