#!/usr/bin/env bash
# Sets up everything valet needs on a fresh machine with Python 3.11 and Node/npm: a virtualenv in .venv
# with the package, its test tools, the load tool (locust) and the Python client (clients/python), checkov
# (the IaC analyzer for infra/) in its own .venv-checkov, and the pinned npm tools (Azurite) in node_modules.
#
# Idempotent and quick the second time: each part is installed only when what it was installed from
# changed. A stamp (sha256 of the files that decide the part, and the Python version) is written after a
# successful install, next to what it describes; a part is skipped while its stamp matches and what it
# installed is still there. VALET_SETUP_FORCE=1 installs everything again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' || {
  echo "valet needs Python 3.11 or 3.12 (found: $("$PYTHON" --version 2>&1))" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "valet needs Node.js 20+ and npm on PATH (for Azurite)" >&2; exit 1; }
PIP=(-m pip install --quiet --disable-pip-version-check)

fingerprint() {  # sha256 of the files that decide a part, and of the interpreter it is installed for
  "$PYTHON" -c 'import hashlib, sys
h = hashlib.sha256(sys.version.encode())
for name in sys.argv[1:]:
    h.update(name.encode() + b"\0" + open(name, "rb").read() + b"\0")
print(h.hexdigest())' "$@"
}
current() {  # stamp file, fingerprint: is the part installed from exactly these files?
  [ "${VALET_SETUP_FORCE:-}" != 1 ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

# The app, its tools and the client, editable from this checkout (a venv copied from another checkout
# would point there: then it is installed again).
app_stamp=.venv/.valet-setup
app_print="$(fingerprint pyproject.toml clients/python/pyproject.toml scripts/setup.sh)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if current "$app_stamp" "$app_print" && .venv/bin/python - "$PWD" <<'EOF'
import importlib.util, pathlib, sys
here = pathlib.Path(sys.argv[1]).resolve()
specs = {name: importlib.util.find_spec(name) for name in ("valet", "valet_client", "pytest", "locust", "waitress")}
ok = all(specs.values()) and all(here in pathlib.Path(specs[n].origin).resolve().parents for n in ("valet", "valet_client"))
sys.exit(0 if ok else 1)
EOF
then
  echo "setup: .venv is up to date (pyproject.toml files unchanged)"
else
  rm -f "$app_stamp"
  .venv/bin/python "${PIP[@]}" --upgrade pip
  .venv/bin/python "${PIP[@]}" -e '.[dev,test,bench]'
  # The Python client is its own distribution (clients/python: requests only); `valet upload` and the demo use it.
  .venv/bin/python "${PIP[@]}" -e ./clients/python
  echo "$app_print" > "$app_stamp"
fi

# checkov pins packaging<24, which pytest 9 cannot use, so it cannot share .venv (see the requirements file).
checkov_stamp=.venv-checkov/.valet-setup
checkov_print="$(fingerprint scripts/checkov-requirements.txt)"
[ -x .venv-checkov/bin/python ] || "$PYTHON" -m venv .venv-checkov
if current "$checkov_stamp" "$checkov_print" && [ -x .venv-checkov/bin/checkov ]; then
  echo "setup: .venv-checkov is up to date (scripts/checkov-requirements.txt unchanged)"
else
  rm -f "$checkov_stamp"
  .venv-checkov/bin/python "${PIP[@]}" -r scripts/checkov-requirements.txt
  echo "$checkov_print" > "$checkov_stamp"
fi

# npm ci always starts over (it deletes node_modules), so it runs only when the lock file or package.json
# changed since the last successful run; the stamp lives inside node_modules, so it goes when they go.
npm_stamp=node_modules/.valet-setup
npm_print="$(fingerprint package.json package-lock.json)"
if current "$npm_stamp" "$npm_print" && [ -f node_modules/azurite/package.json ] && [ -f node_modules/.package-lock.json ]; then
  echo "setup: node_modules is up to date (package-lock.json unchanged)"
else
  npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_print" > "$npm_stamp"
fi
