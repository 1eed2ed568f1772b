"""``valet-upload FILE``: the reference desktop client on the command line (see :mod:`valet_client.client`).

``valet upload`` in a valet checkout is this command with the checkout's defaults (:mod:`valet.local.upload`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from valet_client.client import EXIT_USAGE, UploadError, ValetClient, describe_quota
from valet_client.journal import default_folder


class Progress:
    """A bar with rate and ETA on a terminal; a line per 10 % otherwise. The rate counts the bytes sent by
    this run: a resumed upload's first report (what storage already held) is its starting point."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self._out, self._tty = out, tty
        self._started = time.monotonic()
        self._last_decile = -1
        self._base: int | None = None

    def __call__(self, sent: int, total: int) -> None:
        if self._base is None:
            self._base = sent if sent < total else 0
            self._started = time.monotonic()
        fraction = sent / total if total else 1.0
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = (sent - self._base) / elapsed
        eta = (total - sent) / rate if rate > 0 else 0.0
        if self._tty:
            bar = "#" * int(fraction * 30)
            self._out.write(f"\r[{bar:<30}] {fraction:6.1%}  {rate / 2**20:7.1f} MiB/s  ETA {eta:5.0f} s")
            if sent >= total:
                self._out.write("\n")
            self._out.flush()
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            print(f"uploaded {sent} of {total} bytes ({fraction:.0%}, {rate / 2**20:.1f} MiB/s)", file=self._out)


# Where the credential comes from when no flag names one, first match wins: what the user set beats the
# development credentials `valet dev` writes to .valet/dev.env; within each pair the API key comes first.
CREDENTIAL_ENV = (("api_key", "VALET_API_KEY"), ("token", "VALET_TOKEN"),
                  ("api_key", "VALET_DEV_API_KEY"), ("token", "VALET_DEV_TOKEN"))


def credential(token: str | None, api_key: str | None, env: dict[str, str]) -> tuple[str | None, str | None]:
    """``(token, api_key)`` to send, one of them set at most: a flag on the command line wins over every
    environment variable; otherwise the first of :data:`CREDENTIAL_ENV` that is set."""
    if token or api_key:
        return token or None, api_key or None
    for kind, name in CREDENTIAL_ENV:
        if env.get(name):
            return (env[name], None) if kind == "token" else (None, env[name])
    return None, None


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, environ: dict[str, str] | None = None,
         prog: str = "valet-upload", local_ca: Path | None = None) -> int:
    """Exit codes as :mod:`valet_client.client` lists them. ``local_ca``: a local emulator's certificate,
    used for a loopback ``http://127.0.0.1`` service when it exists and no CA is given."""
    out = out or sys.stdout
    env = dict(os.environ if environ is None else environ)
    parser = argparse.ArgumentParser(prog=prog, description="Upload a file through a valet grant")
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", default=env.get("VALET_URL"), help="valet base URL (env VALET_URL)")
    parser.add_argument("--token", help="bearer token (env VALET_TOKEN, VALET_DEV_TOKEN)")
    parser.add_argument("--api-key", help="API key (env VALET_API_KEY, VALET_DEV_API_KEY)")
    parser.add_argument("--profile")
    parser.add_argument("--content-type")
    parser.add_argument("--sha256", action="store_true", help="compute and declare the file's sha256")
    parser.add_argument("--mode", choices=["auto", "single", "blocks"], default="auto")
    parser.add_argument("--storage-ca", default=env.get("VALET_STORAGE_CA_BUNDLE"),
                        help="CA file for a local emulator's certificate (env VALET_STORAGE_CA_BUNDLE"
                        + ("; default: .valet's when present)" if local_ca else ")"))
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the validator's decision")
    parser.add_argument("--download-url", action="store_true",
                        help="once accepted, print a short-lived read URL for the file (a credential: keep it private)")
    parser.add_argument("--journal-dir", type=Path, default=default_folder(env),
                        help="where block uploads keep their resume journal, so the same command run again "
                        "after an interruption sends only the missing blocks (env VALET_UPLOAD_JOURNAL_DIR; "
                        "default: ~/.cache/valet-upload)")
    parser.add_argument("--quiet", action="store_true")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else 0
    if not args.url:
        print(f"{prog}: give --url or set VALET_URL", file=sys.stderr)
        return EXIT_USAGE
    if not args.file.is_file():
        print(f"{prog}: {args.file} is not a file", file=sys.stderr)
        return EXIT_USAGE
    if args.token and args.api_key:
        print(f"{prog}: give --token or --api-key, not both", file=sys.stderr)
        return EXIT_USAGE
    token, api_key = credential(args.token, args.api_key, env)
    ca = args.storage_ca
    if ca is None and local_ca is not None and local_ca.exists() and args.url.startswith("http://127.0.0.1"):
        ca = str(local_ca)
    client = ValetClient(args.url.rstrip("/"), token=token, api_key=api_key,
                         storage_verify=ca or True)
    progress = None if args.quiet else Progress(out, tty=out.isatty())
    try:
        result = client.upload(args.file, content_type=args.content_type, profile=args.profile,
                               sha256=args.sha256, mode=args.mode, progress=progress, wait=not args.no_wait,
                               journal_dir=args.journal_dir)
    except UploadError as exc:
        print(f"{prog}: {exc}" + (f" ({exc.code})" if exc.code else ""), file=sys.stderr)
        return exc.exit_code
    reason = f" ({result.reason})" if result.reason else ""
    print(f"{args.file.name}: {result.status}{reason}  upload {result.upload_id}, {result.mode} upload", file=out)
    if result.resumed_blocks:
        print(f"resumed: {result.resumed_blocks} blocks were already stored; sent {result.bytes_sent} bytes",
              file=out)
    if not args.quiet:
        _show_quota(client, result.profile, out)
    if args.download_url and result.status == "accepted":
        try:
            link = client.download(result.status_url)
        except UploadError as exc:
            print(f"{prog}: {exc}" + (f" ({exc.code})" if exc.code else ""), file=sys.stderr)
            return exc.exit_code
        print(f"download: {link['downloadUrl']}  (until {link['expiresOn']})", file=out)
    return result.exit_code


def _show_quota(client: ValetClient, profile: str | None, out: TextIO) -> None:
    """What remains of the quotas of the profile just used (nothing when it has none)."""
    try:
        quotas = client.quota()
    except UploadError:
        return  # the upload's outcome stands; the quota is extra information
    for quota in quotas:
        if profile is None or quota.get("profile") == profile:
            print(f"quota: {describe_quota(quota)}", file=out)
