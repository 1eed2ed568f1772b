"""``keytool``: manage valet API keys (create, list, revoke, rotate).

    python -m valet.auth.keytool create --owner billing-svc --name nightly [--tenant T]
                                        [--scope Uploads.Write ...] [--expires-days 90]
    python -m valet.auth.keytool list [--owner billing-svc]
    python -m valet.auth.keytool revoke <key-id>
    python -m valet.auth.keytool rotate <key-id> [--overlap-hours 24] [--expires-days 90]

``create``/``rotate`` print the new key once; it is not stored and cannot be shown again. ``list``
never shows keys or hashes. The store comes from ``store_factory(settings)`` (wired by the app).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TextIO

from valet.errors import ValetError

from . import apikeys
from .keystore import KeyExists, KeyRecord, KeyStore, KeyStoreError
from .settings import APIKEY_PEPPER, AuthSettings

StoreFactory = Callable[[AuthSettings], KeyStore]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keytool", description="Manage valet API keys")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--owner", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--tenant")
    create.add_argument("--scope", action="append", dest="scopes")
    create.add_argument("--expires-days", type=float)
    listing = sub.add_parser("list", help="list key records (never keys or hashes)")
    listing.add_argument("--owner")
    revoke = sub.add_parser("revoke", help="revoke a key now")
    revoke.add_argument("key_id")
    rotate = sub.add_parser("rotate", help="new key for the same owner/name; old one may overlap")
    rotate.add_argument("key_id")
    rotate.add_argument("--overlap-hours", type=float, help="expire the old key after this many hours")
    rotate.add_argument("--expires-days", type=float)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    store_factory: StoreFactory | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        settings = AuthSettings.from_env(os.environ if environ is None else environ)
        if store_factory is None:
            print("error: no key store configured", file=out)
            return 2
        store = store_factory(settings)
        now = int(clock())
        if args.command == "create":
            return _create(store, settings, out, now, args.owner, args.name, args.tenant,
                           frozenset(args.scopes or settings.required_roles), args.expires_days)
        if args.command == "list":
            return _list(store, out, now, args.owner)
        record = store.get(args.key_id) if apikeys.is_key_id(args.key_id) else None
        if record is None:
            print(f"error: no key with id {args.key_id}", file=out)
            return 1
        if args.command == "revoke":
            store.update(replace(record, revoked_at=record.revoked_at or now))
            print(f"revoked {record.key_id}", file=out)
            return 0
        # rotate
        code = _create(store, settings, out, now, record.owner, record.name, record.tenant,
                       record.scopes, args.expires_days)
        if code == 0 and args.overlap_hours is not None:
            old_expiry = now + int(args.overlap_hours * 3600)
            if record.expires is None or record.expires > old_expiry:
                store.update(replace(record, expires=old_expiry))
            print(f"old key {record.key_id} expires at {old_expiry}", file=out)
        return code
    except (ValetError, KeyStoreError) as exc:
        print(f"error: {exc}", file=out)
        return 1


def _create(
    store: KeyStore,
    settings: AuthSettings,
    out: TextIO,
    now: int,
    owner: str,
    name: str,
    tenant: str | None,
    scopes: frozenset[str],
    expires_days: float | None,
) -> int:
    if settings.apikey_pepper is None:
        print(f"error: {APIKEY_PEPPER} is not set", file=out)
        return 2
    for _ in range(3):
        key, parsed = apikeys.generate()
        record = KeyRecord(
            key_id=parsed.kid,
            name=name,
            owner=owner,
            tenant=tenant,
            scopes=scopes,
            secret_hash=apikeys.hash_secret(settings.apikey_pepper, parsed),
            created=now,
            expires=None if expires_days is None else now + int(expires_days * 86400),
        )
        try:
            store.put(record)
        except KeyExists:
            continue
        print(f"key id: {record.key_id}", file=out)
        print(f"api key (shown once, store it now): {key}", file=out)
        return 0
    print("error: could not allocate a key id", file=out)
    return 1


def _list(store: KeyStore, out: TextIO, now: int, owner: str | None) -> int:
    print("key_id\tname\towner\ttenant\tscopes\tstate\tcreated\texpires", file=out)
    for r in store.list(owner):
        print(
            "\t".join(
                [r.key_id, r.name, r.owner, r.tenant or "-", " ".join(sorted(r.scopes)), r.state(now),
                 str(r.created), "-" if r.expires is None else str(r.expires)]
            ),
            file=out,
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
