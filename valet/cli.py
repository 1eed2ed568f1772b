"""The ``valet`` command: ``valet demo``, ``valet dev``, ``valet upload``, ``valet init``, ``valet keys ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="valet", description="valet: valet-key upload grants for Azure Blob Storage")
    parser.add_argument("command", choices=["demo", "dev", "upload", "init", "keys"], help="what to do")
    if not args or args[0] not in {"demo", "dev", "upload", "init", "keys"}:
        parser.parse_args(args)  # prints usage / error and exits
    command, rest = args[0], args[1:]
    if command == "demo":
        from valet.demo import main as demo

        return demo()
    if command == "dev":
        from valet.dev import main as dev

        return dev(rest)
    if command == "upload":
        from valet.upload import main as upload

        return upload(rest)
    if command == "init":
        from valet.localsettings import main as init

        return init(rest)
    from valet.keys import main as keys

    return keys(rest)


if __name__ == "__main__":
    sys.exit(main())
