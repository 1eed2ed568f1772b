"""The SDK's in-memory exporter and reader behind a :class:`~valet.telemetry.Telemetry`, for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from valet import telemetry
from valet.telemetry import traces


@dataclass
class Recorded:
    telemetry: telemetry.Telemetry
    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        self.telemetry.flush()  # grant spans are made off the request thread (valet/telemetry/batching.py)
        return list(self.exporter.get_finished_spans())

    def points(self) -> list[tuple[str, dict[str, Any], Any]]:
        """Every data point: (instrument name, attributes, point)."""
        data = self.reader.get_metrics_data()
        out = []
        for resource in (data.resource_metrics if data else ()):
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        out.append((metric.name, dict(point.attributes or {}), point))
        return out

    def total(self, name: str, **attributes: str) -> float:
        """The sum of a counter's points (or a histogram's count) whose attributes include ``attributes``."""
        total = 0.0
        for metric, attrs, point in self.points():
            if metric == name and all(attrs.get(k.replace("__", ".")) == v for k, v in attributes.items()):
                total += getattr(point, "value", None) if hasattr(point, "value") else point.count
        return total


def recorded(sampler: Sampler | None = None) -> Recorded:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler)
    traces.adopt(tracer_provider)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Recorded(telemetry.Telemetry(MeterProvider(metric_readers=[reader]), tracer_provider), reader, exporter,
                    tracer_provider)


@contextmanager
def installed() -> Iterator[Recorded]:
    """A fresh in-memory telemetry, installed as the process's for the block."""
    rec = recorded()
    previous = telemetry.install(rec.telemetry)
    try:
        yield rec
    finally:
        telemetry.install(previous)
        rec.telemetry.close()
        rec.tracer_provider.shutdown()
