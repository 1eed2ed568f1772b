"""``valet audit``: read the audit trail, locally (Azurite) or in Azure with the operator's own identity.

The account and container come from the arguments, else from the environment over
``local.settings.json`` (``VALET_STORAGE_ACCOUNT_URL``, ``VALET_AUDIT_CONTAINER``). A loopback URL uses
the emulator credential; any other uses ``DefaultAzureCredential`` (``az login``): the operator needs
Storage Blob Data Reader on the audit container, nothing more. The tool only reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from valet.audit import AuditReader
from valet.audit.settings import AUDIT_CONTAINER
from valet.local.localsettings import effective_environment
from valet.settings import is_loopback_url
from valet.storage import EmulatorCredential


def _time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {value}") from None
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="valet audit", description="Read valet's audit trail (newest first).")
    p.add_argument("--upload", default="", help="only records of this upload id")
    p.add_argument("--caller", default="", help="only records where this caller id acted or owned the upload")
    p.add_argument("--action", default="", help="only this action (e.g. grant, decision, review)")
    p.add_argument("--since", type=_time, help="from this time (default: 24 hours before --until)")
    p.add_argument("--until", type=_time, help="up to this time (default: now)")
    p.add_argument("--limit", type=int, default=100, help="at most this many records (default 100)")
    p.add_argument("--json", action="store_true", help="one JSON record per line")
    p.add_argument("--account-url", help="blob endpoint (default: VALET_STORAGE_ACCOUNT_URL)")
    p.add_argument("--container", help="audit container (default: VALET_AUDIT_CONTAINER or 'audit')")
    return p


def _client(url: str, environ: Mapping[str, str]) -> BlobServiceClient:
    credential: TokenCredential
    if is_loopback_url(url):
        credential = EmulatorCredential(url)
        return BlobServiceClient(url, credential=credential,
                                 connection_verify=environ.get("VALET_STORAGE_CA_BUNDLE") or True)
    from azure.identity import DefaultAzureCredential

    return BlobServiceClient(url, credential=DefaultAzureCredential())


def line(doc: Mapping[str, Any]) -> str:
    actor = doc.get("actor") if isinstance(doc.get("actor"), dict) else {}
    fields = [str(doc.get("at", "")), str(doc.get("action", "")), str(actor.get("caller", "-")),  # type: ignore[union-attr]
              str(doc.get("uploadId") or "-"), str(doc.get("outcome") or "-")]
    if doc.get("reason"):
        fields.append(json.dumps(doc["reason"], ensure_ascii=False))
    return "  ".join(fields)


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    env = effective_environment() if environ is None else dict(environ)
    url = args.account_url or env.get("VALET_STORAGE_ACCOUNT_URL")
    if not url:
        print("valet audit: no account: pass --account-url or set VALET_STORAGE_ACCOUNT_URL", file=sys.stderr)
        return 2
    container = args.container or env.get(AUDIT_CONTAINER) or "audit"
    until = args.until or datetime.now(UTC)
    since = args.since or until - timedelta(hours=24)
    if since > until or not 1 <= args.limit <= 100_000:
        print("valet audit: --since must be before --until; --limit 1 to 100000", file=sys.stderr)
        return 2
    service = _client(url, env)
    try:
        result = AuditReader(service.get_container_client(container)).query(
            since=since, until=until, upload=args.upload, caller=args.caller, action=args.action,
            limit=args.limit)
    except AzureError as exc:
        print(f"valet audit: cannot read {container}: {type(exc).__name__} "
              f"{getattr(exc, 'error_code', '') or ''}".rstrip(), file=sys.stderr)
        return 1
    finally:
        service.close()
    for doc in result.records:
        print(json.dumps(doc, separators=(",", ":")) if args.json else line(doc), file=out)
    if result.truncated:
        print("valet audit: stopped after reading the most blobs allowed; narrow --since/--until",
              file=sys.stderr)
    return 0
