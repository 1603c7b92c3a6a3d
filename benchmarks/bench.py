#!/usr/bin/env python3
"""Benchmark bulkpull against skopeo, pulling from a private registry on 127.0.0.1.

    python benchmarks/bench.py [--scenario shared|many|large|wan|faults|all] [--repeat N]

A ``docker-registry`` is started with its storage in a temporary directory, the scenario's images
are generated and pushed to it (not measured), and then each tool pulls them ``--repeat`` times
into fresh output directories, from the registry or through a proxy of the benchmark's own
(``wan``: latency and a rate cap; ``faults``: 503s and resets). Progress goes to stderr, the
result tables to stdout. Nothing leaves the loopback interface; the registry, the proxies and
every temporary file are gone afterwards, also after Ctrl-C. See benchmarks/README.md.
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


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a share is between 0 and 1")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


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
        "--shared-format",
        choices=[f.value for f in LayerFormat],
        default=LayerFormat.GZIP.value,
        help="layer format of the shared, many, wan and faults images",
    )
    many = parser.add_argument_group("scenario many")
    many.add_argument("--many-images", type=positive, default=100, help="number of images")
    many.add_argument(
        "--many-base-sizes",
        type=parse_sizes,
        default="1MiB,512KiB",
        help="shared base layer sizes; every other image has one of them",
    )
    many.add_argument(
        "--many-unique-size", type=parse_size, default="256KiB", help="each image's own layer"
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
    wan = parser.add_argument_group("scenario wan (the shared set through a throttling proxy)")
    wan.add_argument(
        "--wan-rtt", type=non_negative, default=40, help="added round-trip time in milliseconds"
    )
    wan.add_argument(
        "--wan-rate",
        type=parse_size,
        default="20MiB",
        help="bytes per second per connection and direction",
    )
    faults = parser.add_argument_group(
        "scenario faults (the shared set through a fault-injecting proxy, bulkpull only)"
    )
    faults.add_argument(
        "--fault-503", type=share, default=0.1, help="share of requests answered 503"
    )
    faults.add_argument(
        "--fault-reset",
        type=share,
        default=0.2,
        help="share of blob downloads reset in the middle of the body",
    )
    faults.add_argument("--fault-seed", type=int, default=1, help="seed of the fault choice")
    faults.add_argument(
        "--fault-max-streak",
        type=positive,
        default=2,
        help="faults in a row for one request at most; keep it below bulkpull's --retries",
    )
    faults.add_argument(
        "--fault-retry-delay",
        type=non_negative,
        default=0.05,
        help="bulkpull --retry-delay in this scenario, so that backoff does not dominate",
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


def run_scenario(name: str, ctx: Context) -> dict[str, object] | None:
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
            "in the second before the runs."
        )
        print(scenario.report(results), machine, sep="\n", end="\n\n", flush=True)
        progress(f"scenario {name} took {time.perf_counter() - started:.0f}s in all")
        return {
            "scenario": name,
            "description": scenario.describe(),
            "tools": {
                tool.key: {"label": tool.label, "runs": [asdict(m) for m in results[tool.key]]}
                for tool in tools
            },
            "details": scenario.details(),
        }


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
        many_images=args.many_images,
        many_base_sizes=args.many_base_sizes,
        many_unique_size=args.many_unique_size,
        wan_rtt=args.wan_rtt / 1000,
        wan_rate=args.wan_rate,
        fault_unavailable=args.fault_503,
        fault_reset=args.fault_reset,
        fault_seed=args.fault_seed,
        fault_max_streak=args.fault_max_streak,
        fault_retry_delay=args.fault_retry_delay,
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
            scenario_dir = workdir / name
            scenario_dir.mkdir()
            try:
                record = run_scenario(name, Context(settings, registry, scenario_dir, env))
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
