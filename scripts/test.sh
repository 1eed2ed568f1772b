#!/usr/bin/env bash
# The README's second command: set up (idempotent), then run every test tier against a real Azurite
# that the test session starts itself. Extra arguments go to pytest.
#
# Azurite runs in a container (testcontainers) when a Docker engine answers. Where none answers and this
# script may install and start one (root or passwordless sudo, apt-get), it does, builds the Azurite image
# from the pinned npm package when the engine has none, and stops that daemon (by its PID) and removes the
# test containers at the end. Where it cannot, the tests use the npm Azurite subprocess, and it says so.
# VALET_TEST_AZURITE=process skips all of this; =container makes a missing engine an error.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh  # Debian's Chromium for the browser tests (skipped, with the reason, without it)

mode="${VALET_TEST_AZURITE:-auto}"
engine_state=""
finish() {
  local rc=$?
  [ -z "$engine_state" ] || bash scripts/container-engine.sh stop "$engine_state" || rc=1
  exit "$rc"
}
fall_back() {  # the container path cannot be used here: say why, then use the subprocess or fail
  if [ "$mode" = container ]; then echo "azurite: VALET_TEST_AZURITE=container, but $1" >&2; exit 1; fi
  echo "azurite: $1; the tests use the npm Azurite subprocess instead" >&2
  export VALET_TEST_AZURITE=process
}
if [ -z "${VALET_TEST_STORAGE_URL:-}" ] && [ "$mode" != process ]; then
  trap finish EXIT
  trap 'exit 130' INT TERM
  if engine_state="$(bash scripts/container-engine.sh start)"; then
    # The tests need Azurite with valet's patch (create-only block uploads), which Microsoft's image lacks:
    # build it here from the patched npm package (a no-op when the engine has it).
    if [ -z "${VALET_TEST_AZURITE_IMAGE:-}" ]; then
      bash scripts/azurite-image.sh || fall_back "the Azurite image could not be built (see above)"
    fi
  else
    fall_back "no Docker engine here (see above)"
  fi
fi

if [ "$#" -eq 0 ] || [ "${VALET_STATIC_CHECKS:-}" = 1 ]; then  # a full run checks style and types too
  .venv/bin/ruff check valet function_app.py bench tests
  .venv/bin/mypy
fi
.venv/bin/python -m pytest "$@"
