"""Scenarios: what is pushed to the registry, which tools pull it, and how results are shown.

A scenario builds its images, pushes them (setup, not measured) and returns the tools to time.
The runner then runs every tool ``repeat`` times, interleaved (tool A, B, C, A, B, C, …) so that
drift of the machine hits every tool alike, each time into a fresh, empty output directory, and
checks what each run wrote. A scenario may put a proxy of the benchmark's own between the tools
and the registry (:class:`Route`); it is a context manager that stops what it started. Adding a
scenario means subclassing :class:`Scenario` and listing the class in :data:`SCENARIOS`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
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
from bench_proxy import FaultPlan, FaultStats, Proxy, ThrottleProxy, fault_proxy, throttle_proxy

MIB = 1024 * 1024
GB = 1000**3
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
    """Layer format of every scenario but ``large``."""
    large_size: int
    large_format: LayerFormat
    rss_target_mib: float
    many_images: int = 100
    many_base_sizes: tuple[int, ...] = (MIB, MIB // 2)
    many_unique_size: int = 256 * 1024
    wan_rtt: float = 0.04
    """Seconds of added round-trip time."""
    wan_rate: int = 20 * MIB
    """Bytes per second per connection and direction."""
    fault_unavailable: float = 0.1
    fault_reset: float = 0.2
    fault_seed: int = 1
    fault_max_streak: int = 2
    fault_retry_delay: float = 0.05


@dataclass(frozen=True)
class Context:
    """What a scenario works with."""

    settings: Settings
    registry: Registry
    workdir: Path
    """A directory of the scenario's own, removed afterwards."""
    env: dict[str, str]


@dataclass(frozen=True)
class Route:
    """Where the tools pull from: the registry itself, or a proxy in front of it."""

    host: str
    """``127.0.0.1:PORT``."""
    proxy: Proxy | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@dataclass(frozen=True)
class Pullable:
    """One image in the registry, as the tools name it."""

    repository: str
    """``repo`` without registry and tag."""
    archive_name: str
    """``repo:tag``: the name skopeo writes into a docker-archive."""
    image: BuiltImage

    def reference(self, route: Route) -> str:
        """``127.0.0.1:PORT/repo:tag`` by way of ``route``."""
        return f"{route.host}/{self.archive_name}"


@dataclass(frozen=True)
class Tool:
    """A way of pulling a scenario's images; ``run`` writes into an empty directory."""

    key: str
    label: str
    run: Callable[[Path], Measurement]
    check: Callable[[Path], None]
    moved_bytes: int
    """Blob bytes one run downloads (shared blobs once or per image, as the tool does)."""


def distinct_blobs(pullables: Sequence[Pullable]) -> dict[str, int]:
    """Size of every distinct blob (configs and layers) of the images, by digest."""
    return {blob.digest: blob.size for p in pullables for blob in p.image.blobs}


def summed_bytes(pullables: Sequence[Pullable]) -> int:
    """Blob bytes of every image, shared blobs counted again for each image."""
    return sum(p.image.pulled_bytes for p in pullables)


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


def _hash_members(tar: tarfile.TarFile) -> dict[str, tuple[str, int]]:
    """Digest and size of every file below ``blobs/sha256/`` in an archive."""
    found = {}
    for member in tar.getmembers():
        if not member.isfile() or not member.name.startswith("blobs/sha256/"):
            continue
        stream = tar.extractfile(member)
        if stream is None:
            continue
        digest = hashlib.sha256()
        while chunk := stream.read(MIB):
            digest.update(chunk)
        found[member.name] = ("sha256:" + digest.hexdigest(), member.size)
    return found


def compare_with_pushed(out: Path, pullables: Sequence[Pullable]) -> tuple[int, list[str]]:
    """Hash every blob in bulkpull's archives in ``out`` and compare with what was pushed.

    Returns the number of images whose manifest, config and layers are all in one archive with
    the pushed digests and sizes, and the problems found (a blob whose bytes do not match its
    name, an image missing or incomplete, a leftover ``.partial`` file).
    """
    expected = {p.image.config.digest: p for p in pullables}
    complete: set[str] = set()
    problems: list[str] = []
    for path in sorted(out.glob("*.partial")):
        problems.append(f"{path.name}: unfinished archive left behind")
    for path in sorted(out.glob("*.tar")):
        try:
            with tarfile.open(path, "r:") as tar:
                blobs = _hash_members(tar)
                member = tar.extractfile("manifest.json")
                entries = json.load(member) if member is not None else []
        except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
            problems.append(f"{path.name}: unreadable: {exc!r}")
            continue
        for name, (digest, _) in blobs.items():
            if name.rpartition("/")[2] != digest.removeprefix("sha256:"):
                problems.append(f"{path.name}: {name} holds {digest}")
        for entry in entries:
            config = blobs.get(entry.get("Config", ""))
            pullable = expected.get(config[0]) if config else None
            if pullable is None:
                problems.append(f"{path.name}: an image that was not pushed: {entry}")
                continue
            image = pullable.image
            wrong = [
                blob.digest
                for blob in (image.manifest, *image.blobs)
                if blobs.get(f"blobs/sha256/{blob.digest.removeprefix('sha256:')}")
                != (blob.digest, blob.size)
            ]
            if wrong:
                problems.append(f"{path.name}: blobs missing or different: {wrong}")
            else:
                complete.add(image.config.digest)
    return len(complete), problems


# --------------------------------------------------------------------------------------------
# The tools


def _timed(ctx: Context, route: Route, run: Callable[[], Measurement]) -> Measurement:
    """``run``, with the CPU time the registry and the proxy (if any) spent meanwhile."""
    proxy = route.proxy
    registry_before = ctx.registry.cpu_seconds()
    proxy_before = proxy.cpu_seconds() if proxy is not None else 0.0
    if isinstance(proxy, ThrottleProxy):
        proxy.take_stats()
    measurement = run()
    connections = proxy.take_stats().connections if isinstance(proxy, ThrottleProxy) else None
    return dataclasses.replace(
        measurement,
        registry_cpu=ctx.registry.cpu_seconds() - registry_before,
        proxy_cpu=proxy.cpu_seconds() - proxy_before if proxy is not None else 0.0,
        connections=connections,
    )


def bulkpull_tool(
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
    log = ctx.workdir / "bulkpull.log"

    def run(out: Path) -> Measurement:
        args = [
            *ctx.settings.bulkpull,
            str(image_list),
            "-o",
            str(out),
            "--plain-http",
            *extra_args,
            *ctx.settings.bulkpull_args,
        ]
        return _timed(
            ctx,
            route,
            lambda: run_measured(
                args,
                env=ctx.env,
                log=log,
                timeout=ctx.settings.timeout,
                allow_failure=allow_failure,
            ),
        )

    return Tool(
        "bulkpull",
        "bulkpull",
        run,
        lambda out: check_archives(out, pullables, "bulkpull"),
        sum(distinct_blobs(pullables).values()),
    )


def _skopeo_copy_args(
    skopeo: str, pullable: Pullable, route: Route, out: Path, index: int
) -> list[str]:
    return [
        skopeo,
        "--insecure-policy",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{pullable.reference(route)}",
        f"docker-archive:{out / f'{index}.tar'}:{pullable.archive_name}",
    ]


def skopeo_sequential_tool(
    ctx: Context, pullables: Sequence[Pullable], route: Route, label: str
) -> Tool:
    """One ``skopeo copy … docker-archive:…`` after the other."""
    skopeo = require_tool("skopeo")
    log = ctx.workdir / "skopeo-seq.log"

    def run(out: Path) -> Measurement:
        def all_copies() -> Measurement:
            parts = [
                run_measured(
                    _skopeo_copy_args(skopeo, p, route, out, i),
                    env=ctx.env,
                    log=log,
                    timeout=ctx.settings.timeout,
                )
                for i, p in enumerate(pullables)
            ]
            # The sum of the copies' own times leaves out the starts of the measuring process.
            return combine(parts, sum(part.wall for part in parts), 0.0)

        return _timed(ctx, route, all_copies)

    return Tool(
        "skopeo-seq",
        label,
        run,
        lambda out: check_archives(out, pullables, "skopeo sequential"),
        summed_bytes(pullables),
    )


def skopeo_parallel_tool(ctx: Context, pullables: Sequence[Pullable], route: Route) -> Tool:
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
            lines.extend(_skopeo_copy_args(skopeo, p, route, out, i)[-2:])
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
            *_skopeo_copy_args(skopeo, pullables[0], route, out, 0)[:-2],
        ]
        return _timed(
            ctx,
            route,
            lambda: run_measured(args, env=ctx.env, log=log, timeout=ctx.settings.timeout),
        )

    return Tool(
        "skopeo-par",
        f"skopeo xargs -P{parallel}",
        run,
        lambda out: check_archives(out, pullables, "skopeo parallel"),
        summed_bytes(pullables),
    )


def floor_tool(ctx: Context, pullables: Sequence[Pullable], route: Route) -> Tool:
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
            url = f"{route.url}/v2/{repository}/blobs/{digest}"
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
        return _timed(
            ctx,
            route,
            lambda: run_measured(args, env=ctx.env, log=log, timeout=ctx.settings.timeout),
        )

    def check(out: Path) -> None:
        for digest, (_, size) in blobs.items():
            path = out / digest.removeprefix("sha256:")
            if not path.is_file() or path.stat().st_size != size:
                raise BenchError(f"curl floor: {path} missing or not {size} bytes")

    return Tool(
        "floor", f"curl floor -Z{parallel}", run, check, sum(size for _, size in blobs.values())
    )


def standard_tools(
    ctx: Context,
    pullables: Sequence[Pullable],
    route: Route,
    *,
    keys: Sequence[str] = TOOL_KEYS,
    skopeo_label: str = "skopeo sequential",
) -> list[Tool]:
    """The tools of ``keys`` that ``--tools`` chose, pulling ``pullables`` by way of ``route``."""
    candidates: dict[str, Callable[[], Tool]] = {
        "bulkpull": lambda: bulkpull_tool(ctx, pullables, route),
        "skopeo-seq": lambda: skopeo_sequential_tool(ctx, pullables, route, skopeo_label),
        "skopeo-par": lambda: skopeo_parallel_tool(ctx, pullables, route),
        "floor": lambda: floor_tool(ctx, pullables, route),
    }
    return [candidates[key]() for key in keys if key in ctx.settings.tools]


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
            failed = f", exit code {measurement.exit_code}" if measurement.exit_code else ""
            progress(
                f"  {tool.label} [{round_number}/{repeat}]: {measurement.wall:.2f}s wall, "
                f"{measurement.cpu:.2f}s CPU, {measurement.max_rss_kib / 1024:.0f} MiB peak RSS"
                f"{failed}"
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


def _size(size: int) -> str:
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size / 1024:.0f} KiB"


def _median_wall(runs: Sequence[Measurement]) -> float:
    return statistics.median(m.wall for m in runs)


class Scenario(abc.ABC):
    """A set of images in the registry and the tools that pull them.

    Used as a context manager: what :meth:`prepare` starts (a proxy) stops on exit.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    payload_bytes: int | None = None
    """Bytes one pull moves, for a throughput column; ``None`` leaves it out."""

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

    def extra_lines(self, results: dict[str, list[Measurement]]) -> list[str]:
        """Lines printed below the table."""
        return []

    def details(self) -> dict[str, object]:
        """Figures of the scenario's own for ``--json``, besides the measurements."""
        return {}

    def push(self, layout: OciLayout, destinations: dict[str, BuiltImage]) -> list[Pullable]:
        layout.finish()
        started = time.perf_counter()
        push_images(self.ctx.registry, layout.root, destinations, env=self.ctx.env)
        progress(f"pushed {len(destinations)} image(s) in {time.perf_counter() - started:.1f}s")
        return [
            Pullable(destination.rpartition(":")[0], destination, image)
            for destination, image in destinations.items()
        ]

    def report(self, results: dict[str, list[Measurement]]) -> str:
        repeat = self.ctx.settings.repeat
        tools = {tool.key: tool for tool in self.tools}
        medians = {key: _median_wall(runs) for key, runs in results.items()}
        reference = medians.get("bulkpull")
        proxied = self.route.proxy is not None
        counted = any(m.connections is not None for runs in results.values() for m in runs)
        headers = ["tool", "wall median s", "min s", "max s"]
        if self.payload_bytes is not None:
            headers.append("MiB/s")
        headers += ["CPU median s", "CPU s/GB", "peak RSS MiB", "registry CPU s"]
        if proxied:
            headers.append("proxy CPU s")
        if counted:
            headers.append("connections")
        headers.append("bulkpull/tool")
        rows = []
        for key, runs in results.items():
            walls = [m.wall for m in runs]
            cpu = statistics.median(m.cpu for m in runs)
            row = [tools[key].label]
            row += [f"{medians[key]:.2f}", f"{min(walls):.2f}", f"{max(walls):.2f}"]
            if self.payload_bytes is not None:
                row.append(f"{self.payload_bytes / MIB / medians[key]:.0f}")
            row += [
                f"{cpu:.2f}",
                f"{cpu / (tools[key].moved_bytes / GB):.1f}",
                f"{max(m.max_rss_kib for m in runs) / 1024:.0f}",
                f"{statistics.median(m.registry_cpu for m in runs):.2f}",
            ]
            if proxied:
                row.append(f"{statistics.median(m.proxy_cpu for m in runs):.2f}")
            if counted:
                connections = [m.connections for m in runs if m.connections is not None]
                row.append(f"{statistics.median(connections):.0f}" if connections else "-")
            row.append(f"{reference / medians[key]:.2f}" if reference is not None else "-")
            rows.append(row)
        notes = [
            f"{repeat} run(s) per tool; wall and CPU are medians, peak RSS is the largest "
            "single process over all runs (for several skopeo processes: the largest one).",
            "CPU s/GB: CPU seconds per GB (10^9 bytes) of blobs the tool downloads: the "
            "distinct blobs for bulkpull and the floor, every image's blobs for skopeo.",
            "bulkpull/tool is the ratio of median wall times: below 1 means bulkpull is faster.",
        ]
        delivered = summed_bytes(self.pullables)
        distinct = sum(distinct_blobs(self.pullables).values())
        if "bulkpull" in results and delivered > distinct:
            cpu = statistics.median(m.cpu for m in results["bulkpull"])
            notes.append(
                f"Per GB of images written ({delivered / GB:.3f} GB of blobs summed over "
                f"images, as skopeo downloads them), bulkpull used {cpu / (delivered / GB):.1f} "
                "CPU s/GB."
            )
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


# --------------------------------------------------------------------------------------------
# The scenarios


def build_shared_set(scenario: Scenario, prefix: str) -> list[Pullable]:
    """Build and push the ``shared`` image set as ``{prefix}{k}:v1``."""
    settings = scenario.ctx.settings
    layout = OciLayout(scenario.ctx.workdir / "layout")
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
        image = layout.add_image(f"img{k}", [*base, *unique], label=f"{prefix}{k}")
        destinations[f"{prefix}{k}:v1"] = image
    progress(f"built {settings.shared_images} images in {time.perf_counter() - started:.1f}s")
    pullables = scenario.push(layout, destinations)
    shutil.rmtree(layout.root)
    return pullables


def describe_set(pullables: Sequence[Pullable], fmt: LayerFormat) -> str:
    counts = sorted({len(p.image.layers) for p in pullables}) or [0]
    layers = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    distinct = distinct_blobs(pullables)
    return (
        f"{len(pullables)} images of {layers} layers ({fmt.value}), {len(distinct)} distinct "
        f"blobs, {_mib(sum(distinct.values()))} distinct, {_mib(summed_bytes(pullables))} "
        "summed over images"
    )


class SharedScenario(Scenario):
    """Many images over the same base layers: shared blobs must be fetched once."""

    name = "shared"
    summary = "N images sharing two base layers, each with its own top layers"

    def prepare(self) -> list[Tool]:
        self.pullables = build_shared_set(self, "bench/img")
        self.tools = standard_tools(self.ctx, self.pullables, self.route)
        return self.tools

    def describe(self) -> str:
        return describe_set(self.pullables, self.ctx.settings.shared_format)


class ManyScenario(Scenario):
    """Many small images: per-image overhead (resolving, requests, archives) dominates."""

    name = "many"
    summary = "many small images of one or two layers, some layers shared"

    def prepare(self) -> list[Tool]:
        settings = self.ctx.settings
        fmt = settings.shared_format
        layout = OciLayout(self.ctx.workdir / "layout")
        started = time.perf_counter()
        bases = [
            layout.add_random_layer(size, layer_format=fmt, name=f"base/{i}.bin")
            for i, size in enumerate(settings.many_base_sizes)
        ]
        destinations: dict[str, BuiltImage] = {}
        for k in range(settings.many_images):
            own = layout.add_random_layer(
                settings.many_unique_size, layer_format=fmt, name=f"own/{k}.bin"
            )
            # Every other image also has a base layer, the bases taking turns.
            layers = [bases[(k // 2) % len(bases)], own] if bases and k % 2 == 0 else [own]
            image = layout.add_image(f"many{k}", layers, label=f"many{k}")
            destinations[f"bench/many{k}:v1"] = image
        progress(f"built {settings.many_images} images in {time.perf_counter() - started:.1f}s")
        self.pullables = self.push(layout, destinations)
        shutil.rmtree(layout.root)
        self.tools = standard_tools(self.ctx, self.pullables, self.route)
        return self.tools

    def describe(self) -> str:
        settings = self.ctx.settings
        bases = ", ".join(_size(size) for size in settings.many_base_sizes)
        return (
            f"{describe_set(self.pullables, settings.shared_format)}; each image has a layer "
            f"of {_size(settings.many_unique_size)} of its own, every other one also one of "
            f"{len(settings.many_base_sizes)} shared base layers ({bases})"
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
        self.tools = standard_tools(
            self.ctx,
            self.pullables,
            self.route,
            keys=("bulkpull", "skopeo-seq", "floor"),
            skopeo_label="skopeo",
        )
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


class WanScenario(Scenario):
    """The ``shared`` set over a slow link: round trips and per-connection rates matter."""

    name = "wan"
    summary = "the shared set through added latency and a per-connection rate cap"

    def prepare(self) -> list[Tool]:
        settings = self.ctx.settings
        self.pullables = build_shared_set(self, "bench/wan-img")
        proxy = self.resources.enter_context(
            throttle_proxy(self.ctx.registry.host, rtt=settings.wan_rtt, rate=settings.wan_rate)
        )
        self.route = Route(proxy.host, proxy)
        progress(f"throttling proxy on {proxy.host}: {self._link()}")
        self.tools = standard_tools(self.ctx, self.pullables, self.route)
        return self.tools

    def _link(self) -> str:
        settings = self.ctx.settings
        return (
            f"{settings.wan_rtt * 1000:.0f} ms round trip, {settings.wan_rate / MIB:.1f} MiB/s "
            f"({settings.wan_rate * 8 / 1e6:.0f} Mbit/s) per connection and direction"
        )

    def describe(self) -> str:
        return (
            f"{describe_set(self.pullables, self.ctx.settings.shared_format)}, through a "
            f"throttling proxy: {self._link()}"
        )

    def extra_lines(self, results: dict[str, list[Measurement]]) -> list[str]:
        return [
            "connections: TCP connections the tool opened (median per run); each new one "
            "waits a round trip before its first request goes through, as a handshake would.",
            "proxy CPU s: the proxy moves every byte in the benchmark's process; it shares "
            "the machine's CPUs with the tools and the registry.",
        ]


@dataclass(frozen=True)
class FaultRun:
    """What the proxy counted and what the check found in one run of the faults scenario."""

    stats: FaultStats
    images_pulled: int
    verify_exit: int | None
    """Exit code of ``bulkpull verify`` on the run's archives; ``None`` if it wrote none."""
    problems: tuple[str, ...]
    """Differences between the archives and what was pushed."""

    @property
    def verified(self) -> bool:
        return self.verify_exit in (None, 0) and not self.problems


class FaultsScenario(Scenario):
    """The ``shared`` set through a proxy that injects 503s and connection resets.

    bulkpull runs twice per round through the same proxy: once with no faults (the clean run)
    and once with faults; the ratio of their wall times is the cost of the faults.
    """

    name = "faults"
    summary = "the shared set through a fault-injecting proxy (503s, resets mid-body)"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.runs: dict[str, list[FaultRun]] = {"clean": [], "faults": []}
        settings = ctx.settings
        self.plan = FaultPlan(
            unavailable=settings.fault_unavailable,
            reset=settings.fault_reset,
            seed=settings.fault_seed,
            max_streak=settings.fault_max_streak,
        )

    def prepare(self) -> list[Tool]:
        if "bulkpull" not in self.ctx.settings.tools:
            return []
        self.pullables = build_shared_set(self, "bench/faults-img")
        proxy = self.resources.enter_context(fault_proxy(self.ctx.registry.host))
        self.route = Route(proxy.host, proxy)
        progress(f"fault-injecting proxy on {proxy.host}: {self._faults()}")
        delay = ("--retry-delay", f"{self.ctx.settings.fault_retry_delay:g}")
        pull = bulkpull_tool(
            self.ctx, self.pullables, self.route, extra_args=delay, allow_failure=True
        )
        verify_log = self.ctx.workdir / "bulkpull-verify.log"

        def make(key: str, label: str, plan: FaultPlan) -> Tool:
            pending: list[FaultStats] = []

            def run(out: Path) -> Measurement:
                proxy.reset(plan)
                measurement = pull.run(out)
                pending.append(proxy.take_stats())
                return measurement

            def check(out: Path) -> None:
                pulled, problems = compare_with_pushed(out, self.pullables)
                verify_exit = self._bulkpull_verify(out, verify_log)
                self.runs[key].append(FaultRun(pending.pop(), pulled, verify_exit, tuple(problems)))
                for problem in problems[:5]:
                    progress(f"  {label}: {problem}")

            return Tool(key, label, run, check, pull.moved_bytes)

        self.tools = [
            make(
                "clean",
                "bulkpull, no faults",
                dataclasses.replace(self.plan, unavailable=0, reset=0),
            ),
            make("faults", "bulkpull, faults", self.plan),
        ]
        return self.tools

    def _bulkpull_verify(self, out: Path, log: Path) -> int | None:
        archives = sorted(str(path) for path in out.glob("*.tar"))
        if not archives:
            return None
        with log.open("ab") as log_file:
            done = subprocess.run(
                [*self.ctx.settings.bulkpull, "verify", *archives],
                env=self.ctx.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=self.ctx.settings.timeout,
                check=False,
            )
        return done.returncode

    def _faults(self) -> str:
        plan = self.plan
        return (
            f"503 on {plan.unavailable:.0%} of requests, reset mid-body on {plan.reset:.0%} of "
            f"blob GETs (seed {plan.seed}, at most {plan.max_streak} faults in a row per request)"
        )

    def describe(self) -> str:
        return (
            f"{describe_set(self.pullables, self.ctx.settings.shared_format)}, with bulkpull "
            f"only, through a fault-injecting proxy: {self._faults()}"
        )

    def report(self, results: dict[str, list[Measurement]]) -> str:
        needed = sum(distinct_blobs(self.pullables).values())
        total = len(self.pullables)
        medians = {key: _median_wall(runs) for key, runs in results.items()}
        headers = [
            "run",
            "wall median s",
            "min s",
            "max s",
            "CPU median s",
            "peak RSS MiB",
            "proxy CPU s",
            "requests",
            "503s",
            "resets",
            "resumed",
            "images pulled",
            "digests verified",
            "blob MiB sent",
            "re-downloaded",
        ]
        rows = []
        for tool in self.tools:
            runs, faults = results[tool.key], self.runs[tool.key]

            def median(values: Sequence[float]) -> float:
                return statistics.median(values) if values else 0.0

            sent = median([run.stats.blob_bytes_sent for run in faults])
            # Only complete pulls say how much was fetched again; a failed one fetched less.
            complete = [run.stats.blob_bytes_sent for run in faults if run.images_pulled == total]
            again = f"{(median(complete) - needed) / needed:.1%}" if complete and needed else "-"
            verified = sum(run.verified for run in faults)
            rows.append(
                [
                    tool.label,
                    f"{medians[tool.key]:.2f}",
                    f"{min(m.wall for m in runs):.2f}",
                    f"{max(m.wall for m in runs):.2f}",
                    f"{statistics.median(m.cpu for m in runs):.2f}",
                    f"{max(m.max_rss_kib for m in runs) / 1024:.0f}",
                    f"{statistics.median(m.proxy_cpu for m in runs):.2f}",
                    f"{median([run.stats.requests for run in faults]):.0f}",
                    f"{median([run.stats.faults['503'] for run in faults]):.0f}",
                    f"{median([run.stats.faults['reset'] for run in faults]):.0f}",
                    f"{median([run.stats.range_requests for run in faults]):.0f}",
                    f"{min((run.images_pulled for run in faults), default=0)}/{total}",
                    "yes" if verified == len(faults) else f"NO ({len(faults) - verified} runs)",
                    f"{sent / MIB:.1f}",
                    again,
                ]
            )
        lines = [
            f"== scenario {self.name}: {self.describe()}",
            "",
            _render(headers, rows),
            "",
            f"{self.ctx.settings.repeat} run(s) each, interleaved, both through the same proxy; "
            "counts are medians per run, images pulled the fewest in any run.",
        ]
        if "clean" in medians and "faults" in medians:
            ratio = medians["faults"] / medians["clean"]
            lines.append(f"Wall-time ratio faults/clean (medians): {ratio:.2f}")
        lines += [
            f"re-downloaded: blob bytes the proxy sent beyond the {_mib(needed)} of distinct "
            "blobs needed, as a share of those (bytes sent before a reset count); median over "
            "the runs that pulled every image.",
            "resumed: blob GETs with a Range header. digests verified: in every run, bulkpull "
            "verify passes and every blob of every archive written hashes to the digest and "
            "size that was pushed.",
            f"bulkpull ran with --retry-delay {self.ctx.settings.fault_retry_delay:g} (its first "
            "backoff, doubling with jitter; bulkpull's default is 2 s). The benchmark's default "
            "of 0.05 keeps the waiting from dominating the ratio.",
        ]
        failed = {key: [m.exit_code for m in runs if m.exit_code] for key, runs in results.items()}
        for key, codes in failed.items():
            if codes:
                lines.append(f"bulkpull exit codes ({key}): {codes}; see bulkpull.log")
        injected = [
            f"{run.stats.faults['503']}/{run.stats.faults['reset']}" for run in self.runs["faults"]
        ]
        lines.append(f"Faults injected per run (503s/resets): {', '.join(injected)}")
        return "\n".join(lines)

    def details(self) -> dict[str, object]:
        return {
            key: [
                {
                    "requests": run.stats.requests,
                    "faults": dict(run.stats.faults),
                    "blob_requests": run.stats.blob_requests,
                    "range_requests": run.stats.range_requests,
                    "blob_bytes_sent": run.stats.blob_bytes_sent,
                    "images_pulled": run.images_pulled,
                    "verify_exit": run.verify_exit,
                    "problems": list(run.problems),
                }
                for run in runs
            ]
            for key, runs in self.runs.items()
        }


SCENARIOS: dict[str, type[Scenario]] = {
    scenario.name: scenario
    for scenario in (SharedScenario, ManyScenario, LargeScenario, WanScenario, FaultsScenario)
}
"""Every scenario by name, in the order ``--scenario all`` runs them."""
