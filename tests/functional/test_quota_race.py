"""The multi-process proof: three app instances (separate processes, ``valet dev --instances 3``) sharing
one Azurite race 300 grants of one caller at a small limit over real HTTP: exactly the limit is granted,
every other answer is ``429 quota_exceeded``, none is a 5xx."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.devstack import valet_dev

pytestmark = pytest.mark.azurite

LIMIT = 20
PROFILES = {"default": "metered", "profiles": {"metered": {
    "maxBytes": 1_000_000, "types": {"image/png": ["png"]},
    "quota": {"filesPerDay": LIMIT, "bytesPerDay": 10_000_000, "pendingFiles": 50},
    "tenantQuota": {"bytesPerDay": LIMIT * 1000}}}}


def test_instances_racing_grants_never_go_one_file_over(tmp_path: Path) -> None:
    env = {"VALET_PROFILES": json.dumps(PROFILES), "VALET_RATE_LIMIT_PER_MINUTE": "0"}
    with (tmp_path / "dev.log").open("w") as log, \
            valet_dev(tmp_path, extra_env=env, args=["--instances", "3"], output=log) as stack:
        urls = stack.env["VALET_URLS"].split()
        assert len(urls) == 3
        headers = {"X-API-Key": stack.api_key}
        body = {"filename": "a.png", "contentType": "image/png", "size": 1000}

        def grant(i: int) -> int:
            with requests.post(f"{urls[i % 3]}/api/uploads", json=body, headers=headers, timeout=60) as response:
                if response.status_code == 429:
                    assert response.json()["code"] == "quota_exceeded"
                    assert int(response.headers["Retry-After"]) >= 1
                return response.status_code

        with ThreadPoolExecutor(24) as pool:
            statuses = Counter(pool.map(grant, range(300)))
        assert statuses == {201: LIMIT, 429: 300 - LIMIT}, statuses
        shown = {u: requests.get(f"{u}/api/quota", headers=headers, timeout=30).json()["quotas"] for u in urls}
        for quotas in shown.values():  # every instance reads the same counts
            assert quotas[0]["reserved"] == {"bytesPerDay": LIMIT * 1000, "filesPerDay": LIMIT, "pendingFiles": LIMIT}
            assert quotas[1]["scope"] == "tenant" and quotas[1]["remaining"] == {"bytesPerDay": 0}
