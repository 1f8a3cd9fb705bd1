# seek-k3s: the two commands
#   make setup    Python tools (.venv) pinned in requirements.txt; then run the platform with
#                 .venv/bin/ansible-playbook playbooks/site.yml -i inventories/lab
#   make test     everything CI runs (installs what it needs: Debian packages, Docker, image)
# and helpers for the local lab (systemd containers on your own Docker):
#   make lab-up / make lab-site / make lab-down

PYTHON ?= python3.11
VENV   ?= .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test lint lab-up lab-site lab-down

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

test: setup
	tests/run.sh

lint: setup
	yamllint --strict .
	ansible-lint

lab-up: setup
	scripts/local-lab.sh up

lab-site: setup
	ansible-playbook playbooks/site.yml -i inventories/local

lab-down:
	scripts/local-lab.sh down

# Backup pipeline benchmark (tools/bench_backup.py; figures in docs/backups.md, "Performance"):
# generates SEEK-shaped MariaDB data, runs bare mysqldump, the dump step, the off-site copy to moto
# and a restore back to back, and prints every figure as a ratio. Needs the packages of
# tests/host-packages.txt (mariadb-server, zstd). E.g. make bench-backup BENCH_ARGS="--sizes 1.1,4.1"
BENCH_ARGS ?= --sizes 1.1
.PHONY: bench-backup
bench-backup: setup
	nice $(VENV)/bin/python tools/bench_backup.py --workdir /var/tmp/seek-bench $(BENCH_ARGS)
