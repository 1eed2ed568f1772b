#!/usr/bin/env bash
# Test setup for the browser tests: Debian's Chromium from the package registry (no browser downloads; a
# test tool's own browser download fails on machines without general internet access). Best effort: if
# Chromium cannot be installed here, the browser tests report themselves as skipped with the reason.
# Set VALET_SKIP_BROWSER_INSTALL=1 to leave the machine alone, or VALET_CHROMIUM to use another binary.
set -uo pipefail
chromium="${VALET_CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] && exit 0
[ "${VALET_SKIP_BROWSER_INSTALL:-}" = 1 ] && { echo "browser tests: Chromium not installed (VALET_SKIP_BROWSER_INSTALL=1)" >&2; exit 0; }
command -v apt-get >/dev/null 2>&1 || { echo "browser tests: no apt-get here to install Chromium; they will be skipped" >&2; exit 0; }
sudo=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "browser tests: installing Chromium needs root (apt-get install chromium); they will be skipped" >&2; exit 0
  fi
fi
echo "browser tests: installing Debian's chromium package (once)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium; } >/tmp/valet-chromium-install.log 2>&1; then
  echo "browser tests: could not install Chromium (log: /tmp/valet-chromium-install.log); they will be skipped" >&2
fi
exit 0
