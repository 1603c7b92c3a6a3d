"""Run one command; write its wall time, CPU time, peak RSS, exit code and I/O counts to a file.

    python -S -I bench_spawn.py RESULT_FILE COMMAND [ARG...]

Why a separate, small process: on Linux a child's ``ru_maxrss`` starts at the resident size of
the process that spawned it (``execve`` keeps the larger of the old and the new high-water mark),
so a command spawned straight from the benchmark would report at least the benchmark's own
size. Spawned from this minimal interpreter instead, the floor is a few MiB. Only built-in
modules are imported, to keep it that way.

The I/O counts come from ``/proc/PID/io`` of the command, read after it has exited but before
it is reaped (``waitid`` with ``WNOWAIT``): a process's counts then include those of every child
it reaped itself (xargs's copies, a shell pipeline's members), and once reaped they are gone.

RESULT_FILE receives one line: ``WALL_SECONDS CPU_SECONDS MAX_RSS_KIB EXIT_CODE WRITE_BYTES
CANCELLED_WRITE_BYTES WCHAR``, the last three -1 where ``/proc`` did not tell.
"""

import os
import sys
import time

_IO_FIELDS = ("write_bytes", "cancelled_write_bytes", "wchar")


def io_counts(pid: int) -> list[int]:
    """The :data:`_IO_FIELDS` of ``/proc/PID/io``, -1 each where unreadable."""
    counts = {}
    try:
        with open(f"/proc/{pid}/io") as io:
            for line in io:
                key, _, value = line.partition(":")
                counts[key.strip()] = int(value)
    except (OSError, ValueError):
        pass
    return [counts.get(field, -1) for field in _IO_FIELDS]


def main() -> int:
    result, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    wall = time.perf_counter() - started
    io = io_counts(pid)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    fields = [f"{wall:.6f}", f"{cpu:.6f}", str(usage.ru_maxrss), str(code), *map(str, io)]
    with open(result, "w") as out:
        out.write(" ".join(fields) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
