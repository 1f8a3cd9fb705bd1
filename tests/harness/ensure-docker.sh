#!/usr/bin/env bash
# Make a Docker engine available to the tests: install Debian's docker.io when dockerd is
# missing, start dockerd when it is not answering, and wait until it does.
# Idempotent: on a machine where Docker already answers it changes nothing.
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }
timeout_s=${DOCKER_START_TIMEOUT:-60}

if docker info >/dev/null 2>&1; then
  log "the Docker engine already answers"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "dockerd is missing: installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends docker.io >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting dockerd"
  # systemd is not PID 1 on every CI machine, so dockerd is started directly.
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi

for _ in $(seq "$timeout_s"); do
  if docker info >/dev/null 2>&1; then
    log "the Docker engine answers ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within ${timeout_s}s; last lines of /var/log/dockerd.log:"
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
