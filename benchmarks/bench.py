#!/usr/bin/env python3
"""Benchmark bulkpull against skopeo, pulling from a private registry on 127.0.0.1.

    python benchmarks/bench.py [--scenario shared|large|all] [--repeat N]

A ``docker-registry`` is started with its storage in a temporary directory, the scenario's images
are generated and pushed to it (not measured), and then each tool pulls them ``--repeat`` times
into fresh output directories. Progress goes to stderr, the result tables to stdout. Nothing
leaves the loopback interface; the registry and every temporary file are gone afterwards, also
after Ctrl-C. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

from bench_images import LayerFormat
from bench_infra import BenchError, child_env, progress, start_registry
from bench_scenarios import SCENARIOS, TOOL_KEYS, Context, Settings, measure_tools

# Above this share of CPU time used by other processes, results are noisy.
_BUSY_SHARE = 0.1
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3}


def parse_size(text: str) -> int:
    """``1GiB``, ``512MiB``, ``3.5MiB``, ``2000000``: a size in bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1GiB, 512MiB, 4096)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < 1:
        raise argparse.ArgumentTypeError("a size must be at least one byte")
    return size


def parse_sizes(text: str) -> tuple[int, ...]:
    """A comma-separated list of sizes."""
    return tuple(parse_size(part) for part in text.split(",") if part.strip())


def parse_tools(text: str) -> frozenset[str]:
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = chosen - set(TOOL_KEYS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown tool(s) {sorted(unknown)}; choose from {', '.join(TOOL_KEYS)}"
        )
    return chosen


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark bulkpull against skopeo on a private loopback registry.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--repeat", type=positive, default=3, help="timed runs per tool")
    parser.add_argument(
        "--tools",
        type=parse_tools,
        default=",".join(TOOL_KEYS),
        help="comma-separated subset of these tools",
    )
    parser.add_argument(
        "--bulkpull",
        default=None,
        help="command that starts bulkpull (default: bulkpull on PATH, else python -m bulkpull)",
    )
    parser.add_argument(
        "--bulkpull-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for every bulkpull run; repeatable (e.g. --bulkpull-arg=-j8)",
    )
    parser.add_argument("--skopeo-parallel", type=positive, default=4, help="xargs -P for skopeo")
    parser.add_argument(
        "--floor-parallel", type=positive, default=8, help="parallel curl transfers for the floor"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds one measured command may take"
    )
    shared = parser.add_argument_group("scenario shared")
    shared.add_argument("--images", type=positive, default=12, help="number of images")
    shared.add_argument(
        "--base-sizes", type=parse_sizes, default="16MiB,8MiB", help="shared base layer sizes"
    )
    shared.add_argument(
        "--unique-sizes", type=parse_sizes, default="6MiB,2MiB", help="per-image layer sizes"
    )
    shared.add_argument(
        "--shared-format", choices=[f.value for f in LayerFormat], default=LayerFormat.GZIP.value
    )
    large = parser.add_argument_group("scenario large")
    large.add_argument(
        "--large-size", type=parse_size, default="1GiB", help="file size in the large layer"
    )
    large.add_argument(
        "--large-format", choices=[f.value for f in LayerFormat], default=LayerFormat.TAR.value
    )
    large.add_argument(
        "--rss-target", type=float, default=150, help="bulkpull peak RSS target in MiB"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="parent of the temporary directory (default: the system's temporary directory)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs) afterwards"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")
    return parser


def bulkpull_command(given: str | None) -> tuple[str, ...]:
    if given:
        return tuple(shlex.split(given))
    script = shutil.which("bulkpull")
    return (script,) if script else (sys.executable, "-m", "bulkpull")


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


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, object]]:
    settings = Settings(
        repeat=args.repeat,
        bulkpull=bulkpull_command(args.bulkpull),
        bulkpull_args=tuple(args.bulkpull_arg),
        tools=args.tools,
        skopeo_parallel=args.skopeo_parallel,
        floor_parallel=args.floor_parallel,
        timeout=args.timeout,
        shared_images=args.images,
        shared_base_sizes=args.base_sizes,
        shared_unique_sizes=args.unique_sizes,
        shared_format=LayerFormat(args.shared_format),
        large_size=args.large_size,
        large_format=LayerFormat(args.large_format),
        rss_target_mib=args.rss_target,
    )
    tmp = workdir / "tmp"
    tmp.mkdir()
    env = child_env(tmp)
    if "bulkpull" in settings.tools:
        version = subprocess.run(
            [*settings.bulkpull, "--version"], env=env, capture_output=True, check=False
        )
        if version.returncode != 0:
            output = (version.stdout + version.stderr).decode(errors="replace").strip()
            raise BenchError(f"{shlex.join(settings.bulkpull)} --version failed:\n{output}")
        progress(f"bulkpull: {shlex.join(settings.bulkpull)} ({version.stdout.decode().strip()})")
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    records: list[dict[str, object]] = []
    with start_registry(workdir / "registry", env=env) as registry:
        for name in names:
            started = time.perf_counter()
            scenario_dir = workdir / name
            scenario_dir.mkdir()
            ctx = Context(settings, registry, scenario_dir, env)
            scenario = SCENARIOS[name](ctx)
            progress(f"scenario {name}: {scenario.summary}")
            tools = scenario.prepare()
            progress(f"scenario {name}: {scenario.describe()}")
            os.sync()  # our own setup's writes must not count as other work
            busy = other_cpu_use()
            if busy > _BUSY_SHARE:
                progress(f"other processes use {busy:.0%} of the CPUs: expect noisy results")
            results = measure_tools(ctx, tools)
            machine = (
                f"Machine: {os.cpu_count()} CPUs, {busy:.0%} busy with other work "
                "in the second before the runs."
            )
            print(scenario.report(results), machine, sep="\n", end="\n\n", flush=True)
            progress(f"scenario {name} took {time.perf_counter() - started:.0f}s in all")
            records.append(
                {
                    "scenario": name,
                    "description": scenario.describe(),
                    "tools": {
                        tool.key: {
                            "label": tool.label,
                            "runs": [asdict(m) for m in results[tool.key]],
                        }
                        for tool in tools
                    },
                }
            )
            if not args.keep:
                shutil.rmtree(scenario_dir, ignore_errors=True)
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
