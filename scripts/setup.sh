#!/usr/bin/env bash
# Sets up everything valet needs on a fresh machine with Python 3.11 and Node/npm: a virtualenv in .venv
# with the package, its test tools, the load tool (locust) and the Python client (clients/python), checkov
# (the IaC analyzer for infra/) in its own .venv-checkov, and the pinned npm tools (Azurite) in node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' || {
  echo "valet needs Python 3.11 or 3.12 (found: $("$PYTHON" --version 2>&1))" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "valet needs Node.js 20+ and npm on PATH (for Azurite)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,test,bench]'
# The Python client is its own distribution (clients/python: requests only); `valet upload` and the demo use it.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ./clients/python
# checkov pins packaging<24, which pytest 9 cannot use, so it cannot share .venv (see the requirements file).
[ -x .venv-checkov/bin/python ] || "$PYTHON" -m venv .venv-checkov
.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/checkov-requirements.txt
npm ci --no-audit --no-fund --loglevel=error
