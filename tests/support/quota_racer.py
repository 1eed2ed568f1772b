"""One racing process for the multi-process quota test: ``python -m tests.support.quota_racer <json>``.

Its own quota store on the shared table (no memory shared with the other racers), ``threads`` threads
asking for ``grants`` grants between them once ``start`` (a wall-clock time) comes; prints one JSON line:
how many were granted, refused, failed (with the failures' types)."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from tests.support.quota import table_client
from valet.quotas import Account, Limits, ProfileQuota, QuotaExceeded, QuotaStore, Reservation


def main(raw: str) -> int:
    args = json.loads(raw)
    client = table_client(args["blob_url"], args["table_url"], args["ca"], args["table"])
    store = QuotaStore(client)
    quota = ProfileQuota("images", caller=Limits(**args["caller"]), tenant=Limits(**args["tenant"]))
    account = Account(*args["account"])
    outcome = {"granted": 0, "refused": 0, "failed": 0, "errors": []}
    lock = threading.Lock()

    def one(_: int) -> None:
        upload_id = str(uuid.uuid4())
        grant = Reservation(upload_id, args["size"], datetime.now(UTC) + timedelta(minutes=10), f"x/{upload_id}")
        try:
            store.reserve(account, quota, [grant])
            key = "granted"
        except QuotaExceeded:
            key = "refused"
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on any
            with lock:
                outcome["errors"].append(type(exc).__name__)  # type: ignore[union-attr]
            key = "failed"
        with lock:
            outcome[key] += 1  # type: ignore[operator]

    time.sleep(max(0.0, args["start"] - time.time()))
    with ThreadPoolExecutor(args["threads"]) as pool:
        list(pool.map(one, range(args["grants"])))
    print(json.dumps(outcome), flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
