"""SEEK's web and workers stop on SIGTERM within their grace period (issue 20, item 7).

SEEK's own docker/entrypoint.sh and docker/start_workers.sh (seek4science/seek v1.18.1) leave bash as
PID 1 without exec, so SIGTERM is ignored. The rendered web and workers containers must end in an
exec of the real process (puma, supercronic), and the workers' preStop hook must stop the
delayed_job daemons and release the lock of a job that outlives the wait. The hook runs here for
real: against stand-in worker processes (one finishes on SIGTERM, one ignores it, as a delayed_job
busy with a long job does) and a real MariaDB holding SEEK's delayed_jobs rows.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backup_tools.servers import MariaDB, Missing
from tests.render.conftest import Rendered

PUMA_SHUTDOWN = 30  # puma 7.2.1's worker_shutdown_timeout default; SEEK's docker/puma.rb keeps it


def _container(rendered: Rendered, deployment: str) -> dict[str, Any]:
    return rendered.get("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def _script(container: dict[str, Any]) -> list[str]:
    command = container["command"]
    assert command[:2] == ["bash", "-c"] and len(command) == 3, command
    return [line.strip() for line in command[2].splitlines() if line.strip()]


def _hook(container: dict[str, Any]) -> list[str]:
    return container["lifecycle"]["preStop"]["exec"]["command"]


def test_web_execs_puma_after_seeks_own_steps(rendered: Rendered) -> None:
    """The last line execs puma (PID 1 then, SIGTERM stops it); nginx, the log tail and the sitemap
    run in the background; SEEK's functions come first; the entrypoint is not called."""
    web = _container(rendered, "seek-web")
    lines = _script(web)
    assert lines[-1] == "exec bundle exec puma -C docker/puma.rb"
    assert [line for line in lines if line.startswith("exec ")] == [lines[-1]]
    assert "docker/entrypoint.sh" not in " ".join(web["command"])
    order = [lines.index(step) for step in (". docker/shared_functions.sh", "check_mysql", "start_search")]
    assert order == sorted(order)
    for background in ("nginx -c /seek/nginx.conf -g 'daemon off;' &", "tail -F log/production.log &",
                       "bundle exec rake sitemap:create &"):
        assert background in lines, background
    assert "seek:workers:start" not in " ".join(lines), "the web pod must not start delayed_job"


def test_web_grace_period_covers_the_pause_and_puma_shutdown(rendered: Rendered) -> None:
    web = rendered.get("Deployment", "seek-web")["spec"]["template"]["spec"]
    hook = _hook(web["containers"][0])
    assert hook[0] == "sleep"
    assert web["terminationGracePeriodSeconds"] >= int(hook[1]) + PUMA_SHUTDOWN + 10


def test_workers_exec_supercronic_after_starting_delayed_job(rendered: Rendered) -> None:
    worker = _container(rendered, "seek-workers")
    lines = _script(worker)
    assert lines[-1] == "exec supercronic /seek/seek.crontab"
    assert "exec supercronic -quiet /seek/seek.crontab" in lines  # QUIET_SUPERCRONIC, as SEEK's script
    assert "docker/start_workers.sh" not in " ".join(worker["command"])
    start = lines.index("bundle exec rake seek:workers:start")
    assert start < lines.index("tail -F log/production.log &") < len(lines) - 1
    assert lines.index("wait_for_database") < start
    assert lines.index("bundle exec whenever > /seek/seek.crontab") < start


def test_workers_grace_period_covers_the_hook(rendered: Rendered) -> None:
    spec = rendered.get("Deployment", "seek-workers")["spec"]["template"]["spec"]
    hook = "\n".join(_hook(spec["containers"][0]))
    assert "wait_seconds=120\n" in hook  # seek_workers_stop_seconds' default
    assert spec["terminationGracePeriodSeconds"] == 120 + 60


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (tests/host-packages.txt)")
def test_scripts_are_shellcheck_clean(rendered: Rendered, tmp_path: Path) -> None:
    """Web and workers commands, the workers' hook and the settings Job's command pass shellcheck
    (SEEK's sourced file is in the image, not here: SC1091; its functions are then unknown: SC2154
    does not apply to functions)."""
    scripts = {
        "web": _container(rendered, "seek-web")["command"][2],
        "workers": _container(rendered, "seek-workers")["command"][2],
        "workers-prestop": _hook(_container(rendered, "seek-workers"))[2],
    }
    for job in rendered.objects("Job"):
        if job["metadata"]["name"].startswith("seek-settings-"):
            scripts["settings"] = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert "settings" in scripts
    for name, text in scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text("#!/bin/bash\n" + text)
        result = subprocess.run(["shellcheck", "-s", "bash", "-e", "SC1091", str(path)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}:\n{result.stdout}"


# --- The workers' preStop hook, run ------------------------------------------------------------

# A delayed_job stand-in: records its pid, then either exits on SIGTERM (no job running) or ignores
# it (a job that outlasts the wait), as Delayed::Worker's TERM trap does.
WORKER = """\
import signal, sys, time
if sys.argv[1] == 'busy':
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print('ready', flush=True)
while True:
    time.sleep(0.1)
"""
DATABASE = "seek_hook"


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    try:
        db = MariaDB(tmp_path_factory.mktemp("mariadb-hook")).start()
    except Missing as exc:
        pytest.skip(str(exc))
    db.sql(f"CREATE DATABASE {DATABASE}")
    # The columns of SEEK's delayed_jobs (db/schema.rb at v1.18.1) the hook and the check use.
    db.sql("CREATE TABLE delayed_jobs (id INT PRIMARY KEY, handler TEXT, attempts INT NOT NULL DEFAULT 0, "
           "run_at DATETIME, locked_at DATETIME, failed_at DATETIME, locked_by VARCHAR(255), queue VARCHAR(255))",
           DATABASE)
    yield db
    db.stop()


def _start_worker(kind: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, kind], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


# The hook is the same in every configuration: it runs for one.
ONE_CONFIG = pytest.mark.parametrize("rendered", ["single-localpath-nginx-notls"], indirect=True)


@ONE_CONFIG
def test_prestop_stops_workers_and_releases_the_lock_of_a_killed_job(
        rendered: Rendered, mariadb: MariaDB, tmp_path: Path) -> None:
    """SIGTERM to every worker of tmp/pids; the one that finishes exits; the busy one is killed
    after the wait and only its lock is released (attempts unchanged: the job runs again); a
    lock held by a worker of another pod is left alone."""
    hook = _hook(_container(rendered, "seek-workers"))[2]
    # Shorter wait for the test; the log goes to stdout here (PID 1 is not the workers' supercronic).
    assert "wait_seconds=120\n" in hook and "/proc/1/fd/1" in hook
    hook = hook.replace("wait_seconds=120\n", "wait_seconds=3\n").replace("/proc/1/fd/1", "/dev/stdout")
    pids = tmp_path / "tmp" / "pids"
    pids.mkdir(parents=True)
    idle, busy = _start_worker("idle"), _start_worker("busy")
    try:
        (pids / "delayed_job.1.pid").write_text(f"{idle.pid}\n")
        (pids / "delayed_job.2.pid").write_text(f"{busy.pid}\n")
        host = socket.gethostname()
        busy_owner = f"delayed_job.2 host:{host} pid:{busy.pid}"
        other_owner = "delayed_job.2 host:seek-workers-old pid:77"
        mariadb.sql("DELETE FROM delayed_jobs; INSERT INTO delayed_jobs (id, handler, attempts, run_at, locked_at, "
                    f"locked_by, queue) VALUES (1, 'ReindexAllJob', 0, NOW(), NOW(), '{busy_owner}', 'indexing'), "
                    f"(2, 'SampleDataExtractionJob', 0, NOW(), NOW(), '{other_owner}', 'samples')", DATABASE)
        env = {**os.environ, "MYSQL_HOST": "127.0.0.1", "MYSQL_TCP_PORT": str(mariadb.port),
               "MYSQL_USER": mariadb.user, "MYSQL_PASSWORD": mariadb.password, "MYSQL_DATABASE": DATABASE}
        started = time.monotonic()
        result = subprocess.run(["bash", "-c", hook], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        took = time.monotonic() - started
        assert result.returncode == 0, result.stdout + result.stderr
        assert idle.wait(timeout=5) == 0, "the idle worker got SIGTERM and exited by itself"
        assert busy.wait(timeout=5) == -signal.SIGKILL, "the busy worker was killed after the wait"
        assert 3 <= took < 20, took
        rows = mariadb.sql("SELECT id, IFNULL(locked_by, 'NULL'), IFNULL(locked_at, 'NULL'), attempts "
                           "FROM delayed_jobs ORDER BY id", DATABASE).splitlines()
        assert rows[0].split("\t") == ["1", "NULL", "NULL", "0"], rows
        assert rows[1].split("\t")[1] == other_owner, rows
        assert "SIGTERM sent to delayed_job.1" in result.stdout
        assert f"delayed_job.2 (pid {busy.pid}) was still running a job after 3s: killed, its lock released" \
            in result.stdout, result.stdout
        assert mariadb.password not in result.stdout + result.stderr
    finally:
        for proc in (idle, busy):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@ONE_CONFIG
def test_prestop_without_workers_ends_at_once(rendered: Rendered, tmp_path: Path) -> None:
    """No pid file (the workers never started): the hook says so and ends without waiting."""
    hook = _hook(_container(rendered, "seek-workers"))[2].replace("/proc/1/fd/1", "/dev/stdout")
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", hook], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SIGTERM sent to no worker" in result.stdout
    assert time.monotonic() - started < 5
