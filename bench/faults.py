"""Failure figures: how long a grant takes to answer 503 when storage fails and no user delegation key is
cached, and how many blob-trigger tries the validator needs to outlast a storage outage.

Azurite (started here, HTTPS + OAuth) sits behind the test fault proxy (``tests/support/faultproxy.py``),
and the app (``RuntimeHolder``, as ``function_app`` builds it, warm-up included) reaches storage only
through the proxy. Grants carry a real RS256 token from the development issuer.

    .venv/bin/python bench/faults.py [--runs 3] [--timeout 5] [--modes down,reset,503,delay]
                                     [--outages 2,3,6,9,12]

``--timeout`` is ``VALET_STORAGE_TIMEOUT_SECONDS`` (default 5, the app's default). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import platform
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func
import requests
from azure.storage.blob import BlobServiceClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import samples
from tests.support.faultproxy import Fault, FaultProxy, Request
from valet import api
from valet.local.dev import provision
from valet.local.devidp import DevIssuer
from valet.local.emulator import Azurite
from valet.runtime import RuntimeHolder
from valet.storage import EmulatorCredential
from valet.validation.store import DecisionFailed

HOST_TRIES = 5


def grant(holder: RuntimeHolder, token: str) -> func.HttpResponse:
    body = json.dumps({"filename": "a.png", "contentType": "image/png", "size": len(samples.png())}).encode()
    return api.create_upload(holder, func.HttpRequest(
        method="POST", url="https://valet.example/api/uploads", body=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"}))


def apply(proxy: FaultProxy, mode: str) -> None:
    if mode == "down":
        proxy.down()
    else:
        proxy.inject({"reset": Fault.reset(), "503": Fault.unavailable(retry_after=30), "500": Fault.internal_error(),
                      "delay": Fault.delay(120)}[mode])


def time_to_503(env: dict[str, str], proxy: FaultProxy, token: str, mode: str) -> tuple[float, int, int]:
    apply(proxy, mode)
    before = proxy.requests
    started = time.monotonic()
    holder = RuntimeHolder(env)  # starts the warm-up fetch, as the app does at import
    response = grant(holder, token)
    elapsed = time.monotonic() - started
    proxy.heal()
    return elapsed, response.status_code, proxy.requests - before


def blob_requests(request: Request) -> bool:
    return "comp=userdelegationkey" not in request.path


def outage_tries(env: dict[str, str], direct: RuntimeHolder, proxy: FaultProxy, token: str, ca: str,
                 outage: int) -> tuple[int, float]:
    """Upload straight to Azurite, then run the validator as the host would until it decides."""
    response = grant(direct, token)
    assert response.status_code == 201, response.get_body()
    granted = json.loads(response.get_body())
    put = requests.put(granted["uploadUrl"], data=samples.png(), headers=granted["headers"], verify=ca, timeout=30)
    assert put.status_code == 201, put.text
    uploads = direct().settings.storage.uploads_container
    name = urlsplit(granted["blobUri"]).path.split(f"/{uploads}/", 1)[1]
    app = RuntimeHolder(env)
    proxy.inject(Fault.unavailable(retry_after=1), times=outage, match=blob_requests)
    started = time.monotonic()
    for tries in range(1, HOST_TRIES + 1):
        try:
            decision = app().validation.on_blob(uploads, name)
            assert decision is not None and decision.outcome.value == "accepted"
            return tries, time.monotonic() - started
        except DecisionFailed:
            continue
    return HOST_TRIES + 1, time.monotonic() - started  # poison


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5)
    parser.add_argument("--modes", default="down,reset,503,delay")
    parser.add_argument("--outages", default="2,3,6,9,12")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the app's warnings about the injected failures are expected

    with tempfile.TemporaryDirectory() as tmp, Azurite(Path(tmp) / "azurite") as azurite, DevIssuer() as issuer, \
            FaultProxy(azurite.blob_url, workdir=Path(tmp), upstream_ca=str(azurite.cert)) as proxy:
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        direct_env = {
            "VALET_STORAGE_ACCOUNT_URL": azurite.blob_url,
            "VALET_STORAGE_CREDENTIAL": "emulator",
            "VALET_STORAGE_CA_BUNDLE": str(azurite.cert),
            "VALET_GRANT_SIGNING_KEYS": f"bench:{key}",
            "VALET_AUTH_ISSUERS": issuer.settings_value(),
            "VALET_RATE_LIMIT_PER_MINUTE": "0",
            "VALET_STORAGE_TIMEOUT_SECONDS": f"{args.timeout:g}",
            "VALET_QUEUE_SERVICE_URL": azurite.queue_url,
        }
        provision(BlobServiceClient(azurite.blob_url, credential=EmulatorCredential(azurite.blob_url),
                                    connection_verify=str(azurite.cert)), direct_env, azurite.queue_url,
                  str(azurite.cert))
        assert proxy.ca_bundle is not None
        # The proxy fronts the blob service only: decision events are off in this benchmark of blob faults.
        env = {**direct_env, "VALET_STORAGE_ACCOUNT_URL": proxy.url, "VALET_STORAGE_CA_BUNDLE": proxy.ca_bundle,
               "VALET_DECISION_QUEUE": "none"}
        token = issuer.mint("bench-user")

        print(f"# bench/faults.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.python_version()}, "
              f"{platform.machine()}, runs={args.runs}, VALET_STORAGE_TIMEOUT_SECONDS={args.timeout:g}\n")
        print("| storage fault, no cached key | status | time to answer, median (max) | storage requests, max |")
        print("|---|---:|---:|---:|")
        for mode in args.modes.split(","):
            results = [time_to_503(env, proxy, token, mode) for _ in range(args.runs)]
            statuses = sorted({r[1] for r in results})
            times = [r[0] for r in results]
            print(f"| {mode} | {', '.join(map(str, statuses))} | {statistics.median(times):.2f} s "
                  f"({max(times):.2f} s) | {max(r[2] for r in results)} |")

        direct = RuntimeHolder(direct_env)
        print("\n| 503s in a row (blob requests) | blob-trigger tries to a decision | time |")
        print("|---:|---:|---:|")
        for outage in (int(n) for n in args.outages.split(",")):
            tries, elapsed = outage_tries(env, direct, proxy, token, str(azurite.cert), outage)
            shown = "poison" if tries > HOST_TRIES else str(tries)
            print(f"| {outage} | {shown} | {elapsed:.1f} s |")
            proxy.heal()
    return 0


if __name__ == "__main__":
    sys.exit(main())
