#!/usr/bin/env bash
# The README's second command: set up (idempotent), then run every test tier against a real Azurite
# that the test session starts itself. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
