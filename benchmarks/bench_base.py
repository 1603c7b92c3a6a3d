"""The scenario base class and the runner that measures a scenario's tools.

A scenario builds its images, pushes them (setup, not measured) and returns the tools to time.
The runner then runs every tool ``repeat`` times, interleaved (tool A, B, C, A, B, C, …) so that
drift of the machine hits every tool alike, each time in a fresh, empty run directory whose disk
use is sampled meanwhile, and checks what each run wrote. A scenario may put a proxy of the
benchmark's own between the tools and the registry (:class:`Route`); it is a context manager
that stops what it started.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from types import TracebackType
from typing import ClassVar

from bench_images import BuiltImage, OciLayout
from bench_infra import progress, push_images
from bench_measure import DiskSampler, Measurement, allocated_bytes, delivered_bytes
from bench_model import GB, MIB, Context, Pullable, Route, Tool, distinct_blobs, summed_bytes
from bench_report import Columns, Results, Target, render_targets, table_notes, tool_table


def _fresh_run_directory(ctx: Context) -> None:
    shutil.rmtree(ctx.run_root, ignore_errors=True)
    ctx.out.mkdir(parents=True)
    ctx.scratch.mkdir()


def _measure_once(ctx: Context, tool: Tool) -> Measurement:
    """One run of ``tool`` in a fresh run directory, with its disk figures, checked."""
    _fresh_run_directory(ctx)
    os.sync()  # earlier runs' writes must not be flushed during this one
    with DiskSampler(ctx.run_root, ctx.settings.disk_interval) as disk:
        measurement = tool.run(ctx.out)
    measurement = dataclasses.replace(
        measurement,
        peak_disk=disk.peak,
        disk_after=allocated_bytes(ctx.run_root),
        output_bytes=delivered_bytes(ctx.out),
    )
    tool.check(ctx.out)
    return measurement


def _progress_line(tool: Tool, measurement: Measurement, round_number: int, repeat: int) -> str:
    failed = f", exit code {measurement.exit_code}" if measurement.exit_code else ""
    written = measurement.write_bytes
    return (
        f"  {tool.id} [{round_number}/{repeat}]: {measurement.wall:.2f}s wall, "
        f"{measurement.cpu:.2f}s CPU, {measurement.max_rss_kib / 1024:.0f} MiB peak RSS, "
        f"{(measurement.peak_disk or 0) / MIB:.0f} MiB peak disk, "
        f"{'?' if written is None else f'{written / MIB:.0f}'} MiB written{failed}"
    )


def measure_tools(ctx: Context, tools: Sequence[Tool]) -> dict[str, list[Measurement]]:
    """Run every tool ``repeat`` times, interleaved, each in a fresh run directory."""
    results: dict[str, list[Measurement]] = {tool.id: [] for tool in tools}
    repeat = ctx.settings.repeat
    for round_number in range(1, repeat + 1):
        for tool in tools:
            measurement = _measure_once(ctx, tool)
            results[tool.id].append(measurement)
            progress(_progress_line(tool, measurement, round_number, repeat))
    shutil.rmtree(ctx.run_root, ignore_errors=True)
    return results


class Scenario(abc.ABC):
    """A set of images and the tools that handle them.

    Used as a context manager: what :meth:`prepare` starts (a proxy, a registry) stops on exit.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    payload_bytes: int | None = None
    """Bytes one pull moves, for a throughput column; ``None`` leaves it out."""
    pulls: ClassVar[bool] = True
    """The tools pull into files; ``False``: they write into a target registry."""
    group_header: ClassVar[str] = ""
    """Header of the column naming the rows' groups, for scenarios that have groups."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tools: list[Tool] = []
        self.pullables: list[Pullable] = []
        self.route = Route(ctx.registry.host)
        """Where the tools pull from: the registry, unless :meth:`prepare` puts a proxy there."""
        self.resources = contextlib.ExitStack()

    def __enter__(self) -> Scenario:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.resources.close()

    @abc.abstractmethod
    def prepare(self) -> list[Tool]:
        """Build and push the images; return the tools to time (filtered by ``--tools``)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line saying what is pulled."""

    def extra_lines(self, results: Results) -> list[str]:
        """Lines printed below the table."""
        return []

    def targets(self, results: Results) -> list[Target]:
        """The figures the project aims at in this scenario, as measured."""
        return []

    def details(self) -> dict[str, object]:
        """Figures of the scenario's own for ``--json``, besides the measurements."""
        return {}

    def push(self, layout: OciLayout, destinations: dict[str, BuiltImage]) -> list[Pullable]:
        """Push the layout's images to the source registry (setup, not measured)."""
        layout.finish()
        started = time.perf_counter()
        push_images(self.ctx.registry, layout.root, destinations, env=self.ctx.env)
        progress(f"pushed {len(destinations)} image(s) in {time.perf_counter() - started:.1f}s")
        return [
            Pullable(destination.rpartition(":")[0], destination, image)
            for destination, image in destinations.items()
        ]

    def columns(self, results: Results) -> Columns:
        counted = any(m.connections is not None for runs in results.values() for m in runs)
        return Columns(
            payload_bytes=self.payload_bytes,
            proxy=self.route.proxy is not None,
            connections=counted,
            wchar=not self.ctx.counts_writes,
            group_header=self.group_header,
        )

    def notes(self, results: Results) -> list[str]:
        notes = [f"{self.ctx.settings.repeat} run(s) per tool, interleaved."]
        notes += table_notes(wchar=not self.ctx.counts_writes)
        if not self.pulls:
            notes.append(
                "CPU s/GB: CPU seconds per GB (10^9 bytes) of blobs summed over the images: "
                "what the target's repositories need, whether uploaded, mounted or skipped."
            )
            return notes
        delivered = summed_bytes(self.pullables)
        distinct = sum(distinct_blobs(self.pullables).values())
        runs = results.get("bulkpull")
        if runs and delivered > distinct:
            cpu = statistics.median(m.cpu for m in runs)
            notes.append(
                f"CPU s/GB: per GB (10^9 bytes) of blobs the tool downloads (distinct blobs for "
                f"bulkpull and the floors, every image's for skopeo); per GB of images written "
                f"({delivered / GB:.3f} GB), bulkpull used {cpu / (delivered / GB):.1f} CPU s/GB."
            )
        return notes

    def report(self, results: Results) -> str:
        targets = self.targets(results)
        return "\n".join(
            [
                f"== scenario {self.name}: {self.describe()}",
                "",
                tool_table(self.tools, results, self.columns(results)),
                "",
                *self.notes(results),
                *self.extra_lines(results),
                *render_targets(self.name, targets),
            ]
        )
