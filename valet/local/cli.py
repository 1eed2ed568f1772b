"""The ``valet`` command: ``valet demo``, ``valet dev``, ``valet upload``, ``valet init``, ``valet keys ...``,
``valet audit ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

DEV_EXTRA_MODULES = frozenset({"waitress"})  # what the "dev" extra of pyproject.toml installs
CLIENT_MODULE = "valet_client"  # the client's own distribution, clients/python (scripts/setup.sh installs it)


def _without_dev_extra(command: str, exc: ModuleNotFoundError) -> int:
    """``valet dev``/``valet demo``/``valet upload`` without the development extra or the client: say what
    to install, no traceback."""
    module = (exc.name or "").split(".")[0]
    if module == CLIENT_MODULE:
        print(f"valet {command}: this command needs the Python client (missing module '{module}').\n"
              "  Install it with:  pip install -e ./clients/python   (in a checkout)", file=sys.stderr)
        return 2
    if module not in DEV_EXTRA_MODULES:
        raise exc
    print(f"valet {command}: this command needs the development extra (missing module '{exc.name}').\n"
          "  Install it with:  pip install -e '.[dev]'   (in a checkout; or pip install 'valet[dev]')",
          file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="valet", description="valet: valet-key upload grants for Azure Blob Storage")
    parser.add_argument("command", choices=["demo", "dev", "upload", "init", "keys", "audit"], help="what to do")
    if not args or args[0] not in {"demo", "dev", "upload", "init", "keys", "audit"}:
        parser.parse_args(args)  # prints usage / error and exits
    command, rest = args[0], args[1:]
    if command == "demo":
        try:
            from valet.local.demo import main as demo
        except ModuleNotFoundError as exc:
            return _without_dev_extra(command, exc)
        return demo()
    if command == "dev":
        try:
            from valet.local.dev import main as dev
        except ModuleNotFoundError as exc:
            return _without_dev_extra(command, exc)
        return dev(rest)
    if command == "upload":
        try:
            from valet.local.upload import main as upload
        except ModuleNotFoundError as exc:
            return _without_dev_extra(command, exc)
        return upload(rest)
    if command == "init":
        from valet.local.localsettings import main as init

        return init(rest)
    if command == "audit":
        from valet.local.audit import main as audit

        return audit(rest)
    from valet.local.keys import main as keys

    return keys(rest)


if __name__ == "__main__":
    sys.exit(main())
