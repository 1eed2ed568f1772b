"""valet dev's in-memory view: what the operations page shows, from the app's own instruments."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from valet.errors import BadRequest
from valet.grants.naming import new_upload_id
from valet.local import ops


def test_the_snapshot_counts_grants_verdicts_and_estimates_percentiles() -> None:
    telemetry, view = ops.dev_telemetry()
    for i in range(20):
        with telemetry.grant() as grant:
            grant.upload_id = new_upload_id(datetime.now(UTC), lambda n, i=i: bytes([i + 1]) * n)
            grant.profile = "images"
    with pytest.raises(BadRequest), telemetry.grant():
        raise BadRequest("no", code="content_type_not_allowed")
    for outcome, reason, lag in [("accepted", "ok", 0.4)] * 8 + [("quarantined", "type_mismatch", 3.0)] * 2:
        with telemetry.decision(None):
            telemetry.decided(outcome=outcome, reason=reason, profile="images", size=1000, lag_seconds=lag)
    telemetry.refusal("rate_limit", "too_many_requests")

    snap = view.snapshot()
    assert snap["grants"]["total"] == 21
    assert snap["grants"]["byOutcome"] == {"granted": 20, "content_type_not_allowed": 1}
    assert snap["decisions"]["byOutcome"] == {"accepted": 8, "quarantined": 2}
    assert snap["decisions"]["byReason"] == {"ok": 8, "type_mismatch": 2}
    assert snap["acceptedBytes"] == 8000
    assert snap["refusals"] == {"rate_limit": 1}
    lag = snap["decisionLag"]
    assert lag["count"] == 10
    assert 0.25 <= lag["p50"] <= 0.5  # eight of ten in the (0.25, 0.5] bucket
    assert 2.5 <= lag["p99"] <= 3.0  # clamped to the largest value recorded
    grant = snap["grantLatency"]
    assert grant["count"] == 21 and 0 < grant["p50"] <= grant["p90"] <= grant["p99"]
    json.dumps(snap)  # what the page fetches


def test_percentiles_of_nothing_are_none() -> None:
    assert ops.latency([]) == {"count": 0, "p50": None, "p90": None, "p99": None}


def test_the_page_and_its_data_are_served_with_a_strict_policy() -> None:
    telemetry, view = ops.dev_telemetry()
    routes = ops.routes(view)
    assert set(routes) == {"/api/ui/ops", "/api/ui/ops/ops.js", "/api/ui/ops/ops.css", "/api/ui/ops/data.json"}
    status, headers, body = routes["/api/ui/ops"]()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"] and b"<script" in body
    assert b"onclick" not in body and b"<script>" not in body  # no inline script: the policy would refuse it
    status, headers, body = routes["/api/ui/ops/data.json"]()
    assert headers["Content-Type"] == "application/json" and json.loads(body)["grants"]["total"] == 0
