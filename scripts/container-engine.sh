#!/usr/bin/env bash
# A Docker engine for the container path of the tests (Azurite through testcontainers).
#
#   bash scripts/container-engine.sh start   -> prints a state folder when it started a daemon itself,
#                                             nothing when an engine already answers (left alone);
#                                             exits 3, with the reason on stderr, when it cannot
#                                             (no root, no apt-get, the daemon does not come up).
#   bash scripts/container-engine.sh stop [STATE]
#                                          -> removes the containers the test sessions left (label
#                                             valet.tests, session gone), waits (up to 15 min) for those
#                                             of a test run still going, stops the daemon in STATE by PID,
#                                             and fails if the machine's forwarding or firewall settings
#                                             differ from what they were before the start.
#
# Installs Debian's docker.io (and busybox-static, which scripts/azurite-image.sh needs) with apt when
# dockerd is missing. The daemon runs with --iptables=false --ip-forward=false --bridge=none, so it never
# touches the FORWARD policy, NAT rules or net.ipv4.ip_forward; containers use the host network.
set -euo pipefail

LABEL=valet.tests=azurite

log() { echo "container engine: $*" >&2; }

engine_answers() {
  command -v docker >/dev/null 2>&1 || return 1
  if command -v timeout >/dev/null 2>&1; then timeout 10 docker info >/dev/null 2>&1; else docker info >/dev/null 2>&1; fi
}

network_snapshot() {  # what must be the same before and after
  echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo unknown)"
  if command -v iptables >/dev/null 2>&1; then
    $sudo iptables -S 2>/dev/null || echo "iptables -S: not readable"
    $sudo iptables -t nat -S 2>/dev/null || true
  fi
}

sudo=""
if [ "$(id -u)" != 0 ] && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi

start() {
  if engine_answers; then exit 0; fi  # someone's engine (Docker Desktop, a system service): use it as is
  if [ "$(id -u)" != 0 ] && [ -z "$sudo" ]; then
    log "no Docker engine answers, and starting one needs root (or passwordless sudo)"; exit 3
  fi
  if ! command -v dockerd >/dev/null 2>&1 || ! [ -x /bin/busybox ]; then
    command -v apt-get >/dev/null 2>&1 || { log "no Docker engine answers and no apt-get to install one"; exit 3; }
    log "installing Debian's docker.io and busybox-static (once)..."
    if ! { DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq &&
           DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker.io busybox-static
         } >/tmp/valet-docker-install.log 2>&1; then
      log "could not install docker.io (log: /tmp/valet-docker-install.log)"; exit 3
    fi
  fi
  local state
  state="$(mktemp -d "${TMPDIR:-/tmp}/valet-engine.XXXXXX")"
  network_snapshot >"$state/network.before"
  # setsid: a Ctrl-C in the terminal reaches the test run, not the daemon; stop() ends it.
  $sudo setsid dockerd --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
    --host unix:///var/run/docker.sock >"$state/dockerd.log" 2>&1 </dev/null &
  echo $! >"$state/pid"
  local deadline=$((SECONDS + 30))
  until engine_answers; do
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      log "dockerd did not come up; its log:"; tail -n 20 "$state/dockerd.log" >&2
      stop "$state" >/dev/null 2>&1 || true
      exit 3
    fi
    sleep 0.2
  done
  echo "$state"
}

remove_leftovers() {  # removes test containers whose pytest session is gone; prints those still in use
  local id pid
  for id in $(docker ps -aq --filter "label=$LABEL"); do
    pid="$(docker inspect -f '{{index .Config.Labels "valet.tests.pid"}}' "$id" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then echo "$id"; else docker rm -f "$id" >/dev/null; fi
  done
}

stop() {
  local state="${1:-}"
  if engine_answers; then
    remove_leftovers >/dev/null
    # Another test run on this machine may be using the engine this run started: let it finish first.
    local waited=0
    while [ -n "$state" ] && [ -n "$(remove_leftovers)" ] && [ $waited -lt 900 ]; do
      [ $waited -eq 0 ] && log "waiting for another test run's Azurite container before stopping dockerd..."
      sleep 5; waited=$((waited + 5))
    done
    [ $waited -lt 900 ] || docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null
  fi
  [ -n "$state" ] && [ -f "$state/pid" ] || return 0
  local pid
  pid="$(cat "$state/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    $sudo kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then log "dockerd ($pid) did not stop in 30 s; killing it"; $sudo kill -KILL "$pid"; fi
  fi
  network_snapshot >"$state/network.after"
  if ! cmp -s "$state/network.before" "$state/network.after"; then
    log "the machine's forwarding/firewall settings changed while dockerd ran:"
    diff "$state/network.before" "$state/network.after" >&2 || true
    exit 1
  fi
  log "stopped dockerd ($pid); ip_forward and iptables rules are as before"
  rm -rf "$state"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start | stop [STATE]" >&2; exit 2 ;;
esac
