"""``local.settings.json``, read the way Azure Functions Core Tools reads it, and ``valet init``.

Core Tools puts every ``Values`` entry into the worker's environment, and real environment variables
take precedence. ``valet init`` copies ``local.settings.sample.json`` to ``local.settings.json`` and fills
in the development secrets (grant signing key, API key pepper) with fresh random values, so no secret is
ever committed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from valet.local.emulator import PROJECT_ROOT

SAMPLE = "local.settings.sample.json"
LOCAL = "local.settings.json"


def _random_b64() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


GENERATED = {
    "VALET_GRANT_SIGNING_KEYS": lambda: "dev1:" + _random_b64(),
    "VALET_APIKEY_PEPPER": _random_b64,
}


def read_values(path: Path) -> dict[str, str]:
    doc = json.loads(path.read_text("utf-8"))
    values = doc.get("Values", {})
    if not isinstance(values, dict):
        raise ValueError(f"{path}: 'Values' must be an object")
    return {str(k): str(v) for k, v in values.items()}


def effective_environment(root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``local.settings.json`` (or the sample when missing) overlaid by the real environment."""
    path = root / LOCAL if (root / LOCAL).exists() else root / SAMPLE
    merged = read_values(path)
    merged.update(os.environ if environ is None else environ)
    ca = merged.get("VALET_STORAGE_CA_BUNDLE")
    if ca and not Path(ca).is_absolute():
        merged["VALET_STORAGE_CA_BUNDLE"] = str(root / ca)
    return merged


def init(root: Path = PROJECT_ROOT, *, force: bool = False) -> Path:
    target = root / LOCAL
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; use --force to replace it")
    doc = json.loads((root / SAMPLE).read_text("utf-8"))
    values = doc["Values"]
    for name, make in GENERATED.items():
        if not values.get(name) or str(values[name]).startswith("<"):
            values[name] = make()
    target.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    target.chmod(0o600)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="valet init", description="Create local.settings.json for local runs")
    parser.add_argument("--force", action="store_true", help="replace an existing local.settings.json")
    args = parser.parse_args(argv)
    try:
        path = init(force=args.force)
    except FileExistsError as exc:
        print(f"valet init: {exc}")
        return 1
    print(f"wrote {path} with freshly generated development secrets (never commit it)")
    return 0
