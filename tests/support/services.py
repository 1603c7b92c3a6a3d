"""Real components for the tests in this directory: a distribution registry and a Docker engine.

Both run as child processes of the test session, listen only on loopback or on unix sockets, keep
their state in temporary directories and are stopped again at the end of the session.

When a component cannot be used (a tool is missing, the engine does not start), ``unavailable``
skips the test with the reason; with ``CI=true`` in the environment it fails the test instead, so
CI never passes by skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

# Proxy settings must never send loopback traffic elsewhere; the children get none of them.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def in_ci() -> bool:
    """True when the environment says this is a CI run (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the current test because a real component is missing; under ``CI=true``, fail it."""
    if in_ci():
        pytest.fail(f"{reason} (a skip under CI=true is a failure)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The absolute path of the executable ``name``, or skip/fail when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name!r} is not installed (not found on PATH)")
    return path


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: ours without proxy settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key.lower() not in _PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env.update(extra)
    return env


def run(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command and capture its output; with ``check``, fail the test on a non-zero exit."""
    result = subprocess.run(
        list(args),
        env=env if env is not None else child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"command failed with exit code {result.returncode}: {' '.join(args)}\n"
            f"--- stdout ---\n{result.stdout.decode(errors='replace')}\n"
            f"--- stderr ---\n{result.stderr.decode(errors='replace')}",
            pytrace=False,
        )
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes], *, grace: float) -> None:
    """Stop a child started in its own session: SIGTERM, then SIGKILL to its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # The child leads its own process group (start_new_session); end whatever is left of it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@contextlib.contextmanager
def run_until_ready(
    argv: list[str], output: Path, ready: Callable[[], bool], *, timeout: float, grace: float = 10
) -> Iterator[bool]:
    """Start ``argv`` in its own session (output appended to ``output``) and wait for
    ``ready()``; yields whether it got there before exiting or timing out, and stops the
    process (and its group) when the block ends."""
    with output.open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if ready():
                yield True
                return
            time.sleep(0.05)
        yield False
    finally:
        _stop(process, grace=grace)


def _unmount_below(root: Path) -> None:
    """Detach mounts left below ``root`` (deepest first) so that it can be removed."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return
    prefix = str(root.resolve()) + "/"
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_tree(root: Path) -> None:
    """Remove a directory tree that a daemon may have left mounts in."""
    _unmount_below(root)
    shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Distribution registry


@dataclass(frozen=True)
class Registry:
    """A running distribution registry on 127.0.0.1 (plain HTTP unless started with TLS)."""

    host: str
    """``127.0.0.1:PORT``; the registry part of references."""
    root: Path
    """The storage directory."""
    log: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def log_offset(self) -> int:
        """The current end of the log, to pass to ``requests`` or ``blob_downloads`` later."""
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[Request]:
        """The requests in the access log after offset ``since``, in the order logged."""
        with self.log.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        return [
            Request(match["method"], match["path"], int(match["status"]), match["agent"])
            for match in _ACCESS_LOG_LINE.finditer(text)
        ]

    def blob_downloads(self, since: int = 0) -> list[Request]:
        """The blob GETs (``GET /v2/<repository>/blobs/<digest>``) after offset ``since``."""
        return [request for request in self.requests(since) if request.blob is not None]


@dataclass(frozen=True)
class Request:
    """One request the registry answered, from its access log."""

    method: str
    path: str
    status: int
    agent: str

    @property
    def blob(self) -> str | None:
        """The digest, if this is a blob download."""
        match = _BLOB_PATH.fullmatch(self.path)
        return match["digest"] if match and self.method == "GET" else None


# Access log lines are in the Apache combined format.
_ACCESS_LOG_LINE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" '
    r'(?P<status>[0-9]{3}) \S+ "[^"]*" "(?P<agent>[^"]*)"$',
    re.MULTILINE,
)
_BLOB_PATH = re.compile(r"/v2/(?P<repository>\S+)/blobs/(?P<digest>sha256:[0-9a-f]{64})(\?\S*)?")


def _http_status(url: str, timeout: float = 2) -> int | None:
    # A probe asks whether our child answers, not whether its certificate is trusted.
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=unverified)
    )
    try:
        with opener.open(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _registry_config(
    root: Path, port: int, tls: tuple[Path, Path] | None, auth: dict[str, Any] | None
) -> str:
    # JSON is valid YAML, which is what the registry reads.
    config: dict[str, Any] = {
        "version": "0.1",
        # The access log goes to the log file too: tests read the requests from it.
        "log": {"level": "warn", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "bulkpull-tests"},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    if auth is not None:
        config["auth"] = auth
    return json.dumps(config, indent=2)


@contextlib.contextmanager
def start_registry(
    workdir: Path,
    *,
    attempts: int = 3,
    timeout: float = 30,
    storage: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    auth: dict[str, Any] | None = None,
) -> Iterator[Registry]:
    """Run ``docker-registry serve`` with storage in ``workdir`` until the context exits.

    ``storage`` serves an existing registry's storage instead (several registries may share
    one); ``tls`` is a certificate and key file to serve HTTPS with; ``auth`` is the registry's
    ``auth`` configuration section.
    """
    binary = require_tool("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    scheme = "https" if tls else "http"
    status = 401 if auth else 200
    last_log = ""
    for attempt in range(attempts):
        port = free_port()
        root = storage or workdir / f"storage-{attempt}"
        root.mkdir(exist_ok=True)
        config = workdir / f"config-{attempt}.yml"
        config.write_text(_registry_config(root, port, tls, auth))
        log = workdir / f"registry-{attempt}.log"

        def ready(port: int = port, log: Path = log) -> bool:
            # Our registry logs the probe; another server that got the port would not.
            answered = _http_status(f"{scheme}://127.0.0.1:{port}/v2/") == status
            return answered and f'"GET /v2/ HTTP/1.1" {status}'.encode() in log.read_bytes()

        with run_until_ready([binary, "serve", str(config)], log, ready, timeout=timeout) as up:
            if not up:
                # Exited (for instance: the port was taken meanwhile) or never answered.
                last_log = log_tail(log)
                continue
            yield Registry(f"127.0.0.1:{port}", root, log, scheme)
            return
    unavailable(f"docker-registry did not start after {attempts} attempts; log:\n{last_log}")


# --------------------------------------------------------------------------------------------
# Docker engine


@dataclass(frozen=True)
class DockerEngine:
    """A private Docker engine reachable on a unix socket."""

    socket: Path
    data_root: Path
    log: Path
    config_dir: Path
    """``DOCKER_CONFIG`` for the client: keeps the user's client configuration out."""

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value."""
        return f"unix://{self.socket}"

    def remove_all_images(self) -> None:
        """Forget every image, so that the next load cannot reuse layers it already has."""
        listed = self.docker("image", "ls", "--all", "--quiet").stdout.decode().split()
        if listed:
            self.docker("image", "rm", "--force", *sorted(set(listed)))

    @property
    def containerd_socket(self) -> Path:
        """The socket of the containerd that this dockerd started and uses."""
        return self.socket.parent / "containerd" / "containerd.sock"

    def ctr(
        self, namespace: str, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run containerd's ``ctr`` in ``namespace`` against this engine's containerd."""
        command = ["ctr", "--address", str(self.containerd_socket), "--namespace", namespace]
        return run([*command, *args], env=self.env, timeout=timeout, check=check)

    @property
    def env(self) -> dict[str, str]:
        """A child environment whose ``docker`` talks to this engine."""
        return child_env(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.config_dir))

    def docker(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the docker client against this engine."""
        return run(["docker", *args], env=self.env, timeout=timeout, check=check)


def _docker_precondition() -> None:
    for tool in ("dockerd", "docker"):
        require_tool(tool)
    if os.geteuid() != 0:
        unavailable("dockerd needs root to run a private engine (tests run as a non-root user)")


@contextlib.contextmanager
def start_dockerd(workdir: Path, *, timeout: float = 60) -> Iterator[DockerEngine]:
    """Run a private ``dockerd`` (vfs storage, no networking) until the context exits.

    State goes to ``workdir``; sockets go to a short directory in /tmp because unix socket paths
    are limited to 107 bytes (dockerd puts its containerd's socket below ``--exec-root``).
    """
    _docker_precondition()
    data_root = workdir / "data"
    data_root.mkdir(parents=True)
    config_dir = workdir / "client"
    config_dir.mkdir()
    (config_dir / "config.json").write_text("{}")
    exec_root = Path(tempfile.mkdtemp(prefix="bp-", dir="/tmp"))
    daemon_config = workdir / "daemon.json"
    daemon_config.write_text("{}")  # keeps /etc/docker/daemon.json out
    sock = exec_root / "docker.sock"
    log = workdir / "dockerd.log"
    # containerd namespaces of our own: even a shared containerd keeps our containers apart.
    tag = f"bulkpull-{secrets.token_hex(4)}"
    args = [
        "dockerd",
        "--config-file", str(daemon_config),
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--bridge=none",
        "--userland-proxy=false",
        "--storage-driver=vfs",
        "--data-root", str(data_root),
        "--exec-root", str(exec_root),
        "--pidfile", str(exec_root / "docker.pid"),
        "--containerd-namespace", f"{tag}-moby",
        "--containerd-plugins-namespace", f"{tag}-plugins",
        "-H", f"unix://{sock}",
    ]  # fmt: skip
    engine = DockerEngine(sock, data_root, log, config_dir)

    def answers() -> bool:
        return sock.exists() and engine.docker("info", timeout=20, check=False).returncode == 0

    containerd_pid = None
    try:
        with run_until_ready(args, log, answers, timeout=timeout, grace=20) as up:
            try:
                if not up:
                    unavailable(f"dockerd did not start within {timeout}s:\n{log_tail(log)}")
                yield engine
            finally:
                # Read while dockerd runs: it removes the pid file of its containerd on exit.
                containerd_pid = _read_pid(exec_root / "containerd" / "containerd.pid")
    finally:
        if containerd_pid is not None:
            _stop_pid(containerd_pid, exec_root)
        remove_tree(exec_root)
        remove_tree(data_root)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _stop_pid(pid: int, exec_root: Path) -> None:
    """Kill the containerd that dockerd started for us, if dockerd left it running."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # already gone
    if str(exec_root).encode() not in cmdline:
        return  # the pid was reused by an unrelated process
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
