"""``valet dev --no-blob-trigger`` (every blob-trigger event lost): an upload stays undecided until the
``reconcile_uploads`` timer runs, here through the dev host's admin endpoint, and then ends accepted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.support.devstack import valet_dev
from tests.support.samples import png

pytestmark = pytest.mark.azurite


def test_an_upload_whose_trigger_never_fires_is_decided_by_the_reconciler(tmp_path: Path) -> None:
    with valet_dev(tmp_path, {"VALET_RECONCILE_AFTER_SECONDS": "0"}, args=["--no-blob-trigger"]) as dev:
        auth = {"Authorization": f"Bearer {dev.token}"}
        data = png()
        grant = requests.post(f"{dev.url}/api/uploads", headers=auth, timeout=10,
                              json={"filename": "a.png", "contentType": "image/png", "size": len(data)}).json()
        put = requests.put(grant["uploadUrl"], data=data, headers=grant["headers"], verify=dev.ca, timeout=10)
        assert put.status_code == 201, put.text
        time.sleep(2.5)  # the watcher would have fired within a second or two
        assert requests.get(grant["statusUrl"], headers=auth, timeout=10).json()["status"] == "pending"

        ran = requests.post(f"{dev.url}/admin/functions/reconcile_uploads", json={"input": ""},
                            timeout=30)
        assert ran.status_code == 202, ran.text
        deadline, status = time.monotonic() + 20, {}
        while time.monotonic() < deadline:
            status = requests.get(grant["statusUrl"], headers=auth, timeout=10).json()
            if status["status"] != "pending":
                break
            time.sleep(0.3)
        assert status["status"] == "accepted", status
