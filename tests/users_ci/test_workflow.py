"""Users' CI (.github/workflows/ci.yml) run here by nektos/act, up to the network boundary.

Each scenario job must pass every step up to molecule, have molecule create and prepare the
nodes and converge until the k3s download, and fail exactly there, naming the release URL; its
diagnostics must reach the artifact folder, after a failure and after a cancellation (what a job
timeout is on GitHub). The test job runs every step but its own `make test` (.ci/run runs that).
The harness (tests/users_ci/harness.py) says what is real and what stands in.

`make test` runs this folder as a step of its own (tests/run.sh); GitHub runs the workflow
itself, so there it is skipped, saying so.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from tests.users_ci import harness

pytestmark = [pytest.mark.users_ci, pytest.mark.skipif(
    os.environ.get("GITHUB_ACTIONS") == "true" or os.environ.get("ACT") == "true",
    reason="on GitHub (or under act) the workflow's own jobs run; act would run them a second time")]

WORKFLOW = yaml.safe_load(harness.WORKFLOW.read_text())
LEGS = WORKFLOW["jobs"]["scenarios"]["strategy"]["matrix"]["include"]
SCENARIOS = [leg["scenario"] for leg in LEGS if "variant" not in leg]
MOLECULE_STEP = "molecule test"
K3S_VERSION = yaml.safe_load((harness.ROOT / "roles/k3s/defaults/main.yml").read_text())["k3s_version"]
RELEASE_URL = yaml.safe_load((harness.ROOT / "roles/k3s/defaults/main.yml").read_text())["k3s_release_url"]
# This machine refuses privileged containers (runc cannot apply every capability here), so the
# node containers run with the capabilities the molecule nodes scenario uses instead; nothing
# before the k3s download needs more. On GitHub they are privileged (the scenarios' default).
NODE_ENV = {"SEEK_K3S_NODE_PRIVILEGED": "false"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Ansible's log lines: "2026-12-07 16:28:13,337 p=16080 u=runner n=ansible INFO| fatal: ..."
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ p=\d+ u=\S+ n=\S+ \w+\| (.*)$")


def step_names(job: str, variant: str = "") -> list[str]:
    """Return the names act gives the job's steps (a `uses:` step without a name: its reference),
    less the steps of other matrix variants (act does not report a step whose `if:` is false)."""
    names = []
    for step in WORKFLOW["jobs"][job]["steps"]:
        condition = str(step.get("if", ""))
        wanted = re.search(r"matrix\.variant == '([^']*)'", condition)
        if wanted and wanted.group(1) != variant:
            continue
        names.append(step.get("name") or step["uses"])
    return names


def containers(prefix: str) -> list[str]:
    """Return the Docker containers whose names start with prefix."""
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], check=True, capture_output=True,
                         text=True).stdout.split()
    return [name for name in out if name.startswith(prefix)]


def platforms(scenario: str) -> list[str]:
    """Return the node container names of a scenario."""
    config = (harness.ROOT / "molecule" / scenario / "molecule.yml").read_text()
    return [p["name"] for p in yaml.safe_load(config)["platforms"]]


@pytest.fixture(scope="module")
def act() -> harness.Act:
    """The runner user, act and the stand-ins, prepared once for the module."""
    return harness.Act()


@pytest.fixture(scope="module")
def workflow(act: harness.Act) -> harness.WorkflowRun:
    """The whole workflow on a push to main, every job and leg at once as on GitHub, but the
    Ubuntu 24.04 leg (its debootstrap of noble would add minutes to every make test)."""
    return act.run("workflow", matrix=[("variant", "airgap")], env=NODE_ENV)


def test_workflow_runs_only_the_actions_the_stand_ins_serve() -> None:
    """Every `uses:` is pinned by a 40-hex SHA and has a stand-in (else act would go to GitHub)."""
    pins = harness.workflow_actions()
    assert pins, "the workflow uses no action"
    for action, sha in pins.items():
        assert len(sha) == 40 and all(c in "0123456789abcdef" for c in sha), f"{action}@{sha} is not a SHA"
        owner, name = action.split("/")[:2]
        assert owner == "actions" and name in harness.ACTIONS, f"no stand-in for {action}"
        assert (harness.STANDINS / "/".join(action.split("/")[1:]) / "action.yml").is_file(), action


def test_the_runner_has_its_own_ansible_without_our_collections(act: harness.Act) -> None:
    """As on the image: the runner's PATH finds an ansible-core (pipx's place) that runs and has
    none of the collections the project uses, so a step that uses it instead of ours fails."""
    which = harness.as_runner("/bin/sh", "-c", "command -v ansible-config")
    assert which.stdout.strip() == str(harness.PIPX_BIN / "ansible-config"), which
    version = harness.as_runner("ansible-config", "--version")
    assert version.returncode == 0 and version.stdout.startswith("ansible-config [core "), version
    collections = harness.as_runner("ansible-galaxy", "collection", "list", "kubernetes.core")
    assert "kubernetes.core" not in collections.stdout, collections.stdout


def test_test_job_runs_every_step_but_make_test(workflow: harness.WorkflowRun) -> None:
    """The test job passes every step under act; only `make test` itself is left to .ci/run."""
    run = workflow.job("test")
    ran = [s.name for s in run.main_steps()]
    expected = [name for name in step_names("test") if not name.startswith(("make test", "Collect", "Upload"))]
    assert ran == expected, run.log[-3000:]
    failed = [s.name for s in run.steps if s.result != "success"]
    assert not failed and run.result == "success", f"failed: {failed}\n{run.log[-3000:]}"
    setup = run.step("make setup")
    assert any("Successfully installed" in line or "python3.11 -m venv" in line or "venv" in line
               for line in setup.output), setup.output[-20:]


def download_failure(log: str) -> tuple[str, str]:
    """Return the task and the text of the first failure in Ansible's log (ANSIBLE_LOG_PATH)."""
    task, failure = "", []
    for line in log.splitlines():
        prefixed = LOG_PREFIX.match(line)
        text = prefixed.group(1) if prefixed else line
        if text.startswith("TASK ["):
            task = text
        elif text.startswith(("fatal:", "failed:")) or failure:
            failure.append(text)
            if len(failure) > 12:
                break
    assert failure, "Ansible's log shows no failed task"
    return task, "\n".join(failure)


def check_diagnostics(run: harness.JobRun, scenario: str) -> str:
    """Check the uploaded diagnostics hold Ansible's log and each node's journal; return the log."""
    artifact = run.artifacts / f"molecule-{scenario}"
    files = sorted(str(p.relative_to(artifact)) for p in artifact.rglob("*") if p.is_file())
    for node in platforms(scenario):
        assert f"journal-{node}.txt" in files, files
    assert "ansible.log" in files and "molecule/state.yml" in files, files
    return (artifact / "ansible.log").read_text()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_job_fails_exactly_at_the_k3s_download(workflow: harness.WorkflowRun, scenario: str) -> None:
    """Each scenario job is green up to molecule, and molecule stops at the k3s download."""
    run = workflow.job("scenarios", scenario=scenario)
    names = [s.name for s in run.main_steps()]
    molecule_at = next(i for i, name in enumerate(names) if name.startswith(MOLECULE_STEP))
    before = run.main_steps()[:molecule_at]
    assert [s.name for s in before] == step_names("scenarios")[:molecule_at]
    assert all(s.result == "success" for s in before), [(s.name, s.result) for s in before]

    molecule = run.main_steps()[molecule_at]
    output = ANSI.sub("", "\n".join(molecule.output))
    assert molecule.result == "failure", output[-3000:]
    # molecule created and prepared the nodes, then converged until the download.
    for action in ("syntax", "create", "prepare"):
        assert f"[{scenario} > {action}] Executed: Successful" in output, f"{action}:\n{output[-3000:]}"
    assert f"[{scenario} > converge] Executed: Failed" in output, output[-3000:]

    task, failure = download_failure(check_diagnostics(run, scenario))
    assert task.startswith("TASK [k3s : Install | Download the k3s binary"), f"{task}\n{failure}"
    assert "Request failed" in failure, failure
    assert re.search(re.escape(RELEASE_URL) + r"/v1\.\d+\.\d+%2Bk3s\d+/sha256sum-amd64\.txt", failure), failure

    after = {s.name: s.result for s in run.main_steps()[molecule_at + 1:]}
    assert after == {name: "success" for name in step_names("scenarios")[molecule_at + 1:]}, after
    assert not containers(platforms(scenario)[0]), "molecule destroy left the node containers"


def test_airgap_leg_fails_at_the_bundle_download(workflow: harness.WorkflowRun) -> None:
    """The airgap leg's first download is the bundle's: it fails there, naming the URL, and
    nothing of molecule runs (nor its destroy, which would remove another leg's nodes here)."""
    run = workflow.job("scenarios", scenario="k3s", variant="airgap")
    names = [s.name for s in run.main_steps()]
    fetch = run.step("The k3s airgap bundle")
    assert fetch.result == "failure", fetch.output
    assert any(line.startswith("fetch-k3s-airgap: cannot download " + RELEASE_URL) for line in fetch.output), fetch.output
    before = run.main_steps()[:names.index(fetch.name)]
    assert all(s.result == "success" for s in before), [(s.name, s.result) for s in before]
    assert names[-1] == fetch.name, names


def test_cancelled_scenario_leaves_its_diagnostics(act: harness.Act, workflow: harness.WorkflowRun) -> None:
    """A job cancelled while molecule converges (a timeout on GitHub) still uploads its logs."""
    scenario = "k3s"
    del workflow  # after the whole-workflow run: its k3s leg has the same node names
    run = act.run("cancelled", job="scenarios", matrix=[("scenario", scenario), ("variant", "none")],
                  env=NODE_ENV, cancel_at=f"[{scenario} > converge] Executing").job("scenarios", scenario=scenario)
    results = {s.name: s.result for s in run.main_steps()}
    assert run.result == "failure", results
    assert results.get("molecule test (kept on failure for the logs)") == "failure", results
    assert "cancel" in run.log, "act did not cancel the molecule step"
    for name in ("Collect events, pod logs and the nodes' journals", "Upload the diagnostics", "molecule destroy"):
        assert results.get(name) == "success", results
    log = check_diagnostics(run, scenario)
    # act is interrupted as converge starts: Ansible's log holds everything before it.
    assert "PLAY [Prepare | Make the containers' network sysctls writable]" in log, log[-2000:]
    assert not containers(platforms(scenario)[0])
