"""One trace per upload: the grant, the decision and the decision event.

The upload id (a UUIDv7 the app picks, 128 bits) *is* the trace id, and the grant's span id is derived
from it. The decision knows the upload id from the blob name, whose MAC it verifies first, so it can
make its span a child of the grant's without anything more in the name or the grant header, and a
client cannot link an upload to any other trace: the name's MAC covers the id, and a ``traceparent`` a
client sends with the grant request only becomes a span *link*, never the parent. The decision event
carries the ``traceparent`` of its send span, so a consumer continues the same trace.

The grant's span is started with pinned ids through :class:`UploadIdGenerator`, the SDK's extension
point for ids, which :func:`adopt` installs on the tracer provider valet exports with.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_pinned: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("valet_pinned_ids", default=None)
_propagator = TraceContextTextMapPropagator()
_ROOT = Context()  # no parent: a context is immutable, so one serves every root span
_LOW_64 = (1 << 64) - 1
_SPAN_MASK = 0x76616C65742D6772  # "valet-gr": the grant span's id differs from the trace id's low half


def trace_id(upload_id: str) -> int:
    """The trace id of an upload: its id's 128 bits (a UUIDv7's last 7 bytes are random, as W3C Trace
    Context level 2 asks of a trace id)."""
    return uuid.UUID(upload_id).int


def grant_span_id(upload_id: str) -> int:
    """The span id of the upload's grant span, derived from the upload id (never zero): its last 64 bits,
    random and the caller-binding MAC (see :func:`valet.grants.naming.bind_upload_id`), under a fixed mask."""
    return (uuid.UUID(upload_id).int & _LOW_64) ^ _SPAN_MASK or 1


def upload_context(upload_id: str, *, sampled: bool = True) -> Context:
    """A context whose parent is the upload's grant span: decisions start their span in it. ``sampled``:
    whether the grant's span was kept, as far as the decider can tell (:func:`grant_sampled`)."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(trace_id(upload_id), grant_span_id(upload_id), is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def grant_sampled(sampler: Sampler | None, upload_id: str, name: str) -> bool:
    """Whether ``sampler`` keeps the upload's grant span, asked again for the same trace id by whoever decides
    the upload later (another process, maybe): a sampler that decides by trace id (a fixed percentage, a
    trace-id ratio) answers as it did for the grant, so the trace is kept or dropped whole; the rate-limited
    one answers by the current rate, about as often. No sampler known (telemetry off or not the SDK's):
    ``True``."""
    if sampler is None:
        return True
    result = sampler.should_sample(None, trace_id(upload_id), name, SpanKind.SERVER, None, None)
    return result.decision is Decision.RECORD_AND_SAMPLE


class UploadIdGenerator(RandomIdGenerator):
    """Random ids, except for the one span :func:`start_upload_root` starts with pinned ones."""

    def generate_span_id(self) -> int:
        pinned = _pinned.get()
        return pinned[1] if pinned is not None else super().generate_span_id()

    def generate_trace_id(self) -> int:
        pinned = _pinned.get()
        return pinned[0] if pinned is not None else super().generate_trace_id()


def adopt(provider: object) -> bool:
    """Install :class:`UploadIdGenerator` on an SDK tracer provider (ours, or the one the Azure Monitor
    distro made) before any tracer is taken from it. ``False`` for any other provider."""
    if not isinstance(provider, SdkTracerProvider):
        return False
    provider.id_generator = UploadIdGenerator()  # a public attribute; get_tracer() hands it to each tracer
    return True


def start_upload_root(tracer: Tracer, name: str, upload_id: str, *, start_time: int, links: Sequence[Link],
                      attributes: Mapping[str, str]) -> Span:
    """The root span of the upload's trace (the grant): trace id = upload id, span id = :func:`grant_span_id`."""
    value = uuid.UUID(upload_id).int  # parsed once: trace_id() and grant_span_id() in one
    token = _pinned.set((value, (value & _LOW_64) ^ _SPAN_MASK or 1))
    try:  # a copy: a sampler may add to the mapping it is given (the distro's fixed-percentage one does)
        return tracer.start_span(name, context=_ROOT, kind=SpanKind.SERVER, links=links,
                                 attributes=dict(attributes), start_time=start_time)
    finally:
        _pinned.reset(token)


def traceparent(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (``None`` when it has no valid context, as with telemetry off)."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span, Context()))
    return carrier.get("traceparent")


P = ParamSpec("P")
R = TypeVar("R")


def carried(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn``, to run in the OpenTelemetry context current now: for work handed to another thread (a pool
    thread starts with an empty context, and its spans would start new traces)."""
    captured = otel_context.get_current()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        token = otel_context.attach(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run
