"""The local work of the action stand-ins (tests/users_ci/actions/*/action.yml).

Each composite stand-in calls one subcommand with its inputs in the environment (``INPUT_<NAME>``,
as GitHub passes inputs to JavaScript actions) and writes its outputs, environment and PATH
additions to the files act gives it (``GITHUB_OUTPUT``, ``GITHUB_ENV``, ``GITHUB_PATH``).
Where the real action fails, the stand-in fails with the same cause, so a workflow that would
break on GitHub breaks here too. ``SEEK_K3S_ACT_DIR`` is the harness's folder: ``source`` (the
repository act runs on), ``cache/`` and ``artifacts/``.
"""
from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path


def fail(message: str) -> None:
    """Report an error annotation, as the real actions do, and stop the step."""
    print(f"::error::{message}", flush=True)
    sys.exit(1)


def inp(name: str, default: str = "") -> str:
    """Return an input of the action (composite stand-ins pass them as INPUT_<NAME>)."""
    return os.environ.get("INPUT_" + name.upper().replace("-", "_"), default).strip()


def lines(value: str) -> list[str]:
    """Split a multi-line input into its non-empty lines."""
    return [line.strip() for line in value.splitlines() if line.strip()]


def append(variable: str, text: str) -> None:
    """Append a line to one of act's command files (GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH)."""
    with open(os.environ[variable], "a", encoding="utf-8") as handle:
        handle.write(text + "\n")


def harness_dir() -> Path:
    """Return the harness's folder (SEEK_K3S_ACT_DIR)."""
    value = os.environ.get("SEEK_K3S_ACT_DIR")
    if not value:
        fail("SEEK_K3S_ACT_DIR is not set: these stand-ins run only under tests/users_ci's harness")
    return Path(value)


def workspace() -> Path:
    """Return the job's workspace (GITHUB_WORKSPACE)."""
    return Path(os.environ["GITHUB_WORKSPACE"])


def checkout() -> None:
    """Clone the snapshot repository at GITHUB_SHA into the workspace, as actions/checkout does."""
    source = harness_dir() / "source"
    sha = os.environ["GITHUB_SHA"]
    target = workspace()
    if any(target.iterdir()):
        fail(f"{target} is not empty: the stand-in checks out into a fresh workspace only")
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(source), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", "--detach", sha], check=True)
    if inp("persist-credentials", "true") == "false":
        print("persist-credentials: false (nothing to persist: a local clone has no token)")
    print(f"checked out {sha} into {target}")


def hash_files(patterns: list[str]) -> list[Path]:
    """Return the workspace files that the glob patterns match (relative patterns)."""
    found: list[Path] = []
    for pattern in patterns:
        found += [Path(p) for p in glob.glob(str(workspace() / pattern), recursive=True) if Path(p).is_file()]
    return found


def setup_python() -> None:
    """Put the machine's python<version> first on PATH, through the tool cache, as setup-python does."""
    version = inp("python-version")
    if not re.fullmatch(r"3\.\d+", version):
        fail(f"python-version {version!r}: the stand-in serves major.minor versions only")
    python = shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin")
    if not python:
        fail(f"The version '{version}' with architecture 'x64' was not found for this operating system.")
    full = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                          check=True, capture_output=True, text=True).stdout.strip()
    if inp("cache") == "pip":
        patterns = lines(inp("cache-dependency-path")) or ["**/requirements.txt"]
        if not hash_files(patterns):
            # The real action's message (actions/setup-python src/cache-distributions/cache-distributor.ts).
            fail("No file in " + str(workspace()) + " matched to [" + ",".join(patterns) +
                 "], make sure you have checked out the target repository")
    location = Path(os.environ["RUNNER_TOOL_CACHE"]) / "Python" / full / "x64"
    (location / "bin").mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3", f"python{version}"):
        link = location / "bin" / name
        if not link.is_symlink():
            link.symlink_to(python)
    append("GITHUB_PATH", str(location / "bin"))
    append("GITHUB_ENV", f"pythonLocation={location}")
    append("GITHUB_OUTPUT", f"python-version={full}")
    append("GITHUB_OUTPUT", f"python-path={location / 'bin' / 'python'}")
    print(f"Python {full} from {python} (the machine's), first on PATH through {location}/bin")


def go_directive(path: Path) -> str:
    """Return the Go version a go.mod asks for (its toolchain line, else its go line)."""
    text = path.read_text(encoding="utf-8")
    toolchain = re.search(r"^toolchain go(\S+)", text, re.M)
    go = re.search(r"^go (\S+)", text, re.M)
    if not (toolchain or go):
        fail(f"{path} has no go or toolchain line")
    return (toolchain or go).group(1)


def setup_go() -> None:
    """Put the machine's Go on PATH when it is the version asked for, as setup-go would install it."""
    wanted = inp("go-version")
    if inp("go-version-file"):
        wanted = go_directive(workspace() / inp("go-version-file"))
    if not wanted:
        fail("go-version or go-version-file must be set")
    goroot = Path("/usr/local/go")
    have = subprocess.run([str(goroot / "bin" / "go"), "env", "GOVERSION"], check=True, capture_output=True,
                          text=True, env={**os.environ, "GOTOOLCHAIN": "local"}).stdout.strip().removeprefix("go")
    # setup-go resolves "1.26" or "1.26.x" to the newest 1.26 patch release; "1.24.0" exactly.
    prefix = wanted.removesuffix(".x")
    if not (have == prefix or have.startswith(prefix + ".")):
        fail(f"the workflow asks for Go {wanted}; this machine has go{have} and the stand-in installs nothing")
    for pattern in lines(inp("cache-dependency-path")):
        if not hash_files([pattern]):
            fail(f"Some specified paths were not resolved, unable to cache dependencies. ({pattern})")
    append("GITHUB_PATH", str(goroot / "bin"))
    # setup-go exports GOTOOLCHAIN=local so that `go` never fetches another toolchain.
    append("GITHUB_ENV", "GOTOOLCHAIN=local")
    append("GITHUB_OUTPUT", f"go-version={have}")
    print(f"Go {have} from {goroot} (the machine's), GOTOOLCHAIN=local")


def cache_paths() -> tuple[list[Path], list[Path]]:
    """Return the included and excluded paths of the cache's path input (~ expanded, globs allowed)."""
    include: list[Path] = []
    exclude: list[Path] = []
    for line in lines(inp("path")):
        target = exclude if line.startswith("!") else include
        pattern = os.path.expanduser(line.lstrip("!"))
        if not os.path.isabs(pattern):
            pattern = str(workspace() / pattern)
        target += [Path(p) for p in glob.glob(pattern)]
    return include, exclude


def cache_file(key: str) -> Path:
    """Return the local file of a cache key."""
    return harness_dir() / "cache" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".tar")


def cache_restore() -> None:
    """Restore the newest cache whose key matches exactly, else starts with a restore-keys prefix."""
    key = inp("key")
    store = harness_dir() / "cache"
    store.mkdir(parents=True, exist_ok=True)
    matched = ""
    exact = cache_file(key)
    if exact.exists():
        chosen, matched = exact, key
    else:
        chosen = None
        for prefix in lines(inp("restore-keys")):
            candidates = sorted((p for p in store.glob("*.key") if p.read_text().startswith(prefix)),
                                key=lambda p: p.stat().st_mtime, reverse=True)
            if candidates:
                matched = candidates[0].read_text()
                chosen = cache_file(matched)
                break
    append("GITHUB_OUTPUT", f"cache-primary-key={key}")
    if chosen is None:
        append("GITHUB_OUTPUT", "cache-hit=false")
        print(f"Cache not found for input keys: {key}")
        return
    with tarfile.open(chosen) as archive:
        archive.extractall("/")  # noqa: S202 (our own archives)
    append("GITHUB_OUTPUT", f"cache-hit={'true' if matched == key else 'false'}")
    append("GITHUB_OUTPUT", f"cache-matched-key={matched}")
    print(f"Cache restored from key: {matched}")


def cache_save() -> None:
    """Save the paths under the key, as actions/cache/save does (an existing key is not overwritten)."""
    key = inp("key")
    target = cache_file(key)
    if target.exists():
        print(f"Cache already exists for key {key}: not saved again")
        return
    include, exclude = cache_paths()
    if not include:
        # actions/cache/save warns and saves nothing when the paths resolve to no file.
        print("::warning::Path Validation Error: Path(s) specified in the action for caching do(es) not exist, "
              "hence no cache is being saved.")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        for path in include:
            # Run as the runner user, as on GitHub: a file it cannot read fails the save.
            archive.add(path, filter=lambda info: None if any(
                Path("/" + info.name) == ex or Path("/" + info.name).is_relative_to(ex) for ex in exclude) else info)
    partial.rename(target)
    target.with_suffix(".key").write_text(key)
    print(f"Cache saved with key: {key} ({target.stat().st_size} bytes)")


def upload_artifact() -> None:
    """Copy the files the path input matches into artifacts/<name>/, as upload-artifact uploads them."""
    name = inp("name", "artifact")
    hidden = inp("include-hidden-files", "false") == "true"
    include: list[Path] = []
    exclude: list[str] = []
    for line in lines(inp("path")):
        if line.startswith("!"):
            exclude.append(os.path.expanduser(line[1:]))
            continue
        pattern = os.path.expanduser(line)
        if not os.path.isabs(pattern):
            pattern = str(workspace() / pattern)
        for match in glob.glob(pattern, recursive=True, include_hidden=hidden):
            path = Path(match)
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            include += [f for f in files if hidden or not any(part.startswith(".") for part in
                                                              f.relative_to(path.parent).parts)]
    include = [f for f in include if not any(fnmatch.fnmatch(str(f), ex) for ex in exclude)]
    if not include:
        how = inp("if-no-files-found", "warn")
        message = f"No files were found with the provided path: {inp('path')}. No artifacts will be uploaded."
        if how == "error":
            fail(message)
        print(f"::{'warning' if how == 'warn' else 'notice'}::{message}")
        return
    root = Path(os.path.commonpath([str(f.parent) for f in include]))
    target = harness_dir() / "artifacts" / name
    if target.exists():
        fail(f"an artifact named {name} was already uploaded in this run")
    for path in include:
        destination = target / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)  # PermissionError on an unreadable file, as on GitHub
    print(f"Artifact {name}: {len(include)} files from {root}")


COMMANDS = {"checkout": checkout, "setup-python": setup_python, "setup-go": setup_go,
            "cache-restore": cache_restore, "cache-save": cache_save, "upload-artifact": upload_artifact}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]]()
