"""The copy scenario: registry to registry, cold (empty target) and with nothing changed.

The image sets (``shared`` and ``many``) are pushed to the source registry as single-component
repositories (``copyshared0:v1``), so that every tool puts them at the same names in the
target: bulkpull maps a name's repository path below the namespace, ``skopeo sync`` the last
component. Each tool runs twice in a row per round and set: cold, into a target registry
started empty just before (not timed), then again with nothing changed, into the same target.
After each run every image must be in the target under its name with the source's digest.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from bench_base import Scenario
from bench_checks import check_served
from bench_infra import BenchError, TargetRegistry, progress, require_tool
from bench_measure import Measurement
from bench_model import MIB, Context, Pullable, Route, Tool, summed_bytes
from bench_proxy import throttle_proxy
from bench_pull import SetBuilder, build_and_push, describe_many, describe_set, many_set, shared_set
from bench_report import Columns, Results, Target, wall_ratio
from bench_timing import Command, log_file, measured, timing
from bench_tools import (
    SkopeoCopies,
    bulkpull_offers,
    bulkpull_tool,
    skopeo_parallel_tool,
    skopeo_sequential_tool,
)

SETS: dict[str, SetBuilder] = {"shared": shared_set, "many": many_set}
COLD, UNCHANGED = "cold", "unchanged"
_TO_FLAG = r"(?<![\w-])--to(?![\w-])"

Maker = Callable[[str, Sequence[Pullable], Command], Tool]
"""Builds one tool for an image set, given what its runs check and how they are timed."""


class CopyScenario(Scenario):
    """bulkpull LIST --to against skopeo sync and skopeo copy, source registry to target."""

    name = "copy"
    pulls = False
    summary = "the shared and many sets from one registry to another, cold and unchanged"
    group_header = "set, state"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sets: dict[str, list[Pullable]] = {}
        self.skipped: list[str] = []
        """Tools that were chosen but cannot run, and why."""
        self.target = TargetRegistry(
            ctx.workdir / "target", env=ctx.env, namespace=ctx.settings.target_namespace
        )
        self.resources.callback(self.target.close)

    def prepare(self) -> list[Tool]:
        for name in self.ctx.settings.copy_sets:
            self.sets[name] = build_and_push(self, SETS[name], f"copy{name}")
        self.pullables = [p for pullables in self.sets.values() for p in pullables]
        settings = self.ctx.settings
        if settings.copy_rtt > 0:
            proxy = self.resources.enter_context(
                throttle_proxy(
                    self.ctx.registry.host, rtt=settings.copy_rtt, rate=settings.wan_rate
                )
            )
            self.route = Route(proxy.host, proxy)
            progress(f"source registry by way of a throttling proxy on {proxy.host}")
        makers = self._makers()
        self.tools = [
            tool
            for set_name, pullables in self.sets.items()
            for maker in makers
            for tool in self._cold_and_unchanged(set_name, pullables, maker)
        ]
        return self.tools

    def _makers(self) -> list[Maker]:
        chosen = self.ctx.settings.tools
        makers: list[Maker] = []
        if "bulkpull" in chosen:
            if bulkpull_offers(self.ctx, ["--help"], _TO_FLAG):
                makers.append(self._bulkpull)
            else:
                self.skipped.append("bulkpull: `bulkpull --help` shows no --to")
                progress(f"copy: {self.skipped[-1]}; skipping bulkpull, measuring skopeo only")
        if "skopeo-sync" in chosen:
            makers.append(self._skopeo_sync)
        if "skopeo-seq" in chosen:
            makers.append(lambda _, p, c: skopeo_sequential_tool(self.ctx, self._copies(p, c)))
        if "skopeo-par" in chosen:
            makers.append(lambda _, p, c: skopeo_parallel_tool(self.ctx, self._copies(p, c)))
        return makers

    def _expected(self, pullables: Sequence[Pullable]) -> dict[str, str]:
        namespace = self.target.namespace
        return {f"{namespace}/{p.archive_name}": p.image.manifest.digest for p in pullables}

    def _cold_and_unchanged(
        self, set_name: str, pullables: Sequence[Pullable], maker: Maker
    ) -> list[Tool]:
        """The tool's cold run (a fresh target) and its run right after, nothing changed."""
        expected = self._expected(pullables)

        def command(state: str, moved: int) -> Command:
            group = f"{set_name}, {state}"
            return Command(
                lambda out: check_served(self.target.registry, expected, f"copy {group}"),
                moved,
                timing(self.ctx, self.route, target=self.target, fresh=state == COLD),
                group,
            )

        cold = maker(set_name, pullables, command(COLD, summed_bytes(pullables)))
        unchanged = maker(set_name, pullables, command(UNCHANGED, 0))

        def check_cold(out: Path) -> None:
            cold.check(out)
            self.target.filled_by = cold.id

        def run_unchanged(out: Path) -> Measurement:
            if self.target.filled_by != cold.id:
                raise BenchError(f"{unchanged.id} must run right after {cold.id}")
            return unchanged.run(out)

        return [
            dataclasses.replace(cold, check=check_cold),
            dataclasses.replace(unchanged, run=run_unchanged),
        ]

    def _bulkpull(self, set_name: str, pullables: Sequence[Pullable], command: Command) -> Tool:
        image_list = self.ctx.workdir / f"copy-{set_name}.txt"
        image_list.write_text("".join(f"{p.reference(self.route)}\n" for p in pullables))

        def arguments(out: Path) -> list[str]:
            destination = f"{self.target.registry.host}/{self.target.namespace}"
            extra = self.ctx.settings.bulkpull_args
            # The run's own store: a cold run starts with none, as on a fresh machine.
            store = ["--cache", str(out)]
            return [str(image_list), "--to", destination, "--plain-http", *store, *extra]

        return bulkpull_tool(self.ctx, command, arguments, label="bulkpull --to")

    def _copies(self, pullables: Sequence[Pullable], command: Command) -> SkopeoCopies:
        def pairs(out: Path) -> list[tuple[str, str]]:
            target = self.target
            return [
                (
                    f"docker://{p.reference(self.route)}",
                    f"docker://{target.destination(p.archive_name)}",
                )
                for p in pullables
            ]

        flags = ("--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false")
        return SkopeoCopies(command, flags, pairs)

    def _skopeo_sync(self, set_name: str, pullables: Sequence[Pullable], command: Command) -> Tool:
        """``skopeo sync --src yaml --dest docker``: the images of a YAML file, one by one."""
        skopeo = require_tool("skopeo")
        config = self.ctx.workdir / f"sync-{set_name}.yaml"
        tags: dict[str, list[str]] = {}
        for p in pullables:
            repository, _, tag = p.archive_name.rpartition(":")
            tags.setdefault(repository, []).append(tag)
        document = {self.route.host: {"tls-verify": False, "images": tags}}
        config.write_text(json.dumps(document, indent=2) + "\n")  # JSON is YAML
        log = log_file(self.ctx, "skopeo-sync", command.group)

        def args() -> list[str]:
            destination = f"{self.target.registry.host}/{self.target.namespace}"
            return [
                skopeo,
                "--insecure-policy",
                "sync",
                "--src",
                "yaml",
                "--dest",
                "docker",
                "--preserve-digests",
                "--dest-tls-verify=false",
                str(config),
                destination,
            ]

        return Tool(
            "skopeo-sync",
            "skopeo sync",
            lambda out: command.timed(lambda: measured(self.ctx, args(), log)),
            command.check,
            command.moved_bytes,
            command.group,
        )

    def describe(self) -> str:
        settings = self.ctx.settings
        sets = "; ".join(
            f"{name}: {describe_set(pullables, settings.shared_format)}"
            for name, pullables in self.sets.items()
        )
        many = f" ({describe_many(settings)})" if "many" in self.sets else ""
        link = (
            f", the source through {settings.copy_rtt * 1000:.0f} ms round trip and "
            f"{settings.wan_rate / MIB:.1f} MiB/s per connection"
            if self.route.proxy is not None
            else ""
        )
        return f"{sets}{many}; from registry to registry, below /{self.target.namespace}/{link}"

    def columns(self, results: Results) -> Columns:
        base = super().columns(results)
        return dataclasses.replace(base, target=True)

    def extra_lines(self, results: Results) -> list[str]:
        lines = [
            "cold: into an empty target registry, started for the run; unchanged: the same "
            "tool again right after its cold run, into that target, which holds every image.",
            "target wrote MiB: bytes the target registry wrote to its disk during the run; "
            "registry CPU s: the source's and the target's. After each run every image is "
            "checked in the target (manifest HEAD: the source's digest).",
        ]
        return lines + [f"Not measured: {reason}." for reason in self.skipped]

    def targets(self, results: Results) -> list[Target]:
        found = []
        for set_name in self.sets:
            for state, limit in ((COLD, 0.3), (UNCHANGED, 0.1)):
                group = f"{set_name}, {state}"
                ratio = wall_ratio(results, f"{group}: bulkpull", f"{group}: skopeo-sync")
                found.append(Target(f"{group}: wall, bulkpull --to / skopeo sync", ratio, limit))
        return found
