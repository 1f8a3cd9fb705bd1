"""Run .github/workflows/ci.yml here with nektos/act, as a GitHub ubuntu-24.04 runner would run it.

What is real: the workflow file, every `run:` step, sudo, the Docker engine, molecule and the
node containers. What stands in: the five actions (tests/users_ci/actions), and the runner user,
built to look like the image's: user ``runner`` with HOME /home/runner, passwordless sudo, in the
docker group, and a PATH with ~/.local/bin and /opt/pipx_bin first, where an ``ansible-core``
without any collection sits as the image's pipx one does (actions/runner-images,
images/ubuntu/scripts/build/install-pipx-packages.sh and toolsets/toolset-2404.json). So a step
that reaches for the runner's Ansible instead of the project's fails here as it would there.

act runs in self-hosted mode (``-P ubuntu-24.04=-self-hosted``): each step is a process of the
act process, with act's environment, in a fresh workspace under ~/.cache/act. It runs on a
snapshot repository (the clone's tracked and new files, one commit), so uncommitted work is
tested too. act itself is built from its Go module and cached outside the clone.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
STANDINS = Path(__file__).resolve().parent / "actions"
ACT_MODULE = "github.com/nektos/act"
ACT_VERSION = "v0.2.89"
RUNNER = "runner"
RUNNER_HOME = Path("/home/runner")
PIPX_HOME = Path("/opt/pipx")
PIPX_BIN = Path("/opt/pipx_bin")
# The image's pipx ansible-core: a plain ansible-core, none of our collections or libraries.
RUNNER_ANSIBLE_CORE = "ansible-core==2.19.14"
# The job PATH of the ubuntu-24.04 image (its /etc/environment), less the tools this machine
# lacks (cargo, composer, ghcup, dotnet, snap): ~/.local/bin and /opt/pipx_bin come first.
RUNNER_PATH = f"{RUNNER_HOME}/.local/bin:{PIPX_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The five actions the workflow uses, each pinned by SHA; act maps each to its stand-in.
ACTIONS = ("checkout", "setup-python", "setup-go", "cache", "upload-artifact")
DEBIAN_PACKAGES = ("sudo", "git", "python3-venv")


def cache_root() -> Path:
    """Return the build cache shared by every checkout (as tests/controlplane does)."""
    return Path(os.environ.get("SEEK_K3S_CACHE") or Path.home() / ".cache" / "seek-k3s")


def _run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=True, **kwargs)


def build_act() -> Path:
    """Build act from its Go module into the cache (once per version); return the binary."""
    binary = cache_root() / "act" / ACT_VERSION / "act"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        _run("go", "install", f"{ACT_MODULE}@{ACT_VERSION}",
             env={**os.environ, "GOBIN": str(binary.parent), "GOFLAGS": "-mod=mod"})
    return binary


def ensure_runner() -> None:
    """Create the runner user, its sudo rule and the pipx ansible-core, as the runner image has them."""
    missing = [p for p in DEBIAN_PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout != "install ok installed"]
    if missing:
        _run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing,
             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)
    try:
        pwd.getpwnam(RUNNER)
    except KeyError:
        _run("useradd", "--create-home", "--home-dir", str(RUNNER_HOME), "--shell", "/bin/bash", RUNNER)
    # The image adds the runner to the docker group and gives it passwordless sudo
    # (images/ubuntu/scripts/build/configure-system.sh, install-docker.sh).
    _run("usermod", "--append", "--groups", "docker", RUNNER)
    sudoers = Path("/etc/sudoers.d/runner")
    if not sudoers.exists():
        sudoers.write_text(f"{RUNNER} ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
    # pipx on the image runs on the system's python3; so does this venv (the runner must be able
    # to start it: a venv of root's own Python would not run for another user).
    venv = PIPX_HOME / "venvs" / "ansible-core"
    config = venv / "pyvenv.cfg"
    if not (venv / "bin" / "ansible-config").exists() or "home = /usr/bin\n" not in config.read_text():
        shutil.rmtree(venv, ignore_errors=True)
        _run("/usr/bin/python3", "-m", "venv", str(venv))
        _run(str(venv / "bin" / "pip"), "install", "--quiet", RUNNER_ANSIBLE_CORE)
    PIPX_BIN.mkdir(parents=True, exist_ok=True)
    for tool in sorted((venv / "bin").glob("ansible*")):
        link = PIPX_BIN / tool.name
        if not link.is_symlink():
            link.symlink_to(tool)


def as_runner(*argv: str) -> subprocess.CompletedProcess:
    """Run a command as the runner user, with the runner's environment."""
    runner = pwd.getpwnam(RUNNER)
    return subprocess.run(list(argv), user=runner.pw_uid, group=runner.pw_gid, capture_output=True, text=True,
                          env={"HOME": str(RUNNER_HOME), "PATH": RUNNER_PATH, "LANG": "C.UTF-8"}, cwd="/")


def workflow_actions() -> dict[str, str]:
    """Return each action the workflow uses, as owner/name[/path] -> the SHA it is pinned to."""
    pins: dict[str, str] = {}
    for line in WORKFLOW.read_text().splitlines():
        line = line.strip().removeprefix("- ")
        if line.startswith("uses: "):
            reference = line.split()[1]
            name, _, sha = reference.partition("@")
            pins[name] = sha
    return pins


@dataclass
class Step:
    """One step of a job as act reported it."""

    name: str
    stage: str  # Pre, Main, Post
    result: str  # success, failure, skipped
    output: list[str] = field(default_factory=list)


@dataclass
class JobRun:
    """What act reported for one job: its steps in order, its result and the whole log."""

    steps: list[Step]
    result: str
    log: str
    directory: Path

    def main_steps(self) -> list[Step]:
        """Return the job's Main steps in order (act also reports Pre and Post stages)."""
        return [s for s in self.steps if s.stage == "Main"]

    def step(self, prefix: str) -> Step:
        """Return the Main step whose name starts with prefix."""
        matches = [s for s in self.main_steps() if s.name.startswith(prefix)]
        assert len(matches) == 1, f"{len(matches)} steps named {prefix!r}: {[s.name for s in self.main_steps()]}"
        return matches[0]

    @property
    def artifacts(self) -> Path:
        """The folder the upload-artifact stand-in copied into."""
        return self.directory / "artifacts"


class Act:
    """A prepared act run: the runner user, act, the stand-ins and a snapshot of the repository."""

    def __init__(self, base: Path | None = None) -> None:
        ensure_runner()
        self.binary = build_act()
        runner = pwd.getpwnam(RUNNER)
        self.uid, self.gid = runner.pw_uid, runner.pw_gid
        self.base = base or Path(tempfile.mkdtemp(prefix="seek-k3s-act.", dir=RUNNER_HOME))
        self.base.chmod(0o755)
        self.tool = self.base / "bin" / "act"
        self.tool.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.binary, self.tool)
        self.standins = self.base / "actions"
        shutil.copytree(STANDINS, self.standins, dirs_exist_ok=True)
        self.source = self.base / "source"
        self._snapshot()
        _run("chown", "-R", f"{self.uid}:{self.gid}", str(self.base))

    def _snapshot(self) -> None:
        """Copy the tracked and new (not ignored) files of the clone into a one-commit repository."""
        files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], check=True, capture_output=True).stdout.split(b"\0")
        for name in filter(None, files):
            path = ROOT / os.fsdecode(name)
            if path.is_file():
                target = self.source / os.fsdecode(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target, follow_symlinks=False)
        git = ["git", "-C", str(self.source), "-c", "user.name=act", "-c", "user.email=act@localhost"]
        _run(*git, "init", "--quiet", "--initial-branch=main")
        _run(*git, "add", "--all")
        _run(*git, "commit", "--quiet", "--no-verify", "-m", "snapshot of the clone under test")

    def environment(self, run_dir: Path, extra: dict[str, str]) -> dict[str, str]:
        """Return the runner's environment for act (nothing of root's, no project venv)."""
        return {"HOME": str(RUNNER_HOME), "USER": RUNNER, "LOGNAME": RUNNER, "SHELL": "/bin/bash",
                "PATH": RUNNER_PATH, "LANG": "C.UTF-8", "SEEK_K3S_ACT_DIR": str(run_dir),
                # act asks a web service for notices at start unless told not to (cmd/notices.go).
                "ACT_DISABLE_VERSION_CHECK": "1",
                # Plain output, as the rest of make test (tests/run.sh): the test reads it.
                "NO_COLOR": "1", "PY_COLORS": "0", "ANSIBLE_NOCOLOR": "1", **extra}

    def run(self, name: str, *, job: str = "", matrix: list[tuple[str, str]] = (),
            env: dict[str, str] | None = None, timeout: int = 2400, cancel_at: str = "") -> WorkflowRun:
        """Run the workflow (or one job) on a push to main; return what act reported of each job.

        matrix filters the legs as act's --matrix does: a leg with one of these keys runs only
        with one of the values given for it; a leg without the key always runs. Jobs and legs
        run concurrently, as on GitHub.

        With cancel_at, act is interrupted (SIGINT) as soon as its log holds that text: act then
        cancels the job as GitHub does on a timeout or a cancel (steps re-evaluate their `if:`).
        """
        run_dir = self.base / "runs" / name
        run_dir.mkdir(parents=True)
        shutil.copy2(self.standins / "standin.py", run_dir / "standin.py")
        (run_dir / "source").symlink_to(self.source)
        event = run_dir / "event.json"
        event.write_text(json.dumps({"ref": "refs/heads/main", "repository": {
            "full_name": "seek4science/seek-k3s", "default_branch": "main"}}))
        _run("chown", "-R", f"{self.uid}:{self.gid}", str(run_dir))
        argv = [str(self.tool), "push", "--eventpath", str(event), "-W", str(self.source / ".github/workflows/ci.yml"),
                "-C", str(self.source), "-P", "ubuntu-24.04=-self-hosted", "--json",
                "--no-skip-checkout", "--action-offline-mode", "--no-cache-server",
                "--action-cache-path", str(run_dir / "act-cache")]
        if job:
            argv += ["-j", job]
        for key, value in matrix:
            argv += ["--matrix", f"{key}:{value}"]
        # actions/cache/restore and actions/cache/save are folders of one repository: one mapping.
        for owner_name, sha in sorted({("/".join(a.split("/")[:2]), sha) for a, sha in workflow_actions().items()}):
            argv += ["--local-repository", f"{owner_name}@{sha}={self.standins / owner_name.split('/')[1]}"]
        log = run_dir / "act.log"
        deadline = time.monotonic() + timeout
        with log.open("w") as out:
            proc = subprocess.Popen(argv, env=self.environment(run_dir, env or {}), user=self.uid, group=self.gid,
                                    extra_groups=[g.gr_gid for g in _groups(RUNNER)], cwd=self.source,
                                    stdout=out, stderr=subprocess.STDOUT)
            try:
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"act ran {job or 'the workflow'} ({name}) for more than {timeout} s: "
                                           f"see {log}")
                    if cancel_at and cancel_at in messages(log.read_text(errors="replace")):
                        proc.send_signal(signal.SIGINT)
                        cancel_at = ""
                    time.sleep(2)
            finally:
                if proc.poll() is None:  # a timeout, or the test itself interrupted: act cancels its jobs
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(timeout=300)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        return WorkflowRun(parse(log.read_text(errors="replace"), run_dir), run_dir)


def _groups(user: str) -> list[grp.struct_group]:
    """Return the supplementary groups of a user."""
    return [g for g in grp.getgrall() if user in g.gr_mem]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def messages(text: str) -> str:
    """Return the messages of act's JSON log lines, without colour codes, one a line."""
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            out.append(ANSI.sub("", str(entry.get("msg", ""))).rstrip("\n"))
    return "\n".join(out)


def parse(text: str, directory: Path) -> dict[tuple[str, str], JobRun]:
    """Turn act's JSON log lines into each job's (each matrix leg's) steps and result."""
    jobs: dict[tuple[str, str], JobRun] = {}
    steps: dict[tuple[str, str, str, str], Step] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict) or "jobID" not in entry:
            continue
        leg = (entry["jobID"], json.dumps(entry.get("matrix") or {}, sort_keys=True))
        run = jobs.setdefault(leg, JobRun(steps=[], result="unknown", log="", directory=directory))
        run.log += ANSI.sub("", str(entry.get("msg", "")))
        key = (*leg, entry.get("stage", ""), entry.get("step", ""))
        if entry.get("step") and entry.get("stage"):
            if key not in steps:
                steps[key] = Step(name=entry["step"], stage=entry["stage"], result="running")
                run.steps.append(steps[key])
            if entry.get("raw_output"):
                steps[key].output.append(str(entry.get("msg", "")).rstrip("\n"))
            if "stepResult" in entry:
                steps[key].result = entry["stepResult"]
        if "jobResult" in entry:
            run.result = entry["jobResult"]
    return jobs


@dataclass
class WorkflowRun:
    """The jobs of one act run, each matrix leg by its values."""

    jobs: dict[tuple[str, str], JobRun]
    directory: Path

    def job(self, job_id: str, **matrix: str) -> JobRun:
        """Return the job (the matrix leg whose values include these) act ran."""
        found = [run for (jid, values), run in self.jobs.items()
                 if jid == job_id and all(json.loads(values).get(k) == v for k, v in matrix.items())
                 and ("variant" in matrix or "variant" not in json.loads(values))]
        assert len(found) == 1, f"{len(found)} runs of {job_id} {matrix} in {list(self.jobs)}"
        return found[0]
