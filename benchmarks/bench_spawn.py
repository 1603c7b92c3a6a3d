"""Run one command and write its wall time, CPU time, peak RSS and exit code to a file.

    python -S -I bench_spawn.py RESULT_FILE COMMAND [ARG...]

Why a separate, small process: on Linux a child's ``ru_maxrss`` starts at the resident size of
the process that spawned it (``execve`` keeps the larger of the old and the new high-water mark),
so a command spawned straight from the benchmark would report at least the benchmark's own
size. Spawned from this minimal interpreter instead, the floor is a few MiB. Only built-in
modules are imported, to keep it that way.

RESULT_FILE receives one line: ``WALL_SECONDS CPU_SECONDS MAX_RSS_KIB EXIT_CODE``.
"""

import os
import sys
import time


def main() -> int:
    result, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    with open(result, "w") as out:
        out.write(f"{wall:.6f} {cpu:.6f} {usage.ru_maxrss} {code}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
