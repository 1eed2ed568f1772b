#!/usr/bin/env bash
# The README's first command: set up (idempotent), then run the product end to end on this machine
# (Azurite + the app's own functions + a client), print each outcome, and stop everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m valet demo
