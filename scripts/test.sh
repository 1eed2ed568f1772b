#!/usr/bin/env bash
# The README's second command: set up (idempotent), then run every test tier against a real Azurite
# that the test session starts itself. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh  # Debian's Chromium for the browser tests (skipped, with the reason, without it)
if [ "$#" -eq 0 ] || [ "${VALET_STATIC_CHECKS:-}" = 1 ]; then  # a full run checks style and types too
  .venv/bin/ruff check valet function_app.py bench tests
  .venv/bin/mypy
fi
exec .venv/bin/python -m pytest "$@"
