"""How a tool's run is measured: in the run's directory, with what the servers spent meanwhile."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_infra import TargetRegistry
from bench_measure import Measurement, run_measured
from bench_model import Context, Route, Timing
from bench_proxy import ThrottleProxy


def timing(
    ctx: Context, route: Route, *, target: TargetRegistry | None = None, fresh: bool = False
) -> Timing:
    """Measure by way of ``route``; with ``target``, add its CPU and writes (and with ``fresh``
    start it empty first)."""

    def timed(run: Callable[[], Measurement]) -> Measurement:
        if target is not None and fresh:
            target.fresh()
        registries = [ctx.registry, *([target.registry] if target is not None else [])]
        written_before = target.registry.written_bytes() if target is not None else 0
        cpu_before = sum(registry.cpu_seconds() for registry in registries)
        proxy = route.proxy
        proxy_before = proxy.cpu_seconds() if proxy is not None else 0.0
        if isinstance(proxy, ThrottleProxy):
            proxy.take_stats()
        measurement = run()
        connections = proxy.take_stats().connections if isinstance(proxy, ThrottleProxy) else None
        return dataclasses.replace(
            measurement,
            registry_cpu=sum(registry.cpu_seconds() for registry in registries) - cpu_before,
            registry_written=(
                target.registry.written_bytes() - written_before if target is not None else None
            ),
            proxy_cpu=proxy.cpu_seconds() - proxy_before if proxy is not None else 0.0,
            connections=connections,
        )

    return timed


def log_file(ctx: Context, key: str, group: str = "") -> Path:
    """The log of a tool's runs in the scenario's directory (kept with ``--keep``)."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", f"{group} {key}".strip()).strip("-")
    return ctx.workdir / f"{name}.log"


def measured(
    ctx: Context, args: Sequence[str], log: Path, *, allow_failure: bool = False
) -> Measurement:
    """``args`` run measured in the run's directory, with the scenario's environment."""
    return run_measured(
        args,
        env=ctx.env,
        log=log,
        timeout=ctx.settings.timeout,
        cwd=ctx.run_root,
        allow_failure=allow_failure,
    )


@dataclass(frozen=True)
class Command:
    """What a tool does, apart from how it is started: its checks, bytes and accounting."""

    check: Callable[[Path], None]
    moved_bytes: int
    timed: Timing
    group: str = ""
