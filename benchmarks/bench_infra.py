"""Processes for the benchmarks: a private registry, pushes, and measured runs of the tools.

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
import threading
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
_SPAWN = Path(__file__).resolve().parent / "bench_spawn.py"


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
    """Our environment without proxy settings, with temporary files kept below ``tmpdir``."""
    env = {key: value for key, value in os.environ.items() if key.lower() not in _PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["TMPDIR"] = str(tmpdir)
    return env


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no output: {exc})"
    return "\n".join(text.splitlines()[-lines:])


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
# Measured runs


@dataclass(frozen=True)
class Measurement:
    """One timed run of a tool: one process, or several (sequential runs, xargs)."""

    wall: float
    """Seconds from start to exit."""
    cpu: float
    """User plus system seconds of the process and every child it waited for."""
    max_rss_kib: int
    """Peak resident set of the largest single process, in KiB."""
    registry_cpu: float = 0.0
    """User plus system seconds the registry spent meanwhile."""
    proxy_cpu: float = 0.0
    """User plus system seconds a proxy of the benchmark spent meanwhile (if one is used)."""
    connections: int | None = None
    """TCP connections the tool opened, where a proxy counted them."""
    exit_code: int = 0


def combine(parts: Sequence[Measurement], wall: float, registry_cpu: float) -> Measurement:
    """Processes run one after the other, as one measurement taking ``wall`` seconds."""
    return Measurement(
        wall=wall,
        cpu=sum(part.cpu for part in parts),
        max_rss_kib=max((part.max_rss_kib for part in parts), default=0),
        registry_cpu=registry_cpu,
    )


class CommandFailed(BenchError):
    def __init__(self, args: Sequence[str], what: str, log: Path) -> None:
        super().__init__(f"{what}: {shlex.join(args)}\n--- output (tail of {log}) ---\n{tail(log)}")


def _kill_group(leader: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)


def run_measured(
    args: Sequence[str],
    *,
    env: dict[str, str],
    log: Path,
    timeout: float,
    allow_failure: bool = False,
) -> Measurement:
    """Run ``args`` to its end and measure wall time, CPU time and peak RSS.

    The command is started by the small ``bench_spawn.py`` process, which times it and reads
    its resource usage with ``wait4`` (see there why not from here). Output goes to ``log``
    (appended). A timeout or an interruption ends the whole process group and raises; so does
    a non-zero exit, unless ``allow_failure`` (the exit code is then in the result).
    """
    result = log.with_name(log.name + ".result")
    result.unlink(missing_ok=True)
    with log.open("ab") as log_file:
        log_file.write(f"$ {shlex.join(args)}\n".encode())
        log_file.flush()
        process = subprocess.Popen(
            [sys.executable, "-S", "-I", str(_SPAWN), str(result), *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    pid = process.pid
    # The group id stays ours as long as its leader is not reaped: the timer kills the group
    # only under the lock and only before the main thread reaps.
    lock = threading.Lock()
    state = {"exited": False, "timed_out": False}

    def on_timeout() -> None:
        with lock:
            if not state["exited"]:
                state["timed_out"] = True
                _kill_group(pid)

    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with lock:
            state["exited"] = True
            # End whatever the command left running in its group before the group id is freed.
            _kill_group(pid)
        process.wait()
    except BaseException:
        with lock:
            state["exited"] = True
            _kill_group(pid)
        process.wait()
        raise
    finally:
        timer.cancel()
    if state["timed_out"]:
        raise CommandFailed(args, f"timed out after {timeout:.0f}s", log)
    try:
        wall, cpu, max_rss, code = result.read_text().split()
    except (OSError, ValueError) as exc:
        raise CommandFailed(args, f"could not be measured ({exc})", log) from exc
    if int(code) != 0 and not allow_failure:
        raise CommandFailed(args, f"exit code {code}", log)
    return Measurement(float(wall), float(cpu), int(max_rss), exit_code=int(code))


# --------------------------------------------------------------------------------------------
# The registry


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(
    url: str, *, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, dict[str, str]]:
    """Status and headers of a GET to a loopback URL (proxies never used)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {})
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
    workdir: Path, *, env: dict[str, str], attempts: int = 3, timeout: float = 30
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
            progress(f"registry listening on {_LOOPBACK}:{port} (pid {process.pid})")
            yield Registry(f"{_LOOPBACK}:{port}", process.pid, log)
            return
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            if process.poll() is None:
                _kill_group(process.pid)
                process.wait(timeout=10)
    raise BenchError(f"docker-registry did not start after {attempts} attempts:\n{last_log}")


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
        repository, _, tag = destination.rpartition(":")
        status, headers = http_get(
            f"{registry.url}/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
        )
        served = {key.lower(): value for key, value in headers.items()}.get("docker-content-digest")
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
