"""Every metric valet records, defined once (:data:`INSTRUMENTS`, the table docs/telemetry.md shows), and
:class:`Telemetry`, the one object instrumentation points call.

Attributes are bounded by construction: each recording method takes only values from closed sets (an
outcome, an error ``code``, a configured profile name, a :class:`~valet.validation.reasons.Reason`), and
:func:`bounded` turns anything that does not look like such a token into ``other``. Nothing a caller types
(ids, file names, tokens, blob names, SAS) is ever an attribute: cardinality and privacy stay bounded.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, NoOpMeterProvider, Observation
from opentelemetry.trace import Link, NoOpTracerProvider, Span, SpanKind, Status, StatusCode, TracerProvider

from valet.errors import ValetError
from valet.telemetry import traces
from valet.telemetry.batching import Batcher

SCOPE = "valet"

# Attribute keys: the only ones valet's metrics and spans carry.
PROFILE = "valet.profile"  # a configured upload profile name, or "none" before one was chosen
OUTCOME = "valet.outcome"  # grants: "granted" or the error code; decisions: accepted | quarantined | cancelled
REASON = "valet.reason"  # a decision's reason code (valet/validation/reasons.py)
RESULT = "valet.result"  # ok | failed
LIMIT = "valet.limit"  # rate_limit | failure_budget | quota
CODE = "valet.code"  # the refusal's error code

ATTRIBUTE_KEYS = frozenset({PROFILE, OUTCOME, REASON, RESULT, LIMIT, CODE})

_TOKEN = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){2,62}$")  # Azure queue naming rules
OTHER = "other"


def bounded(value: str | None, default: str = "none") -> str:
    """``value`` if it is a short lower-case token (codes, reasons, profile names), else ``other``."""
    if not value:
        return default
    return value if _TOKEN.fullmatch(value) else OTHER


@dataclass(frozen=True)
class Instrument:
    name: str
    kind: Literal["counter", "histogram"]
    unit: str
    attributes: tuple[str, ...]
    description: str
    boundaries: tuple[float, ...] = ()


_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

GRANTS = Instrument("valet.grants", "counter", "{grant}", (PROFILE, OUTCOME),
                    "Grant requests answered (POST /api/uploads), by profile and outcome code")
GRANT_DURATION = Instrument("valet.grant.duration", "histogram", "s", (OUTCOME,),
                            "Time to answer a grant request, in the app", _SECONDS)
DECISIONS = Instrument("valet.decisions", "counter", "{decision}", (OUTCOME, REASON),
                       "Uploads decided, by outcome and reason code")
DECISION_LAG = Instrument("valet.decision.lag", "histogram", "s", (OUTCOME,),
                          "Time from the blob's creation in storage to its verdict", _LAG_SECONDS)
ACCEPTED_BYTES = Instrument("valet.accepted.bytes", "counter", "By", (PROFILE,),
                            "Bytes of accepted uploads")
DECISION_EVENTS = Instrument("valet.decision_events", "counter", "{message}", (RESULT,),
                             "Decision-event queue messages sent (ok) and sends that failed")
JWKS_FETCHES = Instrument("valet.jwks.fetches", "counter", "{fetch}", (RESULT,),
                          "Fetches of an OIDC issuer's signing keys (JWKS), ok and failed")
REFUSALS = Instrument("valet.refusals", "counter", "{request}", (LIMIT, CODE),
                      "Requests refused by a rate limit, a failure budget or a quota")
KEY_REFRESHES = Instrument("valet.delegation_key.refreshes", "counter", "{refresh}", (RESULT,),
                           "User delegation key fetches and refreshes, ok and failed")

INSTRUMENTS: tuple[Instrument, ...] = (GRANTS, GRANT_DURATION, DECISIONS, DECISION_LAG, ACCEPTED_BYTES,
                                       DECISION_EVENTS, JWKS_FETCHES, REFUSALS, KEY_REFRESHES)

# Span names.
GRANT_SPAN = "valet.grant"
DECISION_SPAN = "valet.decide"


@dataclass(slots=True)
class GrantRecord:
    """What a grant's instrumentation learns while the request is handled (see :meth:`Telemetry.grant`);
    queued as it is for the span and the duration made off the request thread."""

    upload_id: str | None = None
    profile: str | None = None
    outcome: str = "granted"
    status: int = 201
    started_ns: int = 0  # ns since the epoch, as spans' times are
    ended_ns: int = 0
    incoming: Context | None = None  # the request's context: the span's parent (refused) or link (granted)


class Telemetry:
    """The instruments and the tracer, made from a meter and a tracer provider (the SDK's, or the API's
    no-op ones when telemetry is off). Every method is safe to call from any thread."""

    def __init__(self, meter_provider: MeterProvider | None = None,
                 tracer_provider: TracerProvider | None = None) -> None:
        meter = (meter_provider or NoOpMeterProvider()).get_meter(SCOPE)
        self.tracer = (tracer_provider or NoOpTracerProvider()).get_tracer(SCOPE)
        self.enabled = meter_provider is not None or tracer_provider is not None
        self._sampler = getattr(tracer_provider, "sampler", None)  # the SDK's: decisions ask it again
        made: dict[str, object] = {}
        for spec in INSTRUMENTS:
            if spec is GRANTS:
                continue
            if spec.kind == "counter":
                made[spec.name] = meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
            else:
                made[spec.name] = meter.create_histogram(
                    spec.name, unit=spec.unit, description=spec.description,
                    explicit_bucket_boundaries_advisory=list(spec.boundaries))
        # Grants are counted in a tally that an observable counter reports at each collection: a dict update
        # in the batch, not the SDK's per-measurement attribute handling (bench/grants.py).
        self._grants = _Tally((PROFILE, OUTCOME))
        made[GRANTS.name] = meter.create_observable_counter(GRANTS.name, callbacks=[self._observe_grants],
                                                            unit=GRANTS.unit, description=GRANTS.description)
        self._made = made
        # A grant's span and duration are made off the request thread, in batches (valet/telemetry/batching.py).
        self._granted_batch: Batcher[GrantRecord] = Batcher(self._emit_granted)
        self._attributes: dict[tuple[str | None, str], dict[str, str]] = {}  # per (profile, outcome), made once

    def flush(self) -> None:
        """Make the spans and records of every grant answered so far (the background thread does it within
        half a second; a metric collection does it first). Tests and shutdown call it."""
        self._granted_batch.flush()

    def close(self) -> None:
        """Flush and stop the background thread (the providers' own shutdown is their owner's)."""
        self._granted_batch.close()

    def _observe_grants(self, options: CallbackOptions) -> Iterable[Observation]:
        self._granted_batch.flush()  # the collection then includes every grant's duration so far
        return self._grants.observe(options)

    def _add(self, spec: Instrument, amount: float, attributes: Mapping[str, str]) -> None:
        self._made[spec.name].add(amount, attributes)  # type: ignore[attr-defined]

    def _record(self, spec: Instrument, value: float, attributes: Mapping[str, str]) -> None:
        self._made[spec.name].record(value, attributes)  # type: ignore[attr-defined]

    # -- the grant path --------------------------------------------------------------------------------

    def grant(self) -> _GrantObservation | _NotObserved:
        """Around one grant request (``with telemetry.grant() as record:``): counts it, times it and traces
        it. The code inside sets ``profile`` and ``upload_id`` on the record (or calls :func:`note_grant`)
        as it learns them; a :class:`ValetError` sets the outcome to its code. An issued grant's span starts
        the upload's own trace (trace id = upload id, :mod:`valet.telemetry.traces`), linked to the
        request's context; a refused one is a span in the request's trace."""
        return _GrantObservation(self) if self.enabled else _NOT_OBSERVED

    def _granted(self, record: GrantRecord) -> None:
        """On the request thread: queue the record; its count, duration and span are made in the batch."""
        if not self._granted_batch.put(record):
            self._grants.add((record.profile, record.outcome))  # the queue is full: the count stays exact

    def _emit_granted(self, record: GrantRecord) -> None:
        """Off the request thread: the grant's count, its duration and its span, with its true start and end."""
        key = (record.profile, record.outcome)
        self._grants.add(key)
        attributes = self._attributes.get(key) or self._bounded_attributes(key)
        outcome = attributes[OUTCOME]
        self._record(GRANT_DURATION, (record.ended_ns - record.started_ns) / 1e9,
                     _OUTCOMES.get(outcome) or {OUTCOME: outcome})
        incoming = record.incoming
        if record.upload_id is not None and outcome == "granted":
            incoming_span = trace.get_current_span(incoming).get_span_context() if incoming else None
            links = [Link(incoming_span)] if incoming_span is not None and incoming_span.is_valid else ()
            span = traces.start_upload_root(self.tracer, GRANT_SPAN, record.upload_id, start_time=record.started_ns,
                                            links=links, attributes=attributes)
        else:  # a refused grant: a span of the request's own trace
            span = self.tracer.start_span(GRANT_SPAN, context=incoming, kind=SpanKind.INTERNAL,
                                          start_time=record.started_ns, attributes=dict(attributes))
            if record.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=record.ended_ns)

    def _bounded_attributes(self, key: tuple[str | None, str]) -> dict[str, str]:
        attributes = {PROFILE: bounded(key[0]), OUTCOME: bounded(key[1], default=OTHER)}
        if len(self._attributes) < 1024:  # profiles x outcome codes: a closed set, bounded all the same
            self._attributes[key] = attributes
        return attributes

    def refusal(self, limit: Literal["rate_limit", "failure_budget", "quota"], code: str) -> None:
        self._add(REFUSALS, 1, {LIMIT: limit, CODE: bounded(code, default=OTHER)})

    def jwks_fetch(self, *, ok: bool) -> None:
        self._add(JWKS_FETCHES, 1, {RESULT: "ok" if ok else "failed"})

    def delegation_key_refresh(self, *, ok: bool) -> None:
        self._add(KEY_REFRESHES, 1, {RESULT: "ok" if ok else "failed"})

    # -- the decision side -----------------------------------------------------------------------------

    @contextmanager
    def decision(self, upload_id: str | None, *, start_time: int | None = None) -> Iterator[Span]:
        """The span of one decision: a child of the grant's span when ``upload_id`` comes from a name whose
        MAC verified (pass ``None`` otherwise: then it is a span of the trigger's own trace), linked to the
        trigger's context; kept when the provider's sampler keeps the grant's span of that trace
        (:func:`~valet.telemetry.traces.grant_sampled`), so sampling keeps or drops an upload's trace whole.
        ``start_time`` (ns since the epoch): when the decision began, if before the block. Record the
        verdict with :meth:`decided` inside it."""
        incoming = trace.get_current_span().get_span_context()
        if upload_id is not None:
            sampled = traces.grant_sampled(self._sampler, upload_id, GRANT_SPAN)
            parent = traces.upload_context(upload_id, sampled=sampled)
            links = [Link(incoming)] if incoming.is_valid and incoming.trace_id != traces.trace_id(upload_id) else []
            cm = self.tracer.start_as_current_span(DECISION_SPAN, context=parent, links=links, start_time=start_time)
        else:
            cm = self.tracer.start_as_current_span(DECISION_SPAN, start_time=start_time)
        with cm as span:
            yield span

    def decided(self, *, outcome: str, reason: str, profile: str | None, size: int,
                lag_seconds: float | None) -> None:
        """One verdict: counts it, its lag from the blob's creation, and the bytes of an accepted upload.
        Also labels the current (decision) span."""
        attributes = {OUTCOME: bounded(outcome, default=OTHER), REASON: bounded(reason, default=OTHER)}
        self._add(DECISIONS, 1, attributes)
        if lag_seconds is not None and lag_seconds >= 0:
            self._record(DECISION_LAG, lag_seconds, {OUTCOME: attributes[OUTCOME]})
        if outcome == "accepted" and size > 0:
            self._add(ACCEPTED_BYTES, size, {PROFILE: bounded(profile)})
        trace.get_current_span().set_attributes(attributes)

    @contextmanager
    def decision_event(self, queue: str) -> Iterator[str | None]:
        """Around one decision-event send: a producer span (a child of the decision's) whose
        ``traceparent`` the block puts into the message, and the ok / failed count."""
        destination = queue if _QUEUE_NAME.fullmatch(queue) else "queue"
        with self.tracer.start_as_current_span(
                f"send {destination}", kind=SpanKind.PRODUCER,
                attributes={"messaging.operation.type": "send", "messaging.system": "azure_storage_queue",
                            "messaging.destination.name": destination},
                record_exception=False) as span:
            try:
                yield traces.traceparent(span) if self.enabled else None
            except Exception:
                self._add(DECISION_EVENTS, 1, {RESULT: "failed"})
                raise
            self._add(DECISION_EVENTS, 1, {RESULT: "ok"})


class _GrantObservation:
    """The context manager :meth:`Telemetry.grant` returns (a class: cheaper than a generator on the hot path)."""

    __slots__ = ("_noted", "_record", "_telemetry")

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._record = GrantRecord()

    def __enter__(self) -> GrantRecord:
        record = self._record
        self._noted = _grant.set(record)
        record.incoming = otel_context.get_current()
        record.started_ns = time.time_ns()
        return record

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        record = self._record
        record.ended_ns = time.time_ns()
        _grant.reset(self._noted)
        if isinstance(error, ValetError):
            record.outcome, record.status = error.code, error.status
        elif error is not None:
            record.outcome, record.status = "internal_error", 500
        self._telemetry._granted(record)


class _NotObserved:
    """Telemetry off: the grant path pays for nothing (:func:`note_grant` finds no record)."""

    def __enter__(self) -> GrantRecord:
        return GrantRecord()

    def __exit__(self, *exc: object) -> None:
        return None


_NOT_OBSERVED = _NotObserved()
_OUTCOMES = {"granted": {OUTCOME: "granted"}}  # the common case's attributes, made once


class _Tally:
    """Grants counted per (profile, outcome), reported as an observable counter's cumulative values. The
    values are bounded (:func:`bounded`) when observed."""

    def __init__(self, keys: tuple[str, str]) -> None:
        self._keys = keys
        self._lock = threading.Lock()
        self._counts: dict[tuple[str | None, str], int] = {}

    def add(self, values: tuple[str | None, str]) -> None:
        with self._lock:
            self._counts[values] = self._counts.get(values, 0) + 1

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        merged: dict[tuple[str, str], int] = {}
        for (profile, outcome), n in counts:
            key = (bounded(profile), bounded(outcome, default=OTHER))
            merged[key] = merged.get(key, 0) + n
        return [Observation(n, dict(zip(self._keys, key, strict=True))) for key, n in merged.items()]


_active = Telemetry()
_grant: contextvars.ContextVar[GrantRecord | None] = contextvars.ContextVar("valet_grant", default=None)


def note_grant(*, upload_id: str | None = None, profile: str | None = None) -> None:
    """Tell the grant being observed (:meth:`Telemetry.grant`, if any) its profile, then its upload id."""
    record = _grant.get()
    if record is None:
        return
    if upload_id is not None:
        record.upload_id = upload_id
    if profile is not None:
        record.profile = profile


def current() -> Telemetry:
    """The process's telemetry (no-op until :func:`install`)."""
    return _active


def install(telemetry: Telemetry) -> Telemetry:
    """Make ``telemetry`` the process's; returns the one it replaces (tests put it back)."""
    global _active
    previous, _active = _active, telemetry
    return previous
