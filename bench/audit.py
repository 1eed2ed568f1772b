"""What an audit record costs the grant path: ``AuditTrail.record`` (build, scrub, serialise, buffer) per
call, and how many storage requests the flusher made for them, against a real Azurite started here.

    .venv/bin/python bench/audit.py [--rounds 7] [--records 20000] [--seconds 5]

Prints medians over the rounds: microseconds per record() call (as fast as possible), and the flusher's
appends per second while records arrive at a steady 1,000 per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from valet.audit import Actor, AppendStore, AuditTrail
from valet.caller import Caller
from valet.local.emulator import Azurite
from valet.storage import EmulatorCredential

CALLER = Caller(kind="bearer", issuer="https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0",
                subject="aaaaaaaa-0000-0000-0000-000000000001", tenant="11111111-1111-1111-1111-111111111111")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Azurite(Path(tmp)) as azurite:
        service = BlobServiceClient(azurite.blob_url, credential=EmulatorCredential(azurite.blob_url),
                                    connection_verify=str(azurite.cert))
        per_call, per_second = [], []
        actor = Actor.of(CALLER, "203.0.113.9")
        for round_no in range(args.rounds):
            container = service.create_container(f"audit-bench-{round_no}")
            trail = AuditTrail(AppendStore(container), max_records=1_000_000)
            started = time.perf_counter()
            for i in range(args.records):  # as fast as the caller can: the cost per call
                trail.record("grant", actor=actor, upload_id=f"019aac2f-0000-7000-8000-{i:012d}",
                             data={"profile": "images", "size": 12345, "contentType": "image/png"})
            per_call.append((time.perf_counter() - started) / args.records * 1e6)
            trail.close()
            trail = AuditTrail(AppendStore(container), max_records=1_000_000)  # a fresh instance, empty buffer
            assert trail.flusher is not None
            before = trail.flusher.appends
            started = time.perf_counter()
            sent = 0
            while (now := time.perf_counter() - started) < args.seconds:  # then a steady 1,000 records/s
                if sent < now * 1000:
                    trail.record("grant", actor=actor, upload_id="019aac2f-0000-7000-8000-000000000000")
                    sent += 1
                else:
                    time.sleep(0.0005)
            per_second.append((trail.flusher.appends - before) / args.seconds)
            trail.close()
        print("| measure | median | runs |")
        print("|---|---|---|")
        print(f"| `AuditTrail.record` per call | {statistics.median(per_call):.1f} µs | "
              f"{args.rounds} x {args.records} |")
        print(f"| flusher appends per second at 1,000 records/s | {statistics.median(per_second):.2f} | "
              f"{args.rounds} x {args.seconds:g} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
