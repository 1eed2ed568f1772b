"""``python -m valet.local.grantshell grant.json``: shell assignments for a grant response, for curl users.

Prints ``UPLOAD_URL=...``, ``UPLOAD_HEADERS=(-H 'name: value' ...)`` and ``STATUS_URL=...``, quoted for
bash, so ``eval "$(python -m valet.local.grantshell grant.json)"`` followed by
``curl -X PUT "$UPLOAD_URL" "${UPLOAD_HEADERS[@]}" --data-binary @file`` uploads exactly as granted.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


def shell_assignments(grant: dict[str, object]) -> str:
    headers = grant.get("headers")
    if not isinstance(headers, dict) or "uploadUrl" not in grant:
        raise ValueError("not a grant response (no uploadUrl/headers)")
    pairs = " ".join(f"-H {shlex.quote(f'{k}: {v}')}" for k, v in headers.items())
    return "\n".join([
        f"UPLOAD_URL={shlex.quote(str(grant['uploadUrl']))}",
        f"UPLOAD_HEADERS=({pairs})",
        f"STATUS_URL={shlex.quote(str(grant.get('statusUrl', '')))}",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m valet.local.grantshell grant.json", file=sys.stderr)
        return 2
    try:
        print(shell_assignments(json.loads(Path(args[0]).read_text("utf-8"))))
    except (OSError, ValueError) as exc:
        print(f"valet.grantshell: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
