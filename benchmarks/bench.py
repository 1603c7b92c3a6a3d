#!/usr/bin/env python3
"""Benchmark bulkpull against skopeo and curl, on private registries on 127.0.0.1.

    python benchmarks/bench.py [--scenario all|shared|many|large|wan|faults|push|copy,...]
                               [--repeat N]

A ``docker-registry`` is started with its storage in a temporary directory, the scenario's images
are generated and pushed to it (not measured), and then each tool pulls them ``--repeat`` times
into fresh run directories, from the registry or through a proxy of the benchmark's own
(``wan``: latency and a rate cap; ``faults``: 503s and resets); ``push`` and ``copy`` write into
a second registry, started empty for each run. Progress goes to stderr, the result tables to
stdout. Nothing leaves the loopback interface; the registries, the proxies and every temporary
file are gone afterwards, also after Ctrl-C. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from bench_base import Scenario, measure_tools
from bench_cli import build_parser, settings_from
from bench_infra import BenchError, child_env, progress, start_registry
from bench_measure import counts_writes, filesystem_type
from bench_model import Context, Settings
from bench_report import Results
from bench_scenarios import SCENARIOS

# Above this share of CPU time used by other processes, results are noisy.
_BUSY_SHARE = 0.1


def other_cpu_use(seconds: float = 1.0) -> float:
    """The share of CPU time the machine spends busy over ``seconds`` while we sleep."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return idle, sum(fields)

    try:
        idle_before, total_before = sample()
        time.sleep(seconds)
        idle_after, total_after = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total > 0 else 0.0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _record(scenario: Scenario, results: Results) -> dict[str, object]:
    """The ``--json`` record of a scenario: every measurement, the targets, its own figures."""
    return {
        "scenario": scenario.name,
        "description": scenario.describe(),
        "tools": {
            tool.id: {"label": tool.label, "runs": [asdict(m) for m in results[tool.id]]}
            for tool in scenario.tools
        },
        "targets": [target.record() for target in scenario.targets(results)],
        "details": scenario.details(),
    }


def run_scenario(name: str, ctx: Context, fstype: str) -> dict[str, object] | None:
    """Prepare, measure and report one scenario; its record for ``--json``, or ``None``."""
    started = time.perf_counter()
    with SCENARIOS[name](ctx) as scenario:
        progress(f"scenario {name}: {scenario.summary}")
        tools = scenario.prepare()
        if not tools:
            progress(f"scenario {name} skipped: none of its tools is chosen (--tools)")
            return None
        progress(f"scenario {name}: {scenario.describe()}")
        os.sync()  # our own setup's writes must not count as other work
        busy = other_cpu_use()
        if busy > _BUSY_SHARE:
            progress(f"other processes use {busy:.0%} of the CPUs: expect noisy results")
        results = measure_tools(ctx, tools)
        machine = (
            f"Machine: {os.cpu_count()} CPUs, {busy:.0%} busy with other work "
            f"in the second before the runs; work directory on {fstype}."
        )
        print(scenario.report(results), machine, sep="\n", end="\n\n", flush=True)
        progress(f"scenario {name} took {time.perf_counter() - started:.0f}s in all")
        return _record(scenario, results)


def _check_bulkpull(settings: Settings, env: dict[str, str]) -> None:
    version = subprocess.run(
        [*settings.bulkpull, "--version"], env=env, capture_output=True, check=False
    )
    if version.returncode != 0:
        output = (version.stdout + version.stderr).decode(errors="replace").strip()
        raise BenchError(f"{shlex.join(settings.bulkpull)} --version failed:\n{output}")
    progress(f"bulkpull: {shlex.join(settings.bulkpull)} ({version.stdout.decode().strip()})")


def _file_system(workdir: Path) -> str:
    fstype = filesystem_type(workdir)
    if not counts_writes(fstype):
        progress(
            f"warning: {workdir} is on {fstype}, where write_bytes stays 0: bytes written are "
            "shown as wchar instead; use --workdir on a disk file system (ext4, xfs, btrfs)"
        )
    return fstype


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, object]]:
    settings = settings_from(args)
    fstype = _file_system(workdir)
    tmp = workdir / "tmp"
    tmp.mkdir()
    env = child_env(tmp)
    if "bulkpull" in settings.tools:
        _check_bulkpull(settings, env)
    records: list[dict[str, object]] = []
    with start_registry(workdir / "registry", env=env) as registry:
        for name in args.scenario:
            scenario_dir = workdir / name
            scenario_dir.mkdir()
            ctx = Context(settings, registry, scenario_dir, counts_writes(fstype))
            ctx.scratch.mkdir(parents=True)
            try:
                record = run_scenario(name, ctx, fstype)
            finally:
                if not args.keep:
                    shutil.rmtree(scenario_dir, ignore_errors=True)
            if record is not None:
                records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="bulkpull-bench-", dir=args.workdir))
    try:
        records = run(args, workdir)
        if args.json is not None:
            args.json.write_text(json.dumps(records, indent=2) + "\n")
        return 0
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress("interrupted; cleaning up")
        return 130
    finally:
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
