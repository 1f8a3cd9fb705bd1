# seek-k3s: the two commands
#   make setup    Python tools (.venv) pinned in requirements.txt; then run the platform with
#                 .venv/bin/ansible-playbook playbooks/site.yml -i inventories/lab
#   make test     everything CI runs (installs what it needs: Debian packages, Docker, image)
# and the local lab (privileged systemd containers on your own Docker, or QEMU guests):
#   make lab  (= check, setup, lab-up, lab-site)   make lab-up [LAB=docker|vm] / lab-site / lab-down

PYTHON ?= python3.11
VENV   ?= .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test lint lab lab-check lab-up lab-site lab-down

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

# make lab: the first command. Checks that this machine can run a lab (network for the k3s
# download; privileged containers, else QEMU), sets up, brings the lab up and runs site.yml;
# stops at once, saying what is missing, when it cannot. LAB=docker|vm picks the lab
# (default: containers where privileged containers work, else VMs); docs/lab.md.
LAB ?=
export LAB

lab:
	scripts/local-lab.sh lab

lab-check:
	scripts/local-lab.sh check

lab-up: setup
	scripts/local-lab.sh up

lab-site: setup
	scripts/local-lab.sh site

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
