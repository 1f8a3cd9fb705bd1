#!/usr/bin/env bash
# A lab on this machine for site.yml, in one of two forms:
#   LAB=docker  inventories/local: one k3s server and one agent as privileged systemd containers
#               from the locally built node image (tests/harness/build-node-image.sh)
#   LAB=vm      inventories/vm: three QEMU guests (one server, two agents) from a Debian image
#               built from Debian packages (tests/vm), KVM when it really works, else emulation
#
#   scripts/local-lab.sh check   say which lab this machine can run, and what is missing; exit 3
#                                when it cannot run one (no network for k3s, no runtime)
#   scripts/local-lab.sh lab     check, set up, bring the lab up and run site.yml on it (make lab)
#   scripts/local-lab.sh up | site | down | status
# LAB unset: containers where privileged containers work, else VMs. As root, missing Debian
# packages (QEMU, vde2, debootstrap) are installed; LAB_INSTALL=0 only names them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
image=${NODE_IMAGE:-seek-k3s-node:bookworm}
network=seek-lab
nodes=(seek-lab-server-1 seek-lab-agent-1)
vm_state=inventories/vm/.state
vm_guests=(seek-lab-server-1 seek-lab-agent-1 seek-lab-agent-2)
vm_ssh_ports=(2221 2222 2223)
qemu=${QEMU:-qemu-system-x86_64}
log() { printf 'local-lab: %s\n' "$*" >&2; }

# The k3s release the k3s role downloads (roles/k3s/defaults/main.yml), as tests/run.sh probes it.
# SEEK_K3S_LAB_PROBE_URL points the probe elsewhere (the tests use a loopback server).
k3s_url() {
  local base version
  base=$(sed -n 's/^k3s_release_url: //p' roles/k3s/defaults/main.yml)
  version=$(sed -n 's/^k3s_version: //p' roles/k3s/defaults/main.yml | sed 's/+/%2B/')
  echo "${SEEK_K3S_LAB_PROBE_URL:-$base/$version/sha256sum-amd64.txt}"
}

# Privileged containers: k3s runs containerd, mounts and iptables inside its node. Tried with
# the node image (no pull); prints the daemon's refusal on failure.
privileged_containers_work() {
  command -v docker >/dev/null 2>&1 || { echo "docker is not installed"; return 1; }
  docker info >/dev/null 2>&1 || { echo "the Docker engine does not answer"; return 1; }
  docker image inspect "$image" >/dev/null 2>&1 || { echo "no node image yet"; return 2; }
  local out
  if out=$(docker run --rm --privileged --network none "$image" true 2>&1); then return 0; fi
  echo "$out" | grep -m1 -o 'runc create failed: .*\|Error response from daemon: .*' | cut -c1-200
  return 1
}

# QEMU is there, or can be installed (as root with apt-get, unless LAB_INSTALL=0).
vm_possible() {
  command -v "$qemu" >/dev/null 2>&1 && return 0
  [ "${LAB_INSTALL:-1}" != 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && return 0
  return 1
}

# Prints the lab this machine can run (docker or vm); exit 3 with a message naming what is
# missing when it cannot run one. Checks the network first: without the k3s download nothing
# of site.yml can work, so it stops at once, before building or starting anything.
check() {
  local url probe missing=() why="" choice="" rc=0
  url=$(k3s_url)
  if ! probe=$(curl -fsSIL --max-time 10 "$url" 2>&1 >/dev/null); then
    missing+=("network for the k3s download: $url cannot be reached (${probe:-no answer}).
    site.yml downloads k3s and the SEEK, MySQL and Solr images: run make lab on a machine with
    internet access (or set k3s_airgap_dir to a directory holding the k3s release files)")
  fi
  if [ "${LAB:-}" != vm ]; then
    rc=0
    why=$(privileged_containers_work) || rc=$?
    if [ $rc -eq 2 ] && [ ${#missing[@]} -eq 0 ] && [ "$(id -u)" -eq 0 ]; then
      # The node image is built only now that the network is known to be there.
      tests/harness/build-node-image.sh >&2 || true
      rc=0
      why=$(privileged_containers_work) || rc=$?
    fi
    [ $rc -ne 0 ] || choice=docker
  fi
  if [ -z "$choice" ] && [ "${LAB:-}" != docker ]; then
    if vm_possible; then choice=vm; fi
  fi
  if [ -z "$choice" ] && [ ${#missing[@]} -eq 0 ]; then
    missing+=("a lab runtime: privileged containers do not work here (${why:-docker not probed})
    and QEMU ($qemu) is not installed; install qemu-system-x86, qemu-utils and vde2 for the VM
    lab, or use a machine where Docker runs privileged containers")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    {
      echo "make lab cannot run a lab here. Missing:"
      printf '  - %s\n' "${missing[@]}"
      [ -z "$choice" ] || [ "$rc" = 2 ] || echo "  (with that fixed it would run the ${choice} lab)"
    } >&2
    return 3
  fi
  echo "$choice"
}

need_packages() { # Debian packages, installed when missing (as root), else named
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || [ "${LAB_INSTALL:-1}" = 0 ]; then
    log "missing Debian packages: sudo apt-get install ${missing[*]}"
    return 1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

lab_kind() { # the lab to act on: LAB, else the one that is up, else what this machine can run
  if [ -n "${LAB:-}" ]; then echo "$LAB"
  elif [ -f "$vm_state/state.json" ]; then echo vm
  elif command -v docker >/dev/null 2>&1 && docker container inspect "${nodes[0]}" >/dev/null 2>&1; then echo docker
  else LAB="" check_runtime_only
  fi
}

check_runtime_only() { # like check, without the network probe (for up on an offline machine)
  local why
  if why=$(privileged_containers_work); then echo docker
  elif vm_possible; then echo vm
  else
    echo "no lab runtime here: privileged containers do not work (${why}) and QEMU is not installed" >&2
    return 3
  fi
}

up_docker() {
  local why
  tests/harness/ensure-docker.sh
  tests/harness/build-node-image.sh
  if ! why=$(privileged_containers_work); then
    log "the container lab needs privileged containers (k3s runs containerd, mounts and iptables in"
    log "its node) and this Docker refuses them: ${why}"
    log "use the VM lab instead: make lab-up LAB=vm"
    return 3
  fi
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
  echo "container lab up: make lab-site runs playbooks/site.yml -i inventories/local"
}

up_vm() {
  local args=() i
  need_packages qemu-system-x86 qemu-utils vde2 debootstrap openssh-client e2fsprogs
  if [ -f "$vm_state/state.json" ]; then
    python -m tests.vm status --state-dir "$vm_state"
    echo "VM lab already up (make lab-down removes it)"
    return 0
  fi
  for i in "${!vm_guests[@]}"; do
    args+=(--guest "${vm_guests[$i]}" --ssh-port "${vm_ssh_ports[$i]}")
    # The agents reach the API at 127.0.0.1:6443 like the host does (inventories/vm).
    [ "$i" -eq 0 ] || args+=(--api-proxy "${vm_guests[$i]}=192.168.77.11:6443")
  done
  python -m tests.vm up --build --state-dir "$vm_state" "${args[@]}" \
    --forward "${vm_guests[0]}:6443:6443" --forward "${vm_guests[0]}:8080:80" \
    --forward "${vm_guests[0]}:8443:443" \
    --memory "${VM_LAB_MEMORY:-4096}" --cpus "${VM_LAB_CPUS:-2}" >/dev/null
  python -m tests.vm status --state-dir "$vm_state"
  echo "VM lab up: make lab-site runs playbooks/site.yml -i inventories/vm"
}

up() {
  local kind
  kind=${LAB:-$(check_runtime_only)}
  case $kind in
    docker) up_docker ;;
    vm) up_vm ;;
    *) log "LAB must be docker or vm (got $kind)"; return 2 ;;
  esac
}

site() {
  local kind inventory
  kind=$(lab_kind)
  inventory=$([ "$kind" = vm ] && echo inventories/vm || echo inventories/local)
  ansible-playbook playbooks/site.yml -i "$inventory"
}

down() {
  if command -v docker >/dev/null 2>&1; then
    for node in "${nodes[@]}"; do
      docker rm -f "$node" >/dev/null 2>&1 || true
      docker volume rm "$node-k3s" >/dev/null 2>&1 || true
    done
    docker network rm "$network" >/dev/null 2>&1 || true
  fi
  python3 -m tests.vm down --state-dir "$vm_state"
  rm -rf inventories/local/artifacts inventories/vm/artifacts
  echo "lab removed"
}

status() {
  command -v docker >/dev/null 2>&1 && docker ps -a --filter "network=$network" --format '{{.Names}}\t{{.Status}}'
  python3 -m tests.vm status --state-dir "$vm_state"
}

lab() {
  local kind
  kind=$(check) || return $?
  log "lab: $kind"
  make setup
  LAB=$kind up
  LAB=$kind site
}

case ${1:-} in
  check) check ;;
  lab) lab ;;
  up) up ;;
  site) site ;;
  down) down ;;
  status) status ;;
  *) echo "usage: [LAB=docker|vm] $0 check|lab|up|site|down|status" >&2; exit 2 ;;
esac
