"""The measured tools: bulkpull and skopeo, as the scenarios run them, and the pull line-up.

A tool's ``run`` builds its command line when it starts (a target registry may have been started
afresh just before, on a new port), runs it measured, and adds what the registries and the proxy
spent meanwhile (:func:`timing`). The floors are in ``bench_floors.py``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_checks import check_archives
from bench_floors import floor_cat_tool, floor_tee_tool, floor_tool
from bench_infra import require_tool
from bench_measure import Measurement, combine
from bench_model import Context, Pullable, Route, Tool, distinct_blobs, summed_bytes
from bench_timing import Command, log_file, measured, timing

RUN_PLACEHOLDER = "{run}"
"""In ``--bulkpull-arg`` values: the run's own directory (a ``--cache`` there is measured)."""


def bulkpull_tool(
    ctx: Context,
    command: Command,
    arguments: Callable[[Path], Sequence[str]],
    *,
    label: str = "bulkpull",
    allow_failure: bool = False,
) -> Tool:
    """bulkpull run once with ``arguments(out)``; ``{run}`` in them is the run's directory."""
    log = log_file(ctx, "bulkpull", command.group)

    def args(out: Path) -> list[str]:
        given = [*ctx.settings.bulkpull, *arguments(out)]
        return [arg.replace(RUN_PLACEHOLDER, str(ctx.run_root)) for arg in given]

    def run(out: Path) -> Measurement:
        return command.timed(lambda: measured(ctx, args(out), log, allow_failure=allow_failure))

    return Tool("bulkpull", label, run, command.check, command.moved_bytes, command.group)


def bulkpull_pull_tool(
    ctx: Context,
    pullables: Sequence[Pullable],
    route: Route,
    *,
    extra_args: Sequence[str] = (),
    allow_failure: bool = False,
) -> Tool:
    """``bulkpull LIST -o OUT --plain-http``, all images in one run."""
    image_list = ctx.workdir / "images.txt"
    image_list.write_text("".join(f"{p.reference(route)}\n" for p in pullables))
    command = Command(
        lambda out: check_archives(out, pullables, "bulkpull"),
        sum(distinct_blobs(pullables).values()),
        timing(ctx, route),
    )
    return bulkpull_tool(
        ctx,
        command,
        lambda out: [
            str(image_list),
            "-o",
            str(out),
            "--plain-http",
            *extra_args,
            *ctx.settings.bulkpull_args,
        ],
        allow_failure=allow_failure,
    )


@dataclass(frozen=True)
class SkopeoCopies:
    """The ``skopeo copy`` processes of one run: the flags they share and their operands."""

    command: Command
    flags: tuple[str, ...]
    pairs: Callable[[Path], list[tuple[str, str]]]
    """(source, destination) of every copy, given the run's ``out``."""


def _skopeo_copy(flags: Sequence[str]) -> list[str]:
    return [require_tool("skopeo"), "--insecure-policy", "copy", "--quiet", *flags]


def skopeo_sequential_tool(
    ctx: Context, copies: SkopeoCopies, label: str = "skopeo sequential"
) -> Tool:
    """One ``skopeo copy`` after the other."""
    base = _skopeo_copy(copies.flags)
    command = copies.command
    log = log_file(ctx, "skopeo-seq", command.group)

    def run(out: Path) -> Measurement:
        def all_copies() -> Measurement:
            return combine([measured(ctx, [*base, *pair], log) for pair in copies.pairs(out)])

        return command.timed(all_copies)

    return Tool("skopeo-seq", label, run, command.check, command.moved_bytes, command.group)


def skopeo_parallel_tool(ctx: Context, copies: SkopeoCopies) -> Tool:
    """The same copies as :func:`skopeo_sequential_tool`, ``xargs -P N`` at once."""
    base = _skopeo_copy(copies.flags)
    xargs = require_tool("xargs")
    parallel = ctx.settings.skopeo_parallel
    command = copies.command
    log = log_file(ctx, "skopeo-par", command.group)
    operands = log.with_suffix(".xargs")

    def start(out: Path) -> Measurement:
        # Two lines per copy: source and destination.
        operands.write_text("".join(f"{s}\n{d}\n" for s, d in copies.pairs(out)))
        args = [xargs, "-a", str(operands), "-d", "\n", "-n", "2", "-P", str(parallel), *base]
        return measured(ctx, args, log)

    return Tool(
        "skopeo-par",
        f"skopeo xargs -P{parallel}",
        lambda out: command.timed(lambda: start(out)),
        command.check,
        command.moved_bytes,
        command.group,
    )


def skopeo_pull_copies(ctx: Context, pullables: Sequence[Pullable], route: Route) -> SkopeoCopies:
    """``skopeo copy docker://REF docker-archive:OUT/K.tar:REPO:TAG`` for every image."""

    def pairs(out: Path) -> list[tuple[str, str]]:
        return [
            (
                f"docker://{p.reference(route)}",
                f"docker-archive:{out / f'{i}.tar'}:{p.archive_name}",
            )
            for i, p in enumerate(pullables)
        ]

    command = Command(
        lambda out: check_archives(out, pullables, "skopeo"),
        summed_bytes(pullables),
        timing(ctx, route),
    )
    return SkopeoCopies(command, ("--src-tls-verify=false",), pairs)


def standard_tools(
    ctx: Context,
    pullables: Sequence[Pullable],
    route: Route,
    *,
    keys: Sequence[str] = ("bulkpull", "skopeo-seq", "skopeo-par", "floor"),
    skopeo_label: str = "skopeo sequential",
) -> list[Tool]:
    """The pull tools of ``keys`` that ``--tools`` chose, pulling ``pullables`` via ``route``."""
    copies = skopeo_pull_copies(ctx, pullables, route)
    candidates: dict[str, Callable[[], Tool]] = {
        "bulkpull": lambda: bulkpull_pull_tool(ctx, pullables, route),
        "skopeo-seq": lambda: skopeo_sequential_tool(ctx, copies, skopeo_label),
        "skopeo-par": lambda: skopeo_parallel_tool(ctx, copies),
        "floor": lambda: floor_tool(ctx, pullables, route),
        "floor-tee": lambda: floor_tee_tool(ctx, pullables, route),
        "floor-cat": lambda: floor_cat_tool(ctx, pullables, route),
    }
    return [candidates[key]() for key in keys if key in ctx.settings.tools]


def bulkpull_offers(ctx: Context, args: Sequence[str], pattern: str) -> bool:
    """Whether the help ``bulkpull ARGS`` prints matches ``pattern``: a command or flag exists.

    The exit code alone does not tell: an unknown word before ``--help`` is taken for the
    list of images, and the pull's help is shown.
    """
    try:
        done = subprocess.run(
            [*ctx.settings.bulkpull, *args],
            env=ctx.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = done.stdout.decode(errors="replace")
    return done.returncode == 0 and re.search(pattern, text, re.MULTILINE) is not None
