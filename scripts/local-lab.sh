#!/usr/bin/env bash
# A small lab on this machine's Docker for inventories/local: one k3s server and one agent as
# systemd containers from the locally built node image (tests/harness/build-node-image.sh).
#   scripts/local-lab.sh up | down | status
# k3s runs containerd, mounts and iptables inside its node, so the lab containers are
# privileged: run this on a workstation or lab VM, not on a shared host.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${NODE_IMAGE:-seek-k3s-node:bookworm}
network=seek-lab
nodes=(seek-lab-server-1 seek-lab-agent-1)

up() {
  tests/harness/ensure-docker.sh
  tests/harness/build-node-image.sh
  docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
  for node in "${nodes[@]}"; do
    if docker container inspect "$node" >/dev/null 2>&1; then
      docker start "$node" >/dev/null
    else
      docker run -d --name "$node" --hostname "$node" --network "$network" --privileged \
        --cgroupns=host --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v /lib/modules:/lib/modules:ro \
        -v "$node-k3s:/var/lib/rancher/k3s" \
        "$image" /lib/systemd/systemd >/dev/null
    fi
    echo "$node: $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$node")"
  done
  echo "lab up: run make lab-site (ansible-playbook playbooks/site.yml -i inventories/local)"
}

down() {
  for node in "${nodes[@]}"; do
    docker rm -f "$node" >/dev/null 2>&1 || true
    docker volume rm "$node-k3s" >/dev/null 2>&1 || true
  done
  docker network rm "$network" >/dev/null 2>&1 || true
  rm -rf inventories/local/artifacts
  echo "lab removed"
}

status() {
  docker ps -a --filter "network=$network" --format '{{.Names}}\t{{.Status}}'
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
