"""Build, start and stop a real Kubernetes control plane for the tests.

The binaries (etcd, kube-apiserver, kube-controller-manager, kubectl) are built from the
official Go modules by the Go module next to this file. The build is cached outside the
repository, under ``${SEEK_K3S_CACHE:-~/.cache/seek-k3s}/controlplane/<key>/bin``, where
``<key>`` is the sha256 of go.sum (plus go.mod and our main packages, so an edit to them
also rebuilds). A running control plane lives in a state directory: certificates, etcd data,
logs, process ids and the admin kubeconfig.

There is no kubelet and no scheduler: Pods are created by the controllers but stay Pending.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MODULE_DIR = Path(__file__).resolve().parent
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
# Stop order: the reverse of the start order.
PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager")
SERVICE_CIDR = "10.96.0.0/16"
# Bump when build() changes how the binaries are built: it is part of the cache key.
BUILD_RECIPE = "2: CGO_ENABLED=0 -trimpath -ldflags='-s -w' + version stamps"
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
DEFAULT_PORTS = {"etcd": 12379, "etcd_peer": 12380, "apiserver": 16443, "controller_manager": 20257}


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or stopped; the message says why."""


class GoMissingError(ControlPlaneError):
    """No Go toolchain is available to build the control plane."""


# --------------------------------------------------------------------------------------------
# Build


def cache_root() -> Path:
    """Return the cache directory shared by every checkout on this machine."""
    base = os.environ.get("SEEK_K3S_CACHE") or str(Path.home() / ".cache" / "seek-k3s")
    return Path(base) / "controlplane"


def build_key() -> str:
    """Return the sha256 that keys the build cache: go.sum, go.mod, our mains, the recipe."""
    digest = hashlib.sha256(BUILD_RECIPE.encode() + b"\0")
    files = [MODULE_DIR / "go.sum", MODULE_DIR / "go.mod", *sorted((MODULE_DIR / "cmd").rglob("*.go"))]
    for path in files:
        digest.update(str(path.relative_to(MODULE_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def bin_dir() -> Path:
    """Return the directory that holds (or will hold) the binaries of this source tree."""
    return cache_root() / build_key() / "bin"


def is_built(directory: Path | None = None) -> bool:
    """Tell whether every binary is present in the cache."""
    directory = directory or bin_dir()
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def _go_version(go: str) -> tuple[int, int]:
    """Return (major, minor) of a go command, (0, 0) when it cannot tell."""
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True,
                             timeout=60, check=False).stdout.strip()
        major, minor = out.removeprefix("go").split(".")[:2]
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return (0, 0)


def find_go() -> str | None:
    """Return a go command new enough for go.mod (>= 1.21 switches toolchains by itself)."""
    candidates = [shutil.which("go"), "/usr/local/go/bin/go", "/usr/lib/go/bin/go"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and _go_version(candidate) >= (1, 21):
            return candidate
    return None


def version_ldflags(go: str) -> str:
    """Return -X flags that stamp the k8s.io/kubernetes module version into the binaries.

    Upstream's build scripts stamp it from git; without them the binaries would report
    v0.0.0-master, which kubectl cannot parse. The build date is the module's release time.
    """
    listed = subprocess.run([go, "list", "-m", "-json", "k8s.io/kubernetes"], cwd=MODULE_DIR,
                            capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        raise ControlPlaneError(f"`go list -m k8s.io/kubernetes` failed:\n{listed.stderr}")
    module = json.loads(listed.stdout)
    version = module["Version"]
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitCommit": "",
              "gitTreeState": "clean", "buildDate": module.get("Time", "1970-01-01T00:00:00Z")}
    return " ".join(f"-X {package}.{name}={value}" for package in VERSION_PACKAGES
                    for name, value in stamps.items())


def build(log=print) -> Path:
    """Build the binaries into the cache unless they are already there; return the bin dir.

    Raises GoMissingError when Go is not installed and ControlPlaneError when the build fails.
    Two concurrent callers are serialised with a lock file, so the second one reuses the build.
    """
    target = bin_dir()
    if is_built(target):
        return target
    go = find_go()
    if go is None:
        raise GoMissingError(
            "Go >= 1.21 is not installed (no such `go` on PATH nor in /usr/local/go/bin): cannot "
            "build the Kubernetes control plane (go.mod needs 1.24; Go >= 1.21 fetches that "
            "toolchain from the module proxy). Install Go and run `python -m tests.controlplane "
            "build`."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / "build.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(target):
            return target
        staging = target.parent / f"bin.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-trimpath -buildvcs=false")
        ldflags = f"-s -w {version_ldflags(go)}"
        command = ["nice", go, "build", f"-ldflags={ldflags}", "-o", f"{staging}/", "./cmd/..."]
        log_path = target.parent / "build.log"
        log(f"controlplane: building {', '.join(BINARIES)} into {target} (log: {log_path}); "
            "a cold build takes a while")
        started = time.monotonic()
        with open(log_path, "w", encoding="utf-8") as out:
            result = subprocess.run(command, cwd=MODULE_DIR, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
            raise ControlPlaneError(f"`{' '.join(command)}` failed with exit code "
                                    f"{result.returncode} in {MODULE_DIR}:\n{tail}")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        log(f"controlplane: built in {time.monotonic() - started:.0f}s")
    return target


# --------------------------------------------------------------------------------------------
# Certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _issue(subject: x509.Name, public_key, issuer: x509.Name, signing_key, *, ca: bool,
           usages: list | None = None, sans: list | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer)
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=not ca,
                                            content_commitment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                            encipher_only=False, decipher_only=False),
                              critical=True))
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def generate_pki(pki: Path) -> None:
    """Write a CA, the API server serving cert, client certs and the service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca_key = _key()
    ca_name = _name("seek-k3s-test-ca")
    ca_cert = _issue(ca_name, ca_key.public_key(), ca_name, ca_key, ca=True)
    _write_key(pki / "ca.key", ca_key)
    _write_cert(pki / "ca.crt", ca_cert)

    service_ip = next(iter(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    sans = [x509.DNSName(name) for name in
            ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local")]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(service_ip)]
    server_key = _key()
    _write_key(pki / "apiserver.key", server_key)
    _write_cert(pki / "apiserver.crt",
                _issue(_name("kube-apiserver"), server_key.public_key(), ca_name, ca_key,
                       ca=False, usages=[ExtendedKeyUsageOID.SERVER_AUTH], sans=sans))

    for stem, common_name, organization in (("admin", "seek-k3s-admin", "system:masters"),
                                            ("controller-manager", "system:kube-controller-manager",
                                             None)):
        client_key = _key()
        _write_key(pki / f"{stem}.key", client_key)
        _write_cert(pki / f"{stem}.crt",
                    _issue(_name(common_name, organization), client_key.public_key(), ca_name,
                           ca_key, ca=False, usages=[ExtendedKeyUsageOID.CLIENT_AUTH]))

    # Service-account tokens are signed with RSA, as kubeadm and k3s do.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    """Write a kubeconfig for `user` (a cert/key stem in `pki`) with embedded-path credentials."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "seek-k3s-test",
                      "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(pki / f"{user}.crt"),
                                          "client-key": str(pki / f"{user}.key")}}],
        "contexts": [{"name": "seek-k3s-test",
                      "context": {"cluster": "seek-k3s-test", "user": user}}],
        "current-context": "seek-k3s-test",
    }
    # JSON is valid YAML: kubectl and the kubernetes client read it as a kubeconfig.
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)


# --------------------------------------------------------------------------------------------
# Processes


def port_in_use(port: int) -> bool:
    """Tell whether something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports that are free right now."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def _pid_alive(pid: int, binary: str) -> bool:
    """Tell whether `pid` still runs `binary` (guards against a recycled process id)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and os.path.basename(cmdline) == binary


def rss_kib(pid: int) -> int:
    """Return the resident memory of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class ControlPlane:
    """A control plane whose files live in `state_dir`.

    Use `start()` and `stop()`, or `with ControlPlane(...) as cp:`. After start, `kubeconfig`
    is an admin kubeconfig, `kubectl` the kubectl binary and `env` an environment for
    subprocesses (KUBECONFIG, K8S_AUTH_KUBECONFIG, PATH with kubectl first).
    """

    state_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    binaries: Path | None = None
    pids: dict[str, int] = field(default_factory=dict)
    _children: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        if self.binaries is None:
            self.binaries = bin_dir()

    # -- paths -----------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """The admin (system:masters) kubeconfig."""
        return self.state_dir / "kubeconfig"

    @property
    def kubectl(self) -> Path:
        """The kubectl binary built with the control plane."""
        return self.binaries / "kubectl"

    @property
    def server(self) -> str:
        """The API server URL."""
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus the variables that point kubectl and kubernetes.core at this API."""
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig),
                    K8S_AUTH_KUBECONFIG=str(self.kubeconfig),
                    PATH=f"{self.binaries}{os.pathsep}{os.environ.get('PATH', '')}")

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    # -- state -----------------------------------------------------------------------------
    @classmethod
    def load(cls, state_dir: Path) -> "ControlPlane":
        """Return the control plane recorded in `state_dir` by a previous start."""
        state_file = Path(state_dir) / "state.json"
        if not state_file.exists():
            raise ControlPlaneError(f"no control plane recorded in {state_dir} (no state.json)")
        data = json.loads(state_file.read_text(encoding="utf-8"))
        return cls(state_dir=Path(state_dir), ports=data["ports"], binaries=Path(data["binaries"]),
                   pids=data["pids"])

    def _save(self) -> None:
        data = {"ports": self.ports, "binaries": str(self.binaries), "pids": self.pids,
                "server": self.server, "kubeconfig": str(self.kubeconfig),
                "kubectl": str(self.kubectl)}
        self._state_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def running(self) -> dict[str, bool]:
        """Map each recorded process to whether it still runs."""
        return {name: _pid_alive(pid, name) for name, pid in self.pids.items()}

    def rss(self) -> dict[str, int]:
        """Resident memory in KiB of each running process."""
        return {name: rss_kib(pid) for name, pid in self.pids.items() if _pid_alive(pid, name)}

    # -- start -----------------------------------------------------------------------------
    def start(self, timeout: float = 180.0, log=print) -> "ControlPlane":
        """Start etcd, kube-apiserver and kube-controller-manager and wait until they serve.

        On any failure everything started so far is stopped and ControlPlaneError is raised,
        with the tail of the failing component's log.
        """
        if not is_built(self.binaries):
            raise ControlPlaneError(
                f"the control plane is not built (no binaries in {self.binaries}); run "
                "`python -m tests.controlplane build` first (a cold build takes a while)")
        if self._state_file.exists():
            previous = ControlPlane.load(self.state_dir)
            if any(previous.running().values()):
                raise ControlPlaneError(
                    f"a control plane recorded in {self.state_dir} is still running "
                    f"(pids {previous.pids}); run `python -m tests.controlplane stop "
                    f"--state-dir {self.state_dir}` first")
        busy = {name: port for name, port in self.ports.items() if port_in_use(port)}
        if busy:
            raise ControlPlaneError(
                "cannot start the control plane: these loopback ports are already in use: "
                + ", ".join(f"{name}={port}" for name, port in busy.items())
                + ". Stop whatever listens there (another control plane? `python -m "
                "tests.controlplane stop`) or choose other ports (--api-port, --etcd-port, "
                "--etcd-peer-port, --controller-manager-port or SEEK_K3S_CP_*_PORT).")

        started_at = time.monotonic()
        for sub in ("etcd", "logs", "controller-manager"):
            shutil.rmtree(self.state_dir / sub, ignore_errors=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = self.state_dir / "pki"
        shutil.rmtree(pki, ignore_errors=True)
        generate_pki(pki)
        (self.state_dir / "logs").mkdir()
        # A stable path to kubectl and the other binaries: <state_dir>/bin/kubectl.
        link = self.state_dir / "bin"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(self.binaries, target_is_directory=True)
        write_kubeconfig(self.kubeconfig, self.server, pki, "admin")
        kcm_kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        write_kubeconfig(kcm_kubeconfig, self.server, pki, "controller-manager")
        self.pids = {}
        try:
            self._spawn("etcd", [
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-url=http://127.0.0.1:{self.ports['etcd']}",
                f"--listen-peer-url=http://127.0.0.1:{self.ports['etcd_peer']}",
            ])
            self._wait("etcd", lambda: self._http_ok(f"http://127.0.0.1:{self.ports['etcd']}/health"),
                       timeout)
            self._spawn("kube-apiserver", [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={self.state_dir / 'apiserver'}",
            ])
            self._wait("kube-apiserver", self._apiserver_ready, timeout)
            self._spawn("kube-controller-manager", [
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['controller_manager']}",
                f"--cert-dir={self.state_dir / 'controller-manager'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--profiling=false",
            ])
            self._wait("kube-controller-manager", lambda: self._http_ok(
                f"https://127.0.0.1:{self.ports['controller_manager']}/healthz", verify=False),
                timeout)
            # The service-account controllers make `default` usable: wait for its ServiceAccount.
            self._wait("kube-controller-manager", lambda: self._api_get(
                "/api/v1/namespaces/default/serviceaccounts/default"), timeout)
        except BaseException:
            self.stop(log=lambda *_: None)
            raise
        log(f"controlplane: ready in {time.monotonic() - started_at:.1f}s at {self.server}; "
            f"KUBECONFIG={self.kubeconfig}")
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        log_path = self.state_dir / "logs" / f"{name}.log"
        with open(log_path, "ab") as out:
            process = subprocess.Popen([str(self.binaries / name), *args], stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=self.state_dir, start_new_session=True)
        self.pids[name] = process.pid
        self._children[name] = process
        self._save()

    def _wait(self, name: str, probe, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._children[name].poll() is not None:
                raise ControlPlaneError(f"{name} exited with code {self._children[name].returncode} "
                                        f"during start-up:\n{self.log_tail(name)}")
            if probe():
                return
            time.sleep(0.3)
        raise ControlPlaneError(f"{name} not ready after {timeout:.0f}s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, size: int = 3000) -> str:
        """The end of a component's log, to explain a failure."""
        path = self.state_dir / "logs" / f"{name}.log"
        try:
            return f"--- {path} (tail) ---\n" + path.read_text(errors="replace")[-size:]
        except OSError:
            return f"(no log at {path})"

    def _ssl_context(self) -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    @staticmethod
    def _http_ok(url: str, verify: bool = True) -> bool:
        context = None
        if url.startswith("https") and not verify:
            # The controller manager serves a self-signed certificate on loopback.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=3, context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _api_get(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.server + path, timeout=5,
                                        context=self._ssl_context()) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _apiserver_ready(self) -> bool:
        return self._api_get("/readyz")

    def readyz(self) -> bool:
        """Tell whether the API server answers /readyz with 200."""
        return self._apiserver_ready()

    # -- stop ------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0, log=print) -> None:
        """Stop every process this control plane started (by pid, newest first).

        SIGTERM first, SIGKILL after `timeout` seconds. Processes started by this Python
        process are waited for; processes recorded by another one (the command line) are
        recognised by pid and binary name, so a recycled pid is never signalled.
        """
        for name in reversed(list(self.pids)):
            pid = self.pids[name]
            child = self._children.get(name)
            if child is not None:
                if child.poll() is None:
                    child.terminate()
                    try:
                        child.wait(timeout)
                    except subprocess.TimeoutExpired:
                        log(f"controlplane: {name} (pid {pid}) ignored SIGTERM, killing it")
                        child.kill()
                        child.wait()
                    log(f"controlplane: stopped {name} (pid {pid})")
                continue
            if not _pid_alive(pid, name):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid, name) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _pid_alive(pid, name):
                log(f"controlplane: {name} (pid {pid}) ignored SIGTERM, killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            log(f"controlplane: stopped {name} (pid {pid})")
        self.pids = {}
        self._children = {}
        if self.state_dir.exists():
            self._save()

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for tests -----------------------------------------------------------------
    def run_kubectl(self, *args: str, check: bool = True, input: str | None = None
                    ) -> subprocess.CompletedProcess:
        """Run kubectl against this API server and return the completed process (text)."""
        result = subprocess.run([str(self.kubectl), *args], env=self.env, input=input,
                                capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                    f"{result.stdout}{result.stderr}")
        return result

    def status(self) -> dict:
        """A summary: server, kubeconfig, processes with pid, running flag and RSS in KiB."""
        running = self.running()
        return {"server": self.server, "kubeconfig": str(self.kubeconfig),
                "kubectl": str(self.kubectl), "ready": bool(running) and all(running.values())
                and self.readyz(),
                "processes": {name: {"pid": pid, "running": running[name],
                                     "rss_kib": rss_kib(pid) if running[name] else 0}
                              for name, pid in self.pids.items()}}


def default_state_dir() -> Path:
    """The state directory of the command line's control plane."""
    return Path(os.environ.get("SEEK_K3S_CP_STATE") or cache_root() / "run")


def ports_from_env() -> dict[str, int]:
    """The default ports, overridden by SEEK_K3S_CP_<NAME>_PORT variables."""
    ports = dict(DEFAULT_PORTS)
    for name in ports:
        value = os.environ.get(f"SEEK_K3S_CP_{name.upper()}_PORT")
        if value:
            ports[name] = int(value)
    return ports


__all__ = ["ControlPlane", "ControlPlaneError", "GoMissingError", "build", "bin_dir", "is_built",
           "find_go", "free_ports", "default_state_dir", "ports_from_env"]
