"""The instruments and the upload's trace, asserted with the SDK's in-memory reader and exporter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from tests.support.telemetry import recorded
from valet import telemetry
from valet.errors import BadRequest, TooManyRequests
from valet.grants.naming import new_upload_id
from valet.telemetry import instruments, traces
from valet.telemetry.instruments import INSTRUMENTS, bounded

UPLOAD_ID = new_upload_id(datetime(2026, 12, 6, 20, 0, tzinfo=UTC), lambda n: bytes(range(1, n + 1)))
CLIENT_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
CLIENT_SPAN = 0xB7AD6B7169203331


def _incoming() -> trace.Span:
    """The request's context as a client's traceparent (or the Functions host) set it."""
    return NonRecordingSpan(SpanContext(CLIENT_TRACE, CLIENT_SPAN, is_remote=True,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED)))


def test_a_grant_its_decision_and_its_event_share_the_uploads_trace() -> None:
    rec = recorded()
    t = rec.telemetry
    with trace.use_span(_incoming()), t.grant() as grant:
        grant.upload_id, grant.profile = UPLOAD_ID, "images"
    with t.decision(UPLOAD_ID):
        t.decided(outcome="accepted", reason="ok", profile="images", size=68, lag_seconds=1.5)
        with t.decision_event("valet-decisions") as traceparent:
            pass

    spans = {s.name: s for s in rec.spans()}
    assert set(spans) == {"valet.grant", "valet.decide", "send valet-decisions"}
    grant_span, decide, send = spans["valet.grant"], spans["valet.decide"], spans["send valet-decisions"]
    upload_trace = uuid.UUID(UPLOAD_ID).int
    assert {s.context.trace_id for s in spans.values()} == {upload_trace}  # one trace: the upload id
    assert grant_span.parent is None and grant_span.context.span_id == traces.grant_span_id(UPLOAD_ID)
    assert [link.context.trace_id for link in grant_span.links] == [CLIENT_TRACE]  # a link, never the parent
    assert decide.parent is not None and decide.parent.span_id == grant_span.context.span_id
    assert send.parent is not None and send.parent.span_id == decide.context.span_id
    assert send.kind is SpanKind.PRODUCER
    assert traceparent == f"00-{upload_trace:032x}-{send.context.span_id:016x}-01"
    assert decide.attributes == {"valet.outcome": "accepted", "valet.reason": "ok"}

    assert rec.total("valet.grants", valet__profile="images", valet__outcome="granted") == 1
    assert rec.total("valet.grant.duration", valet__outcome="granted") == 1
    assert rec.total("valet.decisions", valet__outcome="accepted", valet__reason="ok") == 1
    assert rec.total("valet.decision.lag", valet__outcome="accepted") == 1
    assert rec.total("valet.accepted.bytes", valet__profile="images") == 68
    assert rec.total("valet.decision_events", valet__result="ok") == 1


def test_every_point_uses_only_its_documented_attributes() -> None:
    rec = recorded()
    t = rec.telemetry
    with pytest.raises(BadRequest), t.grant():
        raise BadRequest("no", code="invalid_json")
    with t.grant() as grant:
        grant.upload_id, grant.profile = UPLOAD_ID, "images"
    with t.decision(None):
        t.decided(outcome="quarantined", reason="type_mismatch", profile="images", size=10, lag_seconds=None)
        with pytest.raises(OSError), t.decision_event("valet-decisions"):
            raise OSError("queue down")
    t.refusal("rate_limit", "too_many_requests")
    t.jwks_fetch(ok=True)
    t.jwks_fetch(ok=False)
    t.delegation_key_refresh(ok=True)

    specs = {spec.name: spec for spec in INSTRUMENTS}
    seen = set()
    for name, attributes, _ in rec.points():
        assert name in specs, name
        assert set(attributes) == set(specs[name].attributes), (name, attributes)
        seen.add(name)
    assert seen == set(specs) - {"valet.decision.lag", "valet.accepted.bytes"}  # none recorded: no lag, no accept
    assert rec.total("valet.grants", valet__outcome="invalid_json", valet__profile="none") == 1
    assert rec.total("valet.decision_events", valet__result="failed") == 1
    assert rec.total("valet.refusals", valet__limit="rate_limit", valet__code="too_many_requests") == 1
    assert rec.total("valet.jwks.fetches", valet__result="failed") == 1


def test_a_refused_grant_is_a_span_of_the_requests_trace_and_5xx_is_an_error() -> None:
    rec = recorded()
    with trace.use_span(_incoming()), pytest.raises(TooManyRequests), rec.telemetry.grant():
        raise TooManyRequests("slow down", code="too_many_requests")
    with pytest.raises(RuntimeError), rec.telemetry.grant():
        raise RuntimeError("bug")
    refused, crashed = rec.spans()
    assert refused.context.trace_id == CLIENT_TRACE and refused.parent is not None
    assert refused.attributes == {"valet.profile": "none", "valet.outcome": "too_many_requests"}
    assert refused.status.is_ok
    assert crashed.attributes is not None and crashed.attributes["valet.outcome"] == "internal_error"
    assert not crashed.status.is_ok


def test_a_decision_without_a_verified_upload_id_stays_in_the_triggers_trace() -> None:
    rec = recorded()
    with trace.use_span(_incoming()), rec.telemetry.decision(None):
        pass
    [span] = rec.spans()
    assert span.context.trace_id == CLIENT_TRACE and not span.links


@pytest.mark.parametrize(("value", "expected"), [
    ("images", "images"), ("content_not_allowed", "content_not_allowed"), (None, "none"), ("", "none"),
    ("Holiday Photo.png", "other"), ("user@example.com", "other"), ("a" * 49, "other"),
    ("sig=abc%2F", "other"), ("../../etc", "other"), ("dev-user", "other"),
])
def test_attribute_values_are_short_tokens_or_other(value: str | None, expected: str) -> None:
    assert bounded(value) == expected


def test_telemetry_is_off_until_installed_and_costs_no_spans() -> None:
    off = telemetry.current()
    assert not off.enabled
    with off.grant() as grant:
        grant.upload_id = UPLOAD_ID
    with off.decision(UPLOAD_ID), off.decision_event("valet-decisions") as traceparent:
        assert traceparent is None  # nothing to continue: no traceparent goes into the message
    rec = recorded()
    previous = telemetry.install(rec.telemetry)
    try:
        assert telemetry.current() is rec.telemetry and previous is off
    finally:
        telemetry.install(previous)


def test_the_upload_context_is_the_grant_span_and_ids_are_random_otherwise() -> None:
    context = trace.get_current_span(traces.upload_context(UPLOAD_ID)).get_span_context()
    assert (context.trace_id, context.span_id) == (uuid.UUID(UPLOAD_ID).int, traces.grant_span_id(UPLOAD_ID))
    generator = traces.UploadIdGenerator()
    assert generator.generate_trace_id() != generator.generate_trace_id()
    assert traces.grant_span_id(UPLOAD_ID) != traces.grant_span_id(new_upload_id(datetime.now(UTC), lambda n: bytes(n)))
    assert not traces.adopt(trace.NoOpTracerProvider())


def test_the_instrument_table_is_well_formed() -> None:
    names = [spec.name for spec in INSTRUMENTS]
    assert len(names) == len(set(names))
    for spec in INSTRUMENTS:
        assert spec.name.startswith("valet.") and spec.description
        assert set(spec.attributes) <= instruments.ATTRIBUTE_KEYS
        assert (spec.kind == "histogram") == bool(spec.boundaries)


def test_code_inside_a_grant_notes_its_profile_and_upload_id() -> None:
    rec = recorded()
    telemetry.note_grant(profile="ignored")  # no grant observed: nothing happens
    with rec.telemetry.grant():
        telemetry.note_grant(profile="documents")
        telemetry.note_grant(upload_id=UPLOAD_ID)
    [span] = rec.spans()
    assert span.context.trace_id == uuid.UUID(UPLOAD_ID).int
    assert rec.total("valet.grants", valet__profile="documents", valet__outcome="granted") == 1


def test_work_handed_to_another_thread_stays_in_the_trace() -> None:
    from concurrent.futures import ThreadPoolExecutor

    rec = recorded()

    def send() -> str | None:
        with rec.telemetry.decision_event("valet-decisions") as traceparent:
            return traceparent

    with ThreadPoolExecutor(max_workers=1) as pool, rec.telemetry.decision(UPLOAD_ID):
        bare = pool.submit(send).result()  # a pool thread starts with an empty context
        carried = pool.submit(traces.carried(send)).result()
    spans = rec.spans()
    [decide] = [s for s in spans if s.name == "valet.decide"]
    lost, kept = (s for s in spans if s.name == "send valet-decisions")
    assert lost.parent is None and lost.context.trace_id != decide.context.trace_id
    assert kept.parent is not None and kept.parent.span_id == decide.context.span_id
    assert bare is not None and carried == f"00-{uuid.UUID(UPLOAD_ID).int:032x}-{kept.context.span_id:016x}-01"


def test_sampling_keeps_or_drops_an_uploads_trace_whole() -> None:
    """The decider asks the provider's sampler again for the upload's trace id: with a sampler that decides
    by trace id, the decision (and its event) is kept exactly when the grant's span was."""
    # TraceIdRatioBased reads a trace id's low 64 bits, whose top two are a UUID's variant bits (10): with
    # upload ids as trace ids, a ratio r keeps 4r - 2 of the traces (docs/telemetry.md, Sampling): 0.625 keeps half.
    rec = recorded(ParentBased(TraceIdRatioBased(0.625)))
    t = rec.telemetry
    ids = [new_upload_id(datetime(2026, 12, 6, 23, n, tzinfo=UTC), lambda k, n=n: bytes([n * 7 % 251 + 1] * k))
           for n in range(40)]
    for upload_id in ids:
        with t.grant() as grant:
            grant.upload_id = upload_id
        with t.decision(upload_id), t.decision_event("valet-decisions"):
            pass
    by_trace: dict[int, set[str]] = {}
    for span in rec.spans():
        by_trace.setdefault(span.context.trace_id, set()).add(span.name)
    whole = {"valet.grant", "valet.decide", "send valet-decisions"}
    assert all(names == whole for names in by_trace.values())  # never a decision without its grant
    assert 0 < len(by_trace) < len(ids)  # and the sampler did drop some traces, whole
