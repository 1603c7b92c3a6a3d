"""Scenarios: what is pushed to the registry, which tools pull it, and how results are shown.

A scenario builds its images, pushes them (setup, not measured) and returns the tools to time.
The runner then runs every tool ``repeat`` times, interleaved (tool A, B, C, A, B, C, …) so that
drift of the machine hits every tool alike, each time into a fresh, empty output directory, and
checks what each run wrote. Adding a scenario means subclassing :class:`Scenario` and listing
the class in :data:`SCENARIOS`.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bench_images import BuiltImage, LayerBlob, LayerFormat, OciLayout
from bench_infra import (
    BenchError,
    Measurement,
    Registry,
    combine,
    progress,
    push_images,
    require_tool,
    run_measured,
)

MIB = 1024 * 1024
TOOL_KEYS = ("bulkpull", "skopeo-seq", "skopeo-par", "floor")


@dataclass(frozen=True)
class Settings:
    """Everything the command line decides."""

    repeat: int
    bulkpull: tuple[str, ...]
    """The command that starts bulkpull."""
    bulkpull_args: tuple[str, ...]
    """Extra arguments for every bulkpull run."""
    tools: frozenset[str]
    skopeo_parallel: int
    floor_parallel: int
    timeout: float
    shared_images: int
    shared_base_sizes: tuple[int, ...]
    shared_unique_sizes: tuple[int, ...]
    shared_format: LayerFormat
    large_size: int
    large_format: LayerFormat
    rss_target_mib: float


@dataclass(frozen=True)
class Context:
    """What a scenario works with."""

    settings: Settings
    registry: Registry
    workdir: Path
    """A directory of the scenario's own, removed afterwards."""
    env: dict[str, str]


@dataclass(frozen=True)
class Pullable:
    """One image in the registry, as the tools name it."""

    reference: str
    """``127.0.0.1:PORT/repo:tag``."""
    repository: str
    """``repo`` without registry and tag."""
    archive_name: str
    """``repo:tag``: the name skopeo writes into a docker-archive."""
    image: BuiltImage


@dataclass(frozen=True)
class Tool:
    """A way of pulling a scenario's images; ``run`` writes into an empty directory."""

    key: str
    label: str
    run: Callable[[Path], Measurement]
    check: Callable[[Path], None]


# --------------------------------------------------------------------------------------------
# Checking what a run wrote


def _archive_images(path: Path) -> list[tuple[str, int]]:
    """(config digest, layer count) of every image in a docker-archive, members checked."""
    try:
        with tarfile.open(path, "r:") as tar:
            names = set(tar.getnames())
            member = tar.extractfile("manifest.json")
            if member is None:
                raise BenchError(f"{path}: manifest.json is not a file")
            entries = json.load(member)
            found = []
            for entry in entries:
                config = tar.extractfile(entry["Config"])
                if config is None:
                    raise BenchError(f"{path}: config {entry['Config']} is not a file")
                digest = "sha256:" + hashlib.sha256(config.read()).hexdigest()
                missing = [layer for layer in entry["Layers"] if layer not in names]
                if missing:
                    raise BenchError(f"{path}: layers missing from the archive: {missing}")
                found.append((digest, len(entry["Layers"])))
            return found
    except (tarfile.TarError, KeyError, ValueError, TypeError) as exc:
        raise BenchError(f"{path}: not a docker-archive: {exc!r}") from exc


def check_archives(out: Path, pullables: Sequence[Pullable], what: str) -> None:
    """Every image of ``pullables`` is in exactly one docker-archive file below ``out``.

    Files in hidden directories (a tool's blob store) are not archives and are skipped.
    """
    expected = {p.image.config.digest: len(p.image.layers) for p in pullables}
    found: dict[str, int] = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if not tarfile.is_tarfile(path):
            continue
        for digest, layers in _archive_images(path):
            if digest in found:
                raise BenchError(f"{what}: image {digest} found in more than one archive")
            found[digest] = layers
    if found != expected:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(d for d in set(found) & set(expected) if found[d] != expected[d])
        raise BenchError(
            f"{what}: archives in {out} do not match the images: missing {missing}, "
            f"unexpected {extra}, wrong layer count {wrong}"
        )


# --------------------------------------------------------------------------------------------
# The tools


def _timed_with_registry(ctx: Context, run: Callable[[], Measurement]) -> Measurement:
    before = ctx.registry.cpu_seconds()
    measurement = run()
    return dataclasses.replace(measurement, registry_cpu=ctx.registry.cpu_seconds() - before)


def bulkpull_tool(ctx: Context, pullables: Sequence[Pullable]) -> Tool:
    """``bulkpull LIST -o OUT --plain-http``, all images in one run."""
    image_list = ctx.workdir / "images.txt"
    image_list.write_text("".join(f"{p.reference}\n" for p in pullables))
    log = ctx.workdir / "bulkpull.log"

    def run(out: Path) -> Measurement:
        args = [
            *ctx.settings.bulkpull,
            str(image_list),
            "-o",
            str(out),
            "--plain-http",
            *ctx.settings.bulkpull_args,
        ]
        return _timed_with_registry(
            ctx,
            lambda: run_measured(args, env=ctx.env, log=log, timeout=ctx.settings.timeout),
        )

    return Tool("bulkpull", "bulkpull", run, lambda out: check_archives(out, pullables, "bulkpull"))


def _skopeo_copy_args(skopeo: str, pullable: Pullable, out: Path, index: int) -> list[str]:
    return [
        skopeo,
        "--insecure-policy",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{pullable.reference}",
        f"docker-archive:{out / f'{index}.tar'}:{pullable.archive_name}",
    ]


def skopeo_sequential_tool(ctx: Context, pullables: Sequence[Pullable], label: str) -> Tool:
    """One ``skopeo copy … docker-archive:…`` after the other."""
    skopeo = require_tool("skopeo")
    log = ctx.workdir / "skopeo-seq.log"

    def run(out: Path) -> Measurement:
        def all_copies() -> Measurement:
            parts = [
                run_measured(
                    _skopeo_copy_args(skopeo, p, out, i),
                    env=ctx.env,
                    log=log,
                    timeout=ctx.settings.timeout,
                )
                for i, p in enumerate(pullables)
            ]
            # The sum of the copies' own times leaves out the starts of the measuring process.
            return combine(parts, sum(part.wall for part in parts), 0.0)

        return _timed_with_registry(ctx, all_copies)

    return Tool(
        "skopeo-seq", label, run, lambda out: check_archives(out, pullables, "skopeo sequential")
    )


def skopeo_parallel_tool(ctx: Context, pullables: Sequence[Pullable]) -> Tool:
    """The same copies as :func:`skopeo_sequential_tool`, ``xargs -P N`` at once."""
    skopeo = require_tool("skopeo")
    xargs = require_tool("xargs")
    parallel = ctx.settings.skopeo_parallel
    log = ctx.workdir / "skopeo-par.log"
    arguments = ctx.workdir / "xargs-arguments.txt"

    def run(out: Path) -> Measurement:
        # Two lines per copy: source and destination.
        lines = []
        for i, p in enumerate(pullables):
            lines.extend(_skopeo_copy_args(skopeo, p, out, i)[-2:])
        arguments.write_text("".join(f"{line}\n" for line in lines))
        args = [
            xargs,
            "-a",
            str(arguments),
            "-d",
            "\n",
            "-n",
            "2",
            "-P",
            str(parallel),
            *_skopeo_copy_args(skopeo, pullables[0], out, 0)[:-2],
        ]
        return _timed_with_registry(
            ctx,
            lambda: run_measured(args, env=ctx.env, log=log, timeout=ctx.settings.timeout),
        )

    return Tool(
        "skopeo-par",
        f"skopeo xargs -P{parallel}",
        run,
        lambda out: check_archives(out, pullables, "skopeo parallel"),
    )


def floor_tool(ctx: Context, pullables: Sequence[Pullable]) -> Tool:
    """A lower bound: every distinct blob once, ``curl --parallel``, straight to files.

    No manifests, no verification, no archives: only the bytes a pull has to move.
    """
    curl = require_tool("curl")
    parallel = ctx.settings.floor_parallel
    log = ctx.workdir / "floor.log"
    config = ctx.workdir / "curl-floor.cfg"
    blobs: dict[str, tuple[str, int]] = {}
    for p in pullables:
        for blob in p.image.blobs:
            blobs.setdefault(blob.digest, (p.repository, blob.size))

    def run(out: Path) -> Measurement:
        lines = []
        for digest, (repository, _) in blobs.items():
            url = f"{ctx.registry.url}/v2/{repository}/blobs/{digest}"
            target = out / digest.removeprefix("sha256:")
            lines.append(f'url = "{url}"\noutput = "{target}"\n')
        config.write_text("".join(lines))
        args = [
            curl,
            "--silent",
            "--show-error",
            "--fail",
            "--noproxy",
            "*",
            "--parallel",
            "--parallel-max",
            str(parallel),
            "--config",
            str(config),
        ]
        return _timed_with_registry(
            ctx,
            lambda: run_measured(args, env=ctx.env, log=log, timeout=ctx.settings.timeout),
        )

    def check(out: Path) -> None:
        for digest, (_, size) in blobs.items():
            path = out / digest.removeprefix("sha256:")
            if not path.is_file() or path.stat().st_size != size:
                raise BenchError(f"curl floor: {path} missing or not {size} bytes")

    return Tool("floor", f"curl floor -Z{parallel}", run, check)


# --------------------------------------------------------------------------------------------
# Running and reporting


def measure_tools(ctx: Context, tools: Sequence[Tool]) -> dict[str, list[Measurement]]:
    """Run every tool ``repeat`` times, interleaved, each into a fresh directory."""
    results: dict[str, list[Measurement]] = {tool.key: [] for tool in tools}
    out = ctx.workdir / "out"
    repeat = ctx.settings.repeat
    for round_number in range(1, repeat + 1):
        for tool in tools:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            os.sync()  # earlier runs' writes must not be flushed during this one
            measurement = tool.run(out)
            tool.check(out)
            results[tool.key].append(measurement)
            progress(
                f"  {tool.label} [{round_number}/{repeat}]: {measurement.wall:.2f}s wall, "
                f"{measurement.cpu:.2f}s CPU, {measurement.max_rss_kib / 1024:.0f} MiB peak RSS"
            )
    shutil.rmtree(out, ignore_errors=True)
    return results


def _render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


class Scenario(abc.ABC):
    """A set of images in the registry and the tools that pull them."""

    name: ClassVar[str]
    summary: ClassVar[str]
    payload_bytes: int | None = None
    """Bytes one pull moves, for a throughput column; ``None`` leaves it out."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tools: list[Tool] = []
        self.pullables: list[Pullable] = []

    @abc.abstractmethod
    def prepare(self) -> list[Tool]:
        """Build and push the images; return the tools to time (filtered by ``--tools``)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line saying what is pulled."""

    def extra_lines(self, results: dict[str, list[Measurement]]) -> list[str]:
        """Lines printed below the table."""
        return []

    def push(self, layout: OciLayout, destinations: dict[str, BuiltImage]) -> list[Pullable]:
        layout.finish()
        started = time.perf_counter()
        push_images(self.ctx.registry, layout.root, destinations, env=self.ctx.env)
        progress(f"pushed {len(destinations)} image(s) in {time.perf_counter() - started:.1f}s")
        host = self.ctx.registry.host
        return [
            Pullable(f"{host}/{destination}", destination.rpartition(":")[0], destination, image)
            for destination, image in destinations.items()
        ]

    def report(self, results: dict[str, list[Measurement]]) -> str:
        repeat = self.ctx.settings.repeat
        labels = {tool.key: tool.label for tool in self.tools}
        medians = {key: statistics.median(m.wall for m in runs) for key, runs in results.items()}
        reference = medians.get("bulkpull")
        headers = ["tool", "wall median s", "min s", "max s"]
        if self.payload_bytes is not None:
            headers.append("MiB/s")
        headers += ["CPU median s", "peak RSS MiB", "registry CPU s", "bulkpull/tool"]
        rows = []
        for key, runs in results.items():
            walls = [m.wall for m in runs]
            row = [labels[key], f"{medians[key]:.2f}", f"{min(walls):.2f}", f"{max(walls):.2f}"]
            if self.payload_bytes is not None:
                row.append(f"{self.payload_bytes / MIB / medians[key]:.0f}")
            row += [
                f"{statistics.median(m.cpu for m in runs):.2f}",
                f"{max(m.max_rss_kib for m in runs) / 1024:.0f}",
                f"{statistics.median(m.registry_cpu for m in runs):.2f}",
                f"{reference / medians[key]:.2f}" if reference is not None else "-",
            ]
            rows.append(row)
        notes = [
            f"{repeat} run(s) per tool; wall and CPU are medians, peak RSS is the largest "
            "single process over all runs (for several skopeo processes: the largest one).",
            "bulkpull/tool is the ratio of median wall times: below 1 means bulkpull is faster.",
        ]
        return "\n".join(
            [
                f"== scenario {self.name}: {self.describe()}",
                "",
                _render(headers, rows),
                "",
                *notes,
                *self.extra_lines(results),
            ]
        )


class SharedScenario(Scenario):
    """Many images over the same base layers: shared blobs must be fetched once."""

    name = "shared"
    summary = "N images sharing two base layers, each with its own top layers"

    def prepare(self) -> list[Tool]:
        settings = self.ctx.settings
        layout = OciLayout(self.ctx.workdir / "layout")
        started = time.perf_counter()
        fmt = settings.shared_format
        base = [
            layout.add_random_layer(size, layer_format=fmt, name=f"base/{i}.bin")
            for i, size in enumerate(settings.shared_base_sizes)
        ]
        destinations: dict[str, BuiltImage] = {}
        for k in range(settings.shared_images):
            unique: list[LayerBlob] = [
                layout.add_random_layer(size, layer_format=fmt, name=f"top/{k}-{i}.bin")
                for i, size in enumerate(settings.shared_unique_sizes)
            ]
            image = layout.add_image(f"img{k}", [*base, *unique], label=f"img{k}")
            destinations[f"bench/img{k}:v1"] = image
        progress(f"built {settings.shared_images} images in {time.perf_counter() - started:.1f}s")
        self.pullables = self.push(layout, destinations)
        shutil.rmtree(layout.root)
        candidates: dict[str, Callable[[], Tool]] = {
            "bulkpull": lambda: bulkpull_tool(self.ctx, self.pullables),
            "skopeo-seq": lambda: skopeo_sequential_tool(
                self.ctx, self.pullables, "skopeo sequential"
            ),
            "skopeo-par": lambda: skopeo_parallel_tool(self.ctx, self.pullables),
            "floor": lambda: floor_tool(self.ctx, self.pullables),
        }
        self.tools = [make() for key, make in candidates.items() if key in settings.tools]
        return self.tools

    def describe(self) -> str:
        images = [p.image for p in self.pullables]
        unique = {blob.digest: blob.size for image in images for blob in image.blobs}
        total = sum(image.pulled_bytes for image in images)
        layers = len(images[0].layers) if images else 0
        return (
            f"{len(images)} images of {layers} layers ({self.ctx.settings.shared_format.value}), "
            f"{len(unique)} distinct blobs, {_mib(sum(unique.values()))} distinct, "
            f"{_mib(total)} summed over images"
        )


class LargeScenario(Scenario):
    """One image with one very large layer: streaming, memory and throughput."""

    name = "large"
    summary = "one image with one large layer (--large-size)"

    def prepare(self) -> list[Tool]:
        settings = self.ctx.settings
        layout = OciLayout(self.ctx.workdir / "layout")
        started = time.perf_counter()
        layer = layout.add_random_layer(
            settings.large_size, layer_format=settings.large_format, name="large.bin"
        )
        image = layout.add_image("large", [layer], label="large")
        progress(f"built a {_mib(layer.size)} layer in {time.perf_counter() - started:.1f}s")
        self.pullables = self.push(layout, {"bench/large:v1": image})
        shutil.rmtree(layout.root)
        self.payload_bytes = image.pulled_bytes
        candidates: dict[str, Callable[[], Tool]] = {
            "bulkpull": lambda: bulkpull_tool(self.ctx, self.pullables),
            "skopeo-seq": lambda: skopeo_sequential_tool(self.ctx, self.pullables, "skopeo"),
            "floor": lambda: floor_tool(self.ctx, self.pullables),
        }
        self.tools = [make() for key, make in candidates.items() if key in settings.tools]
        return self.tools

    def describe(self) -> str:
        image = self.pullables[0].image
        return (
            f"1 image, one {self.ctx.settings.large_format.value} layer of "
            f"{_mib(image.layers[0].size)} ({image.layers[0].size} bytes)"
        )

    def extra_lines(self, results: dict[str, list[Measurement]]) -> list[str]:
        runs = results.get("bulkpull")
        if not runs:
            return []
        peak = max(m.max_rss_kib for m in runs) / 1024
        target = self.ctx.settings.rss_target_mib
        verdict = "PASS" if peak < target else "FAIL"
        return [
            "",
            f"bulkpull peak RSS {peak:.0f} MiB (largest of {len(runs)} run(s)); "
            f"target under {target:.0f} MiB: {verdict}",
        ]


SCENARIOS: dict[str, type[Scenario]] = {
    scenario.name: scenario for scenario in (SharedScenario, LargeScenario)
}
"""Every scenario by name, in the order ``--scenario all`` runs them."""
