#!/usr/bin/env bash
# After a failed or cancelled `make test` in CI: the logs that are not in the job's output, into
# one directory the runner user can upload (make test runs as root, so its files are root's).
#   sudo scripts/collect-test-logs.sh OUTDIR OWNER     (OWNER: uid:gid of the runner user)
# - pytest's temp dirs (/tmp/pytest-of-root, mode 0700): the servers' logs the fixtures keep;
# - molecule 26's ephemeral dirs (~/.ansible/tmp/molecule.*: inventories and logs), root's;
# - the Docker engine's log: ours when tests/harness/ensure-docker.sh started dockerd, else
#   the docker unit's journal (the runner image starts Docker with systemd).
set -uo pipefail
out=${1:?output directory}
owner=${2:?owner uid:gid}
mkdir -p "$out/pytest" "$out/molecule"
for dir in /tmp/pytest-of-*/; do
  [ -d "$dir" ] || continue
  mkdir -p "$out/pytest/$(basename "$dir")"
  (cd "$dir" && find . -name '*.log' -size -50M -exec cp --parents {} "$out/pytest/$(basename "$dir")/" \;)
done
for dir in /root/.ansible/tmp/molecule.*/; do
  [ -d "$dir" ] || continue
  cp -r "$dir" "$out/molecule/" 2>/dev/null
done
if [ -f /var/log/dockerd.log ]; then
  cp /var/log/dockerd.log "$out/dockerd.log"
elif command -v journalctl >/dev/null; then
  journalctl --no-pager -u docker -n 5000 >"$out/dockerd.log" 2>&1
fi
chown -R "$owner" "$out"
echo "logs in $out: $(find "$out" -type f | wc -l) files"
