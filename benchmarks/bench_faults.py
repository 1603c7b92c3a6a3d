"""The faults scenario: bulkpull through a proxy that injects 503s and connection resets."""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_base import Scenario
from bench_checks import compare_with_pushed
from bench_faultproxy import FaultPlan, FaultStats, fault_proxy
from bench_infra import progress
from bench_measure import Measurement
from bench_model import MIB, Context, Route, Tool, distinct_blobs, mib
from bench_pull import build_and_push, describe_set, shared_set
from bench_report import Results, largest_of, median_of, mib_cell, render, wall_ratio
from bench_tools import bulkpull_pull_tool


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
        self.pullables = build_and_push(self, shared_set, "bench/faults-img")
        proxy = self.resources.enter_context(fault_proxy(self.ctx.registry.host))
        self.route = Route(proxy.host, proxy)
        progress(f"fault-injecting proxy on {proxy.host}: {self._faults()}")
        delay = ("--retry-delay", f"{self.ctx.settings.fault_retry_delay:g}")
        pull = bulkpull_pull_tool(
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

    def _row(self, tool: Tool, runs: Sequence[Measurement]) -> list[str]:
        needed = sum(distinct_blobs(self.pullables).values())
        total = len(self.pullables)
        faults = self.runs[tool.key]

        def median(values: Sequence[float]) -> float:
            return statistics.median(values) if values else 0.0

        sent = median([run.stats.blob_bytes_sent for run in faults])
        # Only complete pulls say how much was fetched again; a failed one fetched less.
        complete = [run.stats.blob_bytes_sent for run in faults if run.images_pulled == total]
        again = f"{(median(complete) - needed) / needed:.1%}" if complete and needed else "-"
        verified = sum(run.verified for run in faults)
        return [
            tool.label,
            f"{statistics.median(m.wall for m in runs):.2f}",
            f"{min(m.wall for m in runs):.2f}-{max(m.wall for m in runs):.2f}",
            f"{statistics.median(m.cpu for m in runs):.2f}",
            f"{max(m.max_rss_kib for m in runs) / 1024:.0f}",
            mib_cell(largest_of(runs, lambda m: m.peak_disk)),
            mib_cell(median_of(runs, lambda m: m.write_bytes)),
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

    def _notes(self, results: Results) -> list[str]:
        needed = sum(distinct_blobs(self.pullables).values())
        lines = [
            f"{self.ctx.settings.repeat} run(s) each, interleaved, both through the same proxy; "
            "counts are medians per run, images pulled the fewest in any run.",
        ]
        ratio = wall_ratio(results, "faults", "clean")
        if ratio is not None:
            lines.append(f"Wall-time ratio faults/clean (medians): {ratio:.2f}")
        lines += [
            "peak disk MiB: the most the run's directory held at any sample; written MiB: "
            "write_bytes of the bulkpull process (median).",
            f"re-downloaded: blob bytes the proxy sent beyond the {mib(needed)} of distinct "
            "blobs needed, as a share of those (bytes sent before a reset count); median over "
            "the runs that pulled every image.",
            "resumed: blob GETs with a Range header. digests verified: in every run, bulkpull "
            "verify passes and every blob of every archive written hashes to the digest and "
            "size that was pushed.",
            f"bulkpull ran with --retry-delay {self.ctx.settings.fault_retry_delay:g} (its first "
            "backoff, doubling with jitter; bulkpull's default is 2 s). The benchmark's default "
            "of 0.05 keeps the waiting from dominating the ratio.",
        ]
        for key, runs in results.items():
            codes = [m.exit_code for m in runs if m.exit_code]
            if codes:
                lines.append(f"bulkpull exit codes ({key}): {codes}; see bulkpull.log")
        injected = [
            f"{run.stats.faults['503']}/{run.stats.faults['reset']}" for run in self.runs["faults"]
        ]
        lines.append(f"Faults injected per run (503s/resets): {', '.join(injected)}")
        return lines

    def report(self, results: Results) -> str:
        headers = [
            "run",
            "wall s",
            "range s",
            "CPU s",
            "RSS MiB",
            "peak disk MiB",
            "written MiB",
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
        rows = [self._row(tool, results[tool.id]) for tool in self.tools]
        return "\n".join(
            [
                f"== scenario {self.name}: {self.describe()}",
                "",
                render(headers, rows),
                "",
                *self._notes(results),
            ]
        )

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
