"""The benchmark's command line: options, their parsing, and the settings they make."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
from pathlib import Path

from bench_images import LayerFormat
from bench_model import TOOL_KEYS, Settings
from bench_scenarios import DEFAULT_SCENARIOS, SCENARIOS

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


def _choices(text: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {unknown}; choose from {', '.join(known)}"
        )
    return chosen


def parse_tools(text: str) -> frozenset[str]:
    return frozenset(_choices(text, TOOL_KEYS, "tool(s)"))


def parse_scenarios(text: str) -> tuple[str, ...]:
    """Scenario names, comma-separated; ``all`` stands for the default ones."""
    chosen = _choices(text, (*SCENARIOS, "all"), "scenario(s)")
    expanded = {
        name for part in chosen for name in (DEFAULT_SCENARIOS if part == "all" else [part])
    }
    return tuple(name for name in SCENARIOS if name in expanded)


def parse_sets(text: str) -> tuple[str, ...]:
    return _choices(text, ("shared", "many"), "image set(s)")


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


def _add_general(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        type=parse_scenarios,
        default="all",
        help=f"comma-separated, of {', '.join(SCENARIOS)}; all: {','.join(DEFAULT_SCENARIOS)}",
    )
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
        help="extra argument for every bulkpull pull and copy, repeatable (--bulkpull-arg=-j8); "
        "{run} stands for the run's own directory",
    )
    parser.add_argument(
        "--bulkpull-push-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for every bulkpull push; repeatable",
    )
    parser.add_argument("--skopeo-parallel", type=positive, default=4, help="xargs -P for skopeo")
    parser.add_argument(
        "--floor-parallel", type=positive, default=8, help="parallel curl transfers for the floors"
    )
    parser.add_argument(
        "--floor-hash",
        choices=["openssl", "sha256sum"],
        default="openssl",
        help="hasher of the curl|tee floor (coreutils' sha256sum uses no SHA instructions)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds one measured command may take"
    )
    parser.add_argument(
        "--disk-interval",
        type=positive,
        default=25,
        help="milliseconds between two samples of a run's disk use",
    )


def _add_sets(parser: argparse.ArgumentParser) -> None:
    shared = parser.add_argument_group("scenario shared (also wan, faults, push, copy)")
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
        help="layer format of every scenario's images but large's",
    )
    many = parser.add_argument_group("scenario many (also copy)")
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
        "--rss-target", type=float, default=100, help="bulkpull peak RSS target in MiB"
    )


def _add_wan_and_faults(parser: argparse.ArgumentParser) -> None:
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


def _add_targets_and_output(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_argument_group("scenarios push and copy (into a second registry)")
    targets.add_argument(
        "--target-namespace", default="mirror", help="namespace the images go below"
    )
    targets.add_argument(
        "--copy-sets", type=parse_sets, default="shared,many", help="image sets copy copies"
    )
    targets.add_argument(
        "--copy-rtt",
        type=non_negative,
        default=0,
        help="copy: milliseconds of round trip added to the source registry (through the "
        "throttling proxy, at --wan-rate); 0: straight on loopback",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="parent of the temporary directory, on a disk file system (default: the system's "
        "temporary directory)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs) afterwards"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark bulkpull against skopeo and curl on private loopback registries.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_general(parser)
    _add_sets(parser)
    _add_wan_and_faults(parser)
    _add_targets_and_output(parser)
    return parser


def bulkpull_command(given: str | None) -> tuple[str, ...]:
    if given:
        return tuple(shlex.split(given))
    script = shutil.which("bulkpull")
    return (script,) if script else (sys.executable, "-m", "bulkpull")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
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
        disk_interval=args.disk_interval / 1000,
        bulkpull_push_args=tuple(args.bulkpull_push_arg),
        target_namespace=args.target_namespace,
        copy_sets=args.copy_sets,
        copy_rtt=args.copy_rtt / 1000,
        floor_hasher=args.floor_hash,
    )
