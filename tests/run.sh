#!/usr/bin/env bash
# The whole test suite, as CI runs it (`make test`). Each step prints a header and its time;
# every step runs even when an earlier one failed, and the script exits non-zero if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1

failed=()
passed=0
step() { # step NAME COMMAND...
  local name=$1 start rc
  shift
  printf '\n==== %s\n' "$name"
  start=$(date +%s)
  "$@"
  rc=$?
  printf '==== %s: %s in %ss\n' "$name" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")" "$(($(date +%s) - start))"
  if [ $rc -eq 0 ]; then passed=$((passed + 1)); else failed+=("$name"); fi
}

syntax_check() {
  local rc=0 playbook inventory
  for inventory in inventories/*/; do
    for playbook in playbooks/*.yml; do
      ansible-playbook --syntax-check -i "$inventory" "$playbook" >/dev/null 2>/tmp/syntax.$$ ||
        { rc=1; echo "syntax-check failed: $playbook with $inventory"; cat /tmp/syntax.$$; }
    done
    echo "syntax-check: $(ls playbooks/*.yml | wc -l) playbooks with $inventory"
  done
  rm -f /tmp/syntax.$$
  return $rc
}

# The scenarios that download k3s (and, for `full`, the SEEK, MySQL and Solr images) are run by
# users' CI, one job each (.github/workflows/ci.yml); make test never runs them whole, wherever it
# runs. Here they run inside the workflow under act, up to the k3s download (the last step).
network_scenarios=(k3s k3s-ha k3s-upgrade full)

network_syntax() {
  local scenario
  for scenario in "${network_scenarios[@]}"; do
    [ -d "molecule/$scenario" ] || continue
    molecule syntax -s "$scenario" || return 1
  done
}

step "host set-up (Debian packages, Docker engine, node image)" tests/setup-host.sh
step "yamllint --strict" yamllint --strict .
step "ansible-lint (production profile)" ansible-lint
step "syntax-check of every playbook with every inventory" syntax_check
step "molecule syntax of the networked scenarios" network_syntax
step "workflow lint (actionlint, zizmor)" tests/lint-workflows.sh
# Two workers (pytest-xdist), a test file each at a time: files keep their order and module
# fixtures; each worker starts its own control plane, MariaDB and S3 servers on free ports. On
# 2 cores this took pytest from 34.5 to 20.5 minutes (502 tests; docs/ci.md).
step "pytest (2 workers)" pytest -n 2 --dist loadfile --durations=20
# molecule nodes-vm boots three QEMU guests: under KVM where it really works, else under software
# emulation (TCG), as on the 2-core development machine, where it takes about 12 minutes.
for scenario in molecule/*/; do
  scenario=$(basename "$scenario")
  [[ " ${network_scenarios[*]} " == *" $scenario "* ]] && continue
  step "molecule test -s $scenario" molecule test -s "$scenario"
done
# molecule nodes-vm and tests/vm start QEMU guests; their guests and switch must be gone
# afterwards, whether they passed or not.
vm_leftovers() {
  local left
  left=$(pgrep -af '^(qemu-system-x86_64|vde_switch) .*nodes-vm' || true)
  [ -z "$left" ] || { echo "left running after molecule nodes-vm:"; echo "$left"; return 1; }
  echo "no guest or switch of molecule nodes-vm is left running"
}
step "VM guests of molecule nodes-vm stopped" vm_leftovers
# Users' CI: the workflow run by nektos/act as a GitHub runner would run it, each scenario job up
# to the k3s download, where it must fail (tests/users_ci). Skipped on GitHub, which runs the
# workflow itself.
step "users' CI under act (the workflow up to the k3s download)" pytest -m users_ci tests/users_ci

echo
[ ${#failed[@]} -eq 0 ] || printf 'FAILED steps: %s\n' "${failed[*]}"
echo "steps: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
