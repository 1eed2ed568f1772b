"""``valet dev``'s telemetry: the app's instruments read by an in-memory reader (and, when asked, exported
to a local OTLP collector too), and the operations page at ``/api/ui/ops`` that draws them.

The page exists only in ``valet dev`` (the development host serves it; the deployed app has no such route):
counts, the verdict mix, the quarantine reasons and latency percentiles, refreshed every two seconds. It
reads only aggregates; no id, name or credential is in them (docs/telemetry.md#metrics).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from valet.telemetry import Telemetry, traces
from valet.telemetry.setup import SERVICE_NAME

UI = Path(__file__).resolve().parent / "ui"
PAGE_ROUTE = "/api/ui/ops"
ASSETS = {  # path -> (file, media type)
    PAGE_ROUTE: (UI / "ops.html", "text/html"),
    f"{PAGE_ROUTE}/ops.js": (UI / "ops.js", "text/javascript"),
    f"{PAGE_ROUTE}/ops.css": (UI / "ops.css", "text/css"),
}
DATA_ROUTE = f"{PAGE_ROUTE}/data.json"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
PERCENTILES = (50, 90, 99)

Response = tuple[int, dict[str, str], bytes]


@dataclass
class OpsView:
    """What the page shows, read from the in-memory reader on each request."""

    reader: InMemoryMetricReader
    started: float
    providers: tuple[MeterProvider, TracerProvider] | None = None

    def close(self) -> None:
        """Stop the providers (and their export threads, when exporting to OTLP)."""
        for provider in self.providers or ():
            provider.shutdown()

    def snapshot(self) -> dict[str, Any]:
        counters: dict[str, list[tuple[dict[str, str], float]]] = {}
        histograms: dict[str, list[HistogramDataPoint]] = {}
        data = self.reader.get_metrics_data()
        for resource in (data.resource_metrics if data else ()):
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        if isinstance(point, NumberDataPoint):
                            attributes = {str(k): str(v) for k, v in (point.attributes or {}).items()}
                            counters.setdefault(metric.name, []).append((attributes, float(point.value)))
                        elif isinstance(point, HistogramDataPoint):
                            histograms.setdefault(metric.name, []).append(point)

        def total(name: str) -> float:
            return sum(value for _, value in counters.get(name, ()))

        def by(name: str, key: str) -> dict[str, float]:
            out: dict[str, float] = {}
            for attributes, value in counters.get(name, ()):
                label = attributes.get(key, "none")
                out[label] = out.get(label, 0) + value
            return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

        return {
            "uptimeSeconds": round(time.monotonic() - self.started, 1),
            "grants": {"total": total("valet.grants"), "byOutcome": by("valet.grants", "valet.outcome"),
                       "byProfile": by("valet.grants", "valet.profile")},
            "decisions": {"total": total("valet.decisions"), "byOutcome": by("valet.decisions", "valet.outcome"),
                          "byReason": by("valet.decisions", "valet.reason")},
            "acceptedBytes": total("valet.accepted.bytes"),
            "decisionEvents": by("valet.decision_events", "valet.result"),
            "jwksFetches": by("valet.jwks.fetches", "valet.result"),
            "refusals": by("valet.refusals", "valet.limit"),
            "keyRefreshes": by("valet.delegation_key.refreshes", "valet.result"),
            "grantLatency": latency(histograms.get("valet.grant.duration", [])),
            "decisionLag": latency(histograms.get("valet.decision.lag", [])),
        }


def latency(points: list[HistogramDataPoint]) -> dict[str, float | int | None]:
    """Count and estimated percentiles (seconds) of histogram points merged, as histogram_quantile does:
    linear within the bucket that holds the rank, clamped to the recorded min and max."""
    if not points:
        return {"count": 0, **{f"p{p}": None for p in PERCENTILES}}
    bounds = list(points[0].explicit_bounds)
    counts = [sum(p.bucket_counts[i] for p in points) for i in range(len(bounds) + 1)]
    low, high = min(p.min for p in points), max(p.max for p in points)
    count = sum(counts)
    out: dict[str, float | int | None] = {"count": count}
    for pct in PERCENTILES:
        rank = pct / 100 * count
        seen = 0
        value = high
        for i, n in enumerate(counts):
            if n and seen + n >= rank:
                lower = bounds[i - 1] if i > 0 else low
                upper = bounds[i] if i < len(bounds) else high
                value = lower + (upper - lower) * (rank - seen) / n
                break
            seen += n
        out[f"p{pct}"] = round(min(max(value, low), high), 6)
    return out


def dev_telemetry(otlp_endpoint: str | None = None) -> tuple[Telemetry, OpsView]:
    """The app's telemetry for ``valet dev``: in memory for the page, and to ``otlp_endpoint`` too when given
    (OTLP over HTTP/protobuf, as in Azure with ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    resource = Resource.create({"service.name": SERVICE_NAME, "deployment.environment.name": "valet-dev"})
    reader = InMemoryMetricReader()
    readers: list[Any] = [reader]
    tracer_provider = TracerProvider(resource=resource)
    traces.adopt(tracer_provider)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        base = otlp_endpoint.rstrip("/")
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"),
                                                     export_interval_millis=5000))
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    meter_provider = MeterProvider(metric_readers=readers, resource=resource)
    return (Telemetry(meter_provider, tracer_provider),
            OpsView(reader, time.monotonic(), (meter_provider, tracer_provider)))


def routes(view: OpsView) -> dict[str, Callable[[], Response]]:
    """The page's paths for the development host: the page, its script and style, and the data."""
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

    def asset(path: Path, media_type: str) -> Callable[[], Response]:
        return lambda: (200, {**headers, "Content-Type": f"{media_type}; charset=utf-8"}, path.read_bytes())

    out = {route: asset(path, media) for route, (path, media) in ASSETS.items()}
    out[DATA_ROUTE] = lambda: (200, {**headers, "Content-Type": "application/json"},
                               json.dumps(view.snapshot()).encode())
    return out
