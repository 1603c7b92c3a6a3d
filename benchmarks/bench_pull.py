"""The pull scenarios (shared, many, large, wan) and the image sets other scenarios reuse."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence

from bench_base import Scenario
from bench_images import BuiltImage, LayerBlob, LayerFormat, OciLayout
from bench_infra import progress
from bench_model import (
    MIB,
    Pullable,
    Route,
    Settings,
    Tool,
    distinct_blobs,
    mib,
    size_text,
    summed_bytes,
)
from bench_proxy import throttle_proxy
from bench_report import Results, Target, cpu_ratio, largest_of, median_of, per_output, wall_ratio
from bench_tools import standard_tools

Names = Callable[[int], str]
"""The tag of the k-th image of a set in the layout."""
SetBuilder = Callable[[Settings, OciLayout, Names], list[BuiltImage]]


def shared_set(settings: Settings, layout: OciLayout, name: Names) -> list[BuiltImage]:
    """``--images`` images over the same base layers, each with top layers of its own."""
    fmt = settings.shared_format
    base = [
        layout.add_random_layer(size, layer_format=fmt, name=f"base/{i}.bin")
        for i, size in enumerate(settings.shared_base_sizes)
    ]
    images = []
    for k in range(settings.shared_images):
        unique: list[LayerBlob] = [
            layout.add_random_layer(size, layer_format=fmt, name=f"top/{k}-{i}.bin")
            for i, size in enumerate(settings.shared_unique_sizes)
        ]
        images.append(layout.add_image(name(k), [*base, *unique], label=name(k)))
    return images


def many_set(settings: Settings, layout: OciLayout, name: Names) -> list[BuiltImage]:
    """``--many-images`` small images: a layer of its own each, every other one a base too."""
    fmt = settings.shared_format
    bases = [
        layout.add_random_layer(size, layer_format=fmt, name=f"base/{i}.bin")
        for i, size in enumerate(settings.many_base_sizes)
    ]
    images = []
    for k in range(settings.many_images):
        own = layout.add_random_layer(
            settings.many_unique_size, layer_format=fmt, name=f"own/{k}.bin"
        )
        # Every other image also has a base layer, the bases taking turns.
        layers = [bases[(k // 2) % len(bases)], own] if bases and k % 2 == 0 else [own]
        images.append(layout.add_image(name(k), layers, label=name(k)))
    return images


def build_and_push(scenario: Scenario, build: SetBuilder, prefix: str) -> list[Pullable]:
    """Build a set as ``{prefix}{k}:v1`` and push it to the source registry."""
    layout = OciLayout(scenario.ctx.workdir / "layout")
    started = time.perf_counter()
    images = build(scenario.ctx.settings, layout, lambda k: f"{prefix}{k}:v1")
    progress(f"built {len(images)} image(s) in {time.perf_counter() - started:.1f}s")
    pullables = scenario.push(layout, {image.tag: image for image in images})
    shutil.rmtree(layout.root)
    return pullables


def describe_set(pullables: Sequence[Pullable], fmt: LayerFormat) -> str:
    counts = sorted({len(p.image.layers) for p in pullables}) or [0]
    layers = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    distinct = distinct_blobs(pullables)
    return (
        f"{len(pullables)} images of {layers} layers ({fmt.value}), {len(distinct)} distinct "
        f"blobs, {mib(sum(distinct.values()))} distinct, {mib(summed_bytes(pullables))} "
        "summed over images"
    )


def describe_many(settings: Settings) -> str:
    bases = ", ".join(size_text(size) for size in settings.many_base_sizes)
    return (
        f"each image has a layer of {size_text(settings.many_unique_size)} of its own, every "
        f"other one also one of {len(settings.many_base_sizes)} shared base layers ({bases})"
    )


_ARCHIVE_TOOLS = ("bulkpull", "skopeo-seq", "skopeo-par", "floor", "floor-cat")


class SharedScenario(Scenario):
    """Many images over the same base layers: shared blobs must be fetched once."""

    name = "shared"
    summary = "N images sharing two base layers, each with its own top layers"

    def prepare(self) -> list[Tool]:
        self.pullables = build_and_push(self, shared_set, "bench/img")
        self.tools = standard_tools(self.ctx, self.pullables, self.route, keys=_ARCHIVE_TOOLS)
        return self.tools

    def describe(self) -> str:
        return describe_set(self.pullables, self.ctx.settings.shared_format)

    def targets(self, results: Results) -> list[Target]:
        runs = results.get("bulkpull", [])
        return [
            Target(
                "wall, bulkpull / curl + cat", wall_ratio(results, "bulkpull", "floor-cat"), 1.2
            ),
            Target(
                "wall, bulkpull / skopeo sequential",
                wall_ratio(results, "bulkpull", "skopeo-seq"),
                0.25,
            ),
            Target(
                "bulkpull disk after the run / sum of archives",
                median_of(runs, per_output(lambda m: m.disk_after)),
                1.02,
            ),
        ]


class ManyScenario(Scenario):
    """Many small images: per-image overhead (resolving, requests, archives) dominates."""

    name = "many"
    summary = "many small images of one or two layers, some layers shared"

    def prepare(self) -> list[Tool]:
        self.pullables = build_and_push(self, many_set, "bench/many")
        self.tools = standard_tools(self.ctx, self.pullables, self.route, keys=_ARCHIVE_TOOLS)
        return self.tools

    def describe(self) -> str:
        settings = self.ctx.settings
        return f"{describe_set(self.pullables, settings.shared_format)}; {describe_many(settings)}"


def large_set(settings: Settings, layout: OciLayout, name: Names) -> list[BuiltImage]:
    """One image with one layer of ``--large-size``."""
    layer = layout.add_random_layer(
        settings.large_size, layer_format=settings.large_format, name="large.bin"
    )
    return [layout.add_image(name(0), [layer], label=name(0))]


class LargeScenario(Scenario):
    """One image with one very large layer: streaming, memory, disk and throughput."""

    name = "large"
    summary = "one image with one large layer (--large-size)"

    def prepare(self) -> list[Tool]:
        self.pullables = build_and_push(self, large_set, "bench/large")
        self.payload_bytes = self.pullables[0].image.pulled_bytes
        self.tools = standard_tools(
            self.ctx,
            self.pullables,
            self.route,
            keys=("bulkpull", "skopeo-seq", "floor", "floor-tee"),
            skopeo_label="skopeo",
        )
        return self.tools

    def describe(self) -> str:
        image = self.pullables[0].image
        return (
            f"1 image, one {self.ctx.settings.large_format.value} layer of "
            f"{mib(image.layers[0].size)} ({image.layers[0].size} bytes)"
        )

    def targets(self, results: Results) -> list[Target]:
        runs = results.get("bulkpull", [])
        written = median_of(runs, per_output(lambda m: m.write_bytes))
        peak = largest_of(runs, lambda m: m.max_rss_kib / 1024)
        return [
            Target(
                "wall, bulkpull / curl --parallel", wall_ratio(results, "bulkpull", "floor"), 1.25
            ),
            Target(
                "bulkpull peak disk / archive size",
                largest_of(runs, per_output(lambda m: m.peak_disk)),
                1.05,
            ),
            Target(
                "bulkpull bytes written / archive size",
                written if self.ctx.counts_writes else None,
                1.05,
            ),
            Target(
                f"CPU, bulkpull / curl|tee|{self.ctx.settings.floor_hasher}",
                cpu_ratio(results, "bulkpull", "floor-tee"),
                1.3,
            ),
            Target(
                "bulkpull peak RSS", peak, self.ctx.settings.rss_target_mib, unit="MiB", strict=True
            ),
        ]


class WanScenario(Scenario):
    """The ``shared`` set over a slow link: round trips and per-connection rates matter."""

    name = "wan"
    summary = "the shared set through added latency and a per-connection rate cap"

    def prepare(self) -> list[Tool]:
        settings = self.ctx.settings
        self.pullables = build_and_push(self, shared_set, "bench/wan-img")
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

    def extra_lines(self, results: Results) -> list[str]:
        return [
            "connections: TCP connections the tool opened (median per run); each new one "
            "waits a round trip before its first request goes through, as a handshake would.",
            "proxy CPU s: the proxy moves every byte in the benchmark's process; it shares "
            "the machine's CPUs with the tools and the registry.",
        ]
