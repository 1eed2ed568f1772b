"""Property-based fuzzing of the running app against its own OpenAPI document (schemathesis).

``valet dev`` runs as a subprocess on free ports (rate limits and failure budgets off, so throttling does
not hide what the handlers do; test_api_contract.py checks the 429s); schemathesis loads ``/api/openapi.json`` from it and, for every operation, sends the
document's examples, its boundary cases (coverage phase: missing and extra fields, wrong types, longest
and shortest strings, huge numbers, other methods) and random valid and invalid requests (fuzzing phase,
positive and negative data), authenticated with the dev token and, in a second round, the dev API key.

Every response must pass schemathesis' checks: no 5xx, status code, content type, headers and body as
documented, invalid data refused with a 4xx, valid data not refused for its shape, auth enforced. The
requests are counted, and the last test asserts the count, so a run cannot pass by sending nothing.

Short by default (CI); ``VALET_FUZZ_EXAMPLES`` raises the random examples per operation, mode and auth
(``bench/fuzz.py`` runs the long version and prints the counts).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.devstack import DevStack, valet_dev
from valet import openapi
from valet.local.emulator import PROJECT_ROOT

pytestmark = pytest.mark.azurite

EXAMPLES = int(os.environ.get("VALET_FUZZ_EXAMPLES", "25"))
MIN_REQUESTS = int(os.environ.get("VALET_FUZZ_MIN_REQUESTS", "250"))
REPORT = os.environ.get("VALET_FUZZ_REPORT")  # a JSON file for the counts, written by the last test

# What "conforms" means beyond the document: schemathesis' defaults, plus the statuses this API gives by
# design. Valid-by-schema data can still be refused by the upload profile (400 unknown_profile,
# empty_not_allowed or sha256_required; 413 over the profile's maxBytes; 415 a type the profile does not
# take): the profiles are configuration, not part of the document. Valid data with an Idempotency-Key the
# fuzzer already used for another body is 422 idempotency_key_reused: the key is state, not shape. Invalid
# data may also be 413 (body too large).
CONFIG = {
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "413", "415",
                                                           "422"]},
        "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "413", "415", "422"]},
    },
    "phases": {"stateful": {"enabled": False}},
}


class Tally:
    """Every request the fuzzer sent through :func:`call_and_check`, by operation, mode and status."""

    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_mode: Counter[str] = Counter()
        self.nonconforming = 0  # responses that failed a check (the test fails on the first of each kind)

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 500)

    def record(self, case: schemathesis.Case, status: int) -> None:
        self.by_operation[case.operation.label] += 1
        self.by_status[status] += 1
        meta = case.meta
        self.by_mode[meta.generation.mode.value if meta is not None else "explicit"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.total, "server_errors": self.server_errors, "nonconforming": self.nonconforming,
                "examples_setting": EXAMPLES,
                "by_operation": dict(self.by_operation), "by_mode": dict(self.by_mode),
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())}}


TALLY = Tally()
CREDENTIALS: dict[str, str] = {}  # the running stack's dev token, API key and URL, set by ``fuzz_stack``


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    limits_off = {"VALET_RATE_LIMIT_PER_MINUTE": "0", "VALET_STATUS_RATE_LIMIT_PER_MINUTE": "0",
                  "VALET_AUTH_FAILURES_PER_MINUTE": "0", "VALET_AUTH_GLOBAL_FAILURES_PER_MINUTE": "0"}
    with valet_dev(tmp_path_factory.mktemp("fuzz"), extra_env=limits_off) as stack:
        CREDENTIALS.update(url=stack.url, token=stack.token, api_key=stack.api_key)
        yield stack
        CREDENTIALS.clear()


def load_document() -> schemathesis.BaseSchema:
    """The document as kept in the repository (the app serves these very bytes: test_api_contract.py)."""
    return schemathesis.openapi.from_path(PROJECT_ROOT / "valet" / "openapi.json",
                                          config=schemathesis.Config.from_dict(CONFIG))


# One schema object per credential, each with its own auth provider, so schemathesis knows which
# credential is the valid one (and checks that requests without it, or with a wrong one, are refused).
# Cases are partly built at collection time, before the stack (and so its credentials) exists: the
# providers put a placeholder, and call_and_check puts the real credential in its place.
with_token, with_api_key = load_document(), load_document()
PLACEHOLDER = "valet-dev-credential"


@with_token.auth()
class DevToken:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return PLACEHOLDER

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@with_api_key.auth()
class DevApiKey:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return PLACEHOLDER

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "X-API-Key": data}


FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def call_and_check(case: schemathesis.Case) -> None:
    headers = case.headers or {}
    if headers.get("Authorization") == f"Bearer {PLACEHOLDER}":
        headers["Authorization"] = f"Bearer {CREDENTIALS['token']}"
    if headers.get("X-API-Key") == PLACEHOLDER:
        headers["X-API-Key"] = CREDENTIALS["api_key"]
    transport = {"base_url": CREDENTIALS["url"], "timeout": 30}
    response = case.call(**transport)  # type: ignore[arg-type]
    TALLY.record(case, response.status_code)  # before the checks, so failing requests are counted too
    try:
        case.validate_response(response, transport_kwargs=transport)
    except schemathesis.errors.FailureGroup:
        TALLY.nonconforming += 1
        raise


@with_token.parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_document_with_a_bearer_token(case: schemathesis.Case, fuzz_stack: DevStack) -> None:
    call_and_check(case)


@with_api_key.parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_document_with_an_api_key(case: schemathesis.Case, fuzz_stack: DevStack) -> None:
    call_and_check(case)


def test_fuzzing_sent_enough_requests_and_no_server_error() -> None:
    summary = TALLY.as_dict()
    if REPORT:
        Path(REPORT).write_text(json.dumps(summary, indent=2))
    print(f"\nfuzz: {json.dumps(summary)}")
    assert TALLY.total >= MIN_REQUESTS, summary
    assert TALLY.server_errors == 0 and TALLY.nonconforming == 0, summary
    every_operation = {f"{method.upper()} {path}" for path, item in openapi.document()["paths"].items()
                       for method in item}
    assert set(TALLY.by_operation) == every_operation, summary  # grant, status, preflights, health, page, ...
