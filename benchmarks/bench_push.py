"""The push scenario: the ``shared`` set from an OCI layout into an empty registry.

The layout is written as a pull would write it (tags are whole references, also containerd's
image names). Every run pushes into a registry of its own with empty storage, started just
before the run (not timed), and afterwards every image must be there under its name with the
digest it has in the layout.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from bench_base import Scenario
from bench_checks import check_served
from bench_images import BuiltImage, OciLayout
from bench_infra import TargetRegistry, progress
from bench_model import Context, Pullable, Tool, summed_bytes
from bench_pull import describe_set, shared_set
from bench_report import Columns, Results, Target, largest_of, wall_ratio
from bench_timing import Command, timing
from bench_tools import (
    SkopeoCopies,
    bulkpull_offers,
    bulkpull_tool,
    skopeo_parallel_tool,
    skopeo_sequential_tool,
)

_SOURCE_PREFIX = "docker.io/"
_PUSH_USAGE = r"^Usage: \S*bulkpull push\b"


class PushScenario(Scenario):
    """bulkpull push against skopeo copy oci: → docker://, one image at a time and xargs -P."""

    name = "push"
    pulls = False
    summary = "the shared set from an OCI layout into an empty registry"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.skipped: list[str] = []
        """Tools that were chosen but cannot run, and why."""

    def prepare(self) -> list[Tool]:
        ctx = self.ctx
        layout = OciLayout(ctx.workdir / "layout", full_names=True)
        started = time.perf_counter()
        images = shared_set(ctx.settings, layout, lambda k: f"{_SOURCE_PREFIX}bench/push-img{k}:v1")
        layout.finish()
        progress(f"built {len(images)} image(s) in {time.perf_counter() - started:.1f}s")
        self.layout = layout
        self.pullables = [
            Pullable(image.tag.rpartition(":")[0], image.tag, image) for image in images
        ]
        self.target = TargetRegistry(
            ctx.workdir / "target", env=ctx.env, namespace=ctx.settings.target_namespace
        )
        self.resources.callback(self.target.close)
        self.tools = self._tools(images)
        return self.tools

    def _expected(self, images: list[BuiltImage]) -> dict[str, str]:
        """``NAMESPACE/repo:tag`` in the target → the manifest digest, for every image."""
        namespace = self.target.namespace
        return {
            f"{namespace}/{image.tag.removeprefix(_SOURCE_PREFIX)}": image.manifest.digest
            for image in images
        }

    def _tools(self, images: list[BuiltImage]) -> list[Tool]:
        ctx, target = self.ctx, self.target
        expected = self._expected(images)
        command = Command(
            lambda out: check_served(target.registry, expected, "push"),
            summed_bytes(self.pullables),
            timing(ctx, self.route, target=target, fresh=True),
        )
        tools = []
        chosen = ctx.settings.tools
        if "bulkpull" in chosen:
            if bulkpull_offers(ctx, ["push", "--help"], _PUSH_USAGE):
                tools.append(self._bulkpull(command))
            else:
                self.skipped.append("bulkpull: `bulkpull push --help` shows no push command")
                progress(f"push: {self.skipped[-1]}; skipping bulkpull, measuring skopeo only")
        copies = SkopeoCopies(
            command,
            ("--preserve-digests", "--dest-tls-verify=false"),
            lambda out: [
                (f"oci:{self.layout.root}:{image.tag}", f"docker://{target.registry.host}/{name}")
                for image, name in zip(images, expected, strict=True)
            ],
        )
        if "skopeo-seq" in chosen:
            tools.append(skopeo_sequential_tool(ctx, copies))
        if "skopeo-par" in chosen:
            tools.append(skopeo_parallel_tool(ctx, copies))
        return tools

    def _bulkpull(self, command: Command) -> Tool:
        settings = self.ctx.settings

        def arguments(out: Path) -> list[str]:
            destination = f"{self.target.registry.host}/{self.target.namespace}"
            return [
                "push",
                str(self.layout.root),
                "--to",
                destination,
                "--plain-http",
                *settings.bulkpull_push_args,
            ]

        return bulkpull_tool(self.ctx, command, arguments, label="bulkpull push")

    def describe(self) -> str:
        return (
            f"{describe_set(self.pullables, self.ctx.settings.shared_format)}, from an OCI "
            f"layout into an empty registry (a fresh one per run), below "
            f"/{self.target.namespace}/"
        )

    def columns(self, results: Results) -> Columns:
        return dataclasses.replace(super().columns(results), target=True)

    def extra_lines(self, results: Results) -> list[str]:
        lines = [
            "target wrote MiB: bytes the target registry wrote to its disk during the run; "
            "registry CPU s: the target's and the (idle) source registry's. Each run's target "
            "is checked afterwards: every image's manifest digest (HEAD) equals the layout's."
        ]
        return lines + [f"Not measured: {reason}." for reason in self.skipped]

    def targets(self, results: Results) -> list[Target]:
        runs = results.get("bulkpull", [])
        return [
            Target(
                "wall, bulkpull push / skopeo sequential",
                wall_ratio(results, "bulkpull", "skopeo-seq"),
                0.3,
            ),
            Target(
                "wall, bulkpull push / skopeo xargs", wall_ratio(results, "bulkpull", "skopeo-par")
            ),
            Target(
                "bulkpull push peak RSS",
                largest_of(runs, lambda m: m.max_rss_kib / 1024),
                unit="MiB",
            ),
        ]
