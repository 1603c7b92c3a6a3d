"""Processes for the benchmarks: private registries, pushes, and the helpers measured runs use.

Everything talks to 127.0.0.1 only; children get an environment without proxy settings. Each
child starts in a session of its own, so that an interrupted run can end it together with its
children (xargs and its skopeo processes, for instance) without touching anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench_images import OCI_MANIFEST, BuiltImage

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")
_LOOPBACK = "127.0.0.1"
# What a registry should answer a manifest request with: any of these, as pushed.
_MANIFEST_TYPES = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def progress(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name!r} is not installed (not found on PATH)")
    return path


def child_env(tmpdir: Path) -> dict[str, str]:
    """Our environment without proxy settings, with temporary files kept below ``tmpdir``.

    ``PYTHONDONTWRITEBYTECODE`` is dropped too: an installed package has its bytecode compiled,
    and without it every timed bulkpull run would compile its own modules again.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in _PROXY_VARIABLES and key != "PYTHONDONTWRITEBYTECODE"
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["TMPDIR"] = str(tmpdir)
    return env


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no output: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def kill_group(leader: int) -> None:
    """SIGKILL the process group that ``leader`` leads, if it is still there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)


def run_checked(
    args: Sequence[str], *, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[bytes]:
    """Run a setup command (not measured); raise :class:`BenchError` with its output on failure."""
    try:
        result = subprocess.run(
            list(args),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f}s: {shlex.join(args)}") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        raise BenchError(f"exit code {result.returncode}: {shlex.join(args)}\n{output[-4000:]}")
    return result


# --------------------------------------------------------------------------------------------
# The registry


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(
    url: str, *, headers: dict[str, str] | None = None, timeout: float = 5, method: str = "GET"
) -> tuple[int, dict[str, str]]:
    """Status and headers of a request to a loopback URL (proxies never used)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
            return response.status, dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items())


@dataclass(frozen=True)
class Registry:
    """A distribution registry on 127.0.0.1, plain HTTP, storage in a temporary directory."""

    host: str
    pid: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def cpu_seconds(self) -> float:
        """User plus system seconds the registry has used so far (all its threads)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rpartition(")")[2].split()
        # After "pid (comm)": state is field 3, utime field 14, stime field 15 (1-based).
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def written_bytes(self) -> int:
        """Bytes the registry has sent towards its disk so far (``/proc/PID/io`` write_bytes)."""
        try:
            for line in Path(f"/proc/{self.pid}/io").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "write_bytes":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def served_digest(self, reference: str) -> tuple[int, str | None]:
        """Status and ``Docker-Content-Digest`` of a ``HEAD`` of the manifest ``repo:tag``."""
        repository, _, tag = reference.rpartition(":")
        status, headers = http_get(
            f"{self.url}/v2/{repository}/manifests/{tag}",
            headers={"Accept": _MANIFEST_TYPES},
            method="HEAD",
        )
        return status, {key.lower(): value for key, value in headers.items()}.get(
            "docker-content-digest"
        )


def _registry_config(root: Path, port: int) -> str:
    config = {  # JSON is YAML, which the registry reads
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"{_LOOPBACK}:{port}", "secret": "bulkpull-benchmarks"},
    }
    return json.dumps(config, indent=2)


@contextlib.contextmanager
def start_registry(
    workdir: Path,
    *,
    env: dict[str, str],
    attempts: int = 3,
    timeout: float = 30,
    announce: bool = True,
) -> Iterator[Registry]:
    """Run ``docker-registry serve`` until the context exits; storage goes below ``workdir``."""
    binary = require_tool("docker-registry")
    last_log = ""
    for attempt in range(attempts):
        port = free_port()
        root = workdir / f"registry-storage-{attempt}"
        root.mkdir(parents=True)
        config = workdir / f"registry-{attempt}.yml"
        config.write_text(_registry_config(root, port))
        log = workdir / f"registry-{attempt}.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            ready = False
            while process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if http_get(f"http://{_LOOPBACK}:{port}/v2/", timeout=2)[0] == 200:
                        ready = True
                        break
                time.sleep(0.1)
            if not ready:
                last_log = tail(log)
                continue
            if announce:
                progress(f"registry listening on {_LOOPBACK}:{port} (pid {process.pid})")
            yield Registry(f"{_LOOPBACK}:{port}", process.pid, log)
            return
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            if process.poll() is None:
                kill_group(process.pid)
                process.wait(timeout=10)
    raise BenchError(f"docker-registry did not start after {attempts} attempts:\n{last_log}")


class TargetRegistry:
    """The registry the push and copy scenarios write to, started afresh on demand.

    A fresh registry with empty storage for each cold run, not a fresh namespace in one
    registry: blobs of an earlier run would be mounted or skipped across repositories and make
    later runs cheaper than the first.
    """

    def __init__(self, workdir: Path, *, env: dict[str, str], namespace: str) -> None:
        self.workdir = workdir
        self.env = env
        self.namespace = namespace
        self.filled_by: str | None = None
        """Which run put the images there, so that a run that needs them can tell."""
        self._running = contextlib.ExitStack()
        self._registry: Registry | None = None
        self._storage: Path | None = None
        self._started = 0

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            raise BenchError("the target registry is not running")
        return self._registry

    def fresh(self) -> Registry:
        """Stop the running target (its storage removed) and start an empty one."""
        self.close()
        self._started += 1
        self._storage = self.workdir / f"target-{self._started}"
        self._registry = self._running.enter_context(
            start_registry(self._storage, env=self.env, announce=False)
        )
        return self._registry

    def destination(self, repository_tag: str) -> str:
        """``127.0.0.1:PORT/NAMESPACE/repo:tag`` in the running target."""
        return f"{self.registry.host}/{self.namespace}/{repository_tag}"

    def close(self) -> None:
        self._running.close()
        self._registry = None
        self.filled_by = None
        if self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Pushing


def push_images(
    registry: Registry,
    layout: Path,
    destinations: dict[str, BuiltImage],
    *,
    env: dict[str, str],
    parallel: int = 4,
) -> None:
    """Push tagged images from the OCI layout (``repo:tag`` → image), byte for byte, and check.

    Not measured: this is setup. Each push is checked by asking the registry for the manifest
    digest it serves.
    """
    skopeo = require_tool("skopeo")

    def push(destination: str, image: BuiltImage) -> None:
        run_checked(
            [
                skopeo,
                "--insecure-policy",
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
                f"oci:{layout}:{image.tag}",
                f"docker://{registry.host}/{destination}",
            ],
            env=env,
        )
        status, served = registry.served_digest(destination)
        if status != 200 or served != image.manifest.digest:
            raise BenchError(
                f"{destination}: registry answers {status} with digest {served}, "
                f"pushed {image.manifest.digest}"
            )

    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        futures = [pool.submit(push, dest, image) for dest, image in destinations.items()]
        for future in futures:
            future.result()
    finally:
        # On failure or interruption, start no further pushes; running ones end soon.
        pool.shutdown(wait=True, cancel_futures=True)
