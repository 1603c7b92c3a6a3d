"""Measured runs: wall and CPU time, peak RSS, bytes written, and the disk a run occupies.

Time, CPU, RSS and I/O counts of a command come from ``bench_spawn.py`` (see there why a
separate process). Disk use is sampled from here: a thread sums the allocated size of every file
below the run's own directory every few milliseconds while the tool runs, and keeps the
largest sum. The tools write nowhere else (output, blob store, ``TMPDIR`` and working directory
all lie below it), so the peak is what the run needed at its worst.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench_infra import BenchError, kill_group, tail

_SPAWN = Path(__file__).resolve().parent / "bench_spawn.py"
_MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


@dataclass(frozen=True)
class Measurement:
    """One timed run of a tool: one process, or several (sequential runs, xargs)."""

    wall: float
    """Seconds from start to exit."""
    cpu: float
    """User plus system seconds of the process and every child it waited for."""
    max_rss_kib: int
    """Peak resident set of the largest single process, in KiB."""
    write_bytes: int | None = None
    """Bytes the tool's processes sent towards the block layer (``/proc/PID/io``)."""
    cancelled_write_bytes: int | None = None
    """Of those, bytes dropped from the page cache before they reached the disk."""
    wchar: int | None = None
    """Bytes passed to write-like calls, to files, pipes and sockets alike."""
    peak_disk: int | None = None
    """The largest allocated size of the run's directory sampled during the run."""
    disk_after: int | None = None
    """Allocated size of the run's directory when the tool has exited."""
    output_bytes: int | None = None
    """Size of the files the tool delivered (archives, blobs; not its hidden store)."""
    registry_cpu: float = 0.0
    """User plus system seconds the registries spent meanwhile."""
    registry_written: int | None = None
    """Bytes the target registry wrote meanwhile (push and copy scenarios)."""
    proxy_cpu: float = 0.0
    """User plus system seconds a proxy of the benchmark spent meanwhile (if one is used)."""
    connections: int | None = None
    """TCP connections the tool opened, where a proxy counted them."""
    exit_code: int = 0


def _sum_known(values: Sequence[int | None]) -> int | None:
    return None if any(value is None for value in values) else sum(v or 0 for v in values)


def combine(parts: Sequence[Measurement]) -> Measurement:
    """Processes run one after the other, as one measurement: their times and counts summed.

    The sum of the parts' own wall times leaves out the starts of the measuring process.
    """
    return Measurement(
        wall=sum(part.wall for part in parts),
        cpu=sum(part.cpu for part in parts),
        max_rss_kib=max((part.max_rss_kib for part in parts), default=0),
        write_bytes=_sum_known([part.write_bytes for part in parts]),
        cancelled_write_bytes=_sum_known([part.cancelled_write_bytes for part in parts]),
        wchar=_sum_known([part.wchar for part in parts]),
    )


class CommandFailed(BenchError):
    def __init__(self, args: Sequence[str], what: str, log: Path) -> None:
        super().__init__(f"{what}: {shlex.join(args)}\n--- output (tail of {log}) ---\n{tail(log)}")


def _wait_with_timeout(pid: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the spawned group's leader; on timeout end the group. True if it timed out.

    The group id stays ours as long as its leader is not reaped: the timer kills the group only
    under the lock and only before the main thread reaps.
    """
    lock = threading.Lock()
    state = {"exited": False, "timed_out": False}

    def on_timeout() -> None:
        with lock:
            if not state["exited"]:
                state["timed_out"] = True
                kill_group(pid)

    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with lock:
            state["exited"] = True
            # End whatever the command left running in its group before the group id is freed.
            kill_group(pid)
        process.wait()
    except BaseException:
        with lock:
            state["exited"] = True
            kill_group(pid)
        process.wait()
        raise
    finally:
        timer.cancel()
    return state["timed_out"]


def _count(text: str) -> int | None:
    value = int(text)
    return None if value < 0 else value


def run_measured(
    args: Sequence[str],
    *,
    env: dict[str, str],
    log: Path,
    timeout: float,
    cwd: Path | None = None,
    allow_failure: bool = False,
) -> Measurement:
    """Run ``args`` to its end and measure wall time, CPU time, peak RSS and bytes written.

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
            cwd=cwd,
            start_new_session=True,
        )
    if _wait_with_timeout(process.pid, process, timeout):
        raise CommandFailed(args, f"timed out after {timeout:.0f}s", log)
    try:
        wall, cpu, max_rss, code, written, cancelled, wchar = result.read_text().split()
    except (OSError, ValueError) as exc:
        raise CommandFailed(args, f"could not be measured ({exc})", log) from exc
    if int(code) != 0 and not allow_failure:
        raise CommandFailed(args, f"exit code {code}", log)
    return Measurement(
        float(wall),
        float(cpu),
        int(max_rss),
        write_bytes=_count(written),
        cancelled_write_bytes=_count(cancelled),
        wchar=_count(wchar),
        exit_code=int(code),
    )


# --------------------------------------------------------------------------------------------
# Disk


def allocated_bytes(root: Path) -> int:
    """Bytes allocated on disk to the files below ``root`` (``st_blocks``; links not followed).

    Files that vanish while the tree is walked are skipped: a tool renames and deletes as it
    goes, and the next sample sees the new state.
    """
    total = 0
    pending = [str(root)]
    while pending:
        directory = pending.pop()
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


def delivered_bytes(out: Path) -> int:
    """Size of the files below ``out`` outside hidden files and directories (a blob store)."""
    total = 0
    for path in out.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(out).parts)
        if not hidden and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


class DiskSampler:
    """The largest :func:`allocated_bytes` of ``root`` while the context runs.

    Sampled every ``interval`` seconds in a thread, and once at the start and at the end. A
    peak shorter than the interval can be missed; the large files that matter grow over many.
    Where one sample takes long (thousands of files), the pause grows to ten times a sample's
    time, so that sampling never takes more than a tenth of a core from the tools.
    """

    def __init__(self, root: Path, interval: float) -> None:
        self.root = root
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def _sample(self) -> float:
        """Take one sample; the seconds it took."""
        started = time.perf_counter()
        self.peak = max(self.peak, allocated_bytes(self.root))
        self.samples += 1
        return time.perf_counter() - started

    def _sample_until_stopped(self) -> None:
        pause = self.interval
        while not self._stop.wait(pause):
            pause = max(self.interval, 10 * self._sample())

    def __enter__(self) -> DiskSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def filesystem_type(path: Path) -> str:
    """The type of the file system ``path`` lies on (``ext4``, ``tmpfs``, …), from mountinfo."""
    target = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return fstype
    for line in lines:
        fields, _, rest = line.partition(" - ")
        mount_point = fields.split()[4].replace("\\040", " ") if len(fields.split()) > 4 else ""
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best) and rest:
            best, fstype = mount_point, rest.split()[0]
    return fstype


def counts_writes(fstype: str) -> bool:
    """Whether ``write_bytes`` means anything there: memory file systems have no block layer."""
    return fstype not in _MEMORY_FILESYSTEMS
