"""The result tables and the targets block.

Every tool gets one row: times, CPU, memory, disk and bytes written, and its wall time against
bulkpull's in the same group (a group is one image set in one state, in the copy scenario; the
other scenarios have a single group). The targets block below a table gives each ratio a
project target is stated in, the target and whether it is met, in a form a note can quote.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench_measure import Measurement
from bench_model import GB, MIB, Tool

Results = Mapping[str, Sequence[Measurement]]
"""Every run of every tool, by :attr:`Tool.id`."""


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def median_of(
    runs: Sequence[Measurement], value: Callable[[Measurement], float | None]
) -> float | None:
    """The median of ``value`` over the runs where it is known; ``None`` if nowhere."""
    known = [v for v in map(value, runs) if v is not None]
    return statistics.median(known) if known else None


def largest_of(
    runs: Sequence[Measurement], value: Callable[[Measurement], float | None]
) -> float | None:
    known = [v for v in map(value, runs) if v is not None]
    return max(known) if known else None


def per_output(
    value: Callable[[Measurement], float | None],
) -> Callable[[Measurement], float | None]:
    """``value`` of a run divided by the size of what the run delivered."""

    def ratio(m: Measurement) -> float | None:
        amount = value(m)
        return amount / m.output_bytes if amount is not None and m.output_bytes else None

    return ratio


def wall_ratio(results: Results, tool: str, other: str) -> float | None:
    """Median wall time of ``tool`` over that of ``other`` (ids); ``None`` if one is missing."""
    if not results.get(tool) or not results.get(other):
        return None
    return statistics.median(m.wall for m in results[tool]) / statistics.median(
        m.wall for m in results[other]
    )


def cpu_ratio(results: Results, tool: str, other: str) -> float | None:
    if not results.get(tool) or not results.get(other):
        return None
    other_cpu = statistics.median(m.cpu for m in results[other])
    return statistics.median(m.cpu for m in results[tool]) / other_cpu if other_cpu else None


@dataclass(frozen=True)
class Target:
    """A figure the project aims at, as measured in this run."""

    label: str
    value: float | None
    """``None``: not measured (a tool not chosen, or not there yet)."""
    limit: float | None = None
    """``None``: shown for information, no target."""
    unit: str = "x"
    strict: bool = False
    """The value must be below the limit, not merely at most."""

    def _text(self, value: float) -> str:
        return f"{value:.2f}x" if self.unit == "x" else f"{value:.0f} {self.unit}"

    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        if self.limit is None:
            return "-"
        met = self.value < self.limit if self.strict else self.value <= self.limit
        return "met" if met else "MISSED"

    def row(self) -> list[str]:
        value = "-" if self.value is None else self._text(self.value)
        bound = "<" if self.strict else "<="
        limit = "-" if self.limit is None else f"{bound} {self._text(self.limit)}"
        return [self.label, value, limit, self.verdict()]

    def record(self) -> dict[str, object]:
        return {
            "label": self.label,
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "strict": self.strict,
            "verdict": self.verdict(),
        }


def render_targets(scenario: str, targets: Sequence[Target]) -> list[str]:
    """The targets block: one line per target, for a note to quote."""
    if not targets:
        return []
    table = render(
        ["targets (" + scenario + ")", "measured", "target", "verdict"],
        [target.row() for target in targets],
    )
    return ["", table]


@dataclass(frozen=True)
class Columns:
    """Which of the optional columns a scenario's table has."""

    payload_bytes: int | None = None
    """Bytes one pull moves: a MiB/s column."""
    proxy: bool = False
    connections: bool = False
    target: bool = False
    """A column of bytes the target registry wrote (push, copy)."""
    wchar: bool = False
    """Bytes written from ``wchar`` instead of ``write_bytes`` (a file system without a disk)."""
    group_header: str = ""
    """Header of a first column naming each row's group; empty: no such column."""


def mib_cell(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def _headers(columns: Columns) -> list[str]:
    headers = [columns.group_header] if columns.group_header else []
    headers += ["tool", "wall s", "range s"]
    if columns.payload_bytes is not None:
        headers.append("MiB/s")
    headers += ["CPU s", "CPU s/GB", "RSS MiB", "out MiB", "peak disk MiB", "disk after MiB"]
    headers.append("wchar MiB" if columns.wchar else "written MiB")
    headers.append("registry CPU s")
    if columns.target:
        headers.append("target wrote MiB")
    if columns.proxy:
        headers.append("proxy CPU s")
    if columns.connections:
        headers.append("connections")
    return [*headers, "bulkpull/tool"]


def _row(
    tool: Tool, runs: Sequence[Measurement], bulkpull: float | None, columns: Columns
) -> list[str]:
    wall = statistics.median(m.wall for m in runs)
    cpu = statistics.median(m.cpu for m in runs)
    row = [tool.group] if columns.group_header else []
    row += [
        tool.label,
        f"{wall:.2f}",
        f"{min(m.wall for m in runs):.2f}-{max(m.wall for m in runs):.2f}",
    ]
    if columns.payload_bytes is not None:
        row.append(f"{columns.payload_bytes / MIB / wall:.0f}")
    row += [
        f"{cpu:.2f}",
        f"{cpu / (tool.moved_bytes / GB):.1f}" if tool.moved_bytes else "-",
        f"{max(m.max_rss_kib for m in runs) / 1024:.0f}",
        mib_cell(median_of(runs, lambda m: m.output_bytes)),
        mib_cell(largest_of(runs, lambda m: m.peak_disk)),
        mib_cell(median_of(runs, lambda m: m.disk_after)),
        mib_cell(
            median_of(runs, (lambda m: m.wchar) if columns.wchar else (lambda m: m.write_bytes))
        ),
        f"{statistics.median(m.registry_cpu for m in runs):.2f}",
    ]
    if columns.target:
        row.append(mib_cell(median_of(runs, lambda m: m.registry_written)))
    if columns.proxy:
        row.append(f"{statistics.median(m.proxy_cpu for m in runs):.2f}")
    if columns.connections:
        connections = median_of(runs, lambda m: m.connections)
        row.append("-" if connections is None else f"{connections:.0f}")
    row.append("-" if bulkpull is None else f"{bulkpull / wall:.2f}")
    return row


def tool_table(tools: Sequence[Tool], results: Results, columns: Columns) -> str:
    """One row per tool that ran, grouped, each compared with bulkpull of its group."""
    groups = list(dict.fromkeys(tool.group for tool in tools))
    reference = {
        tool.group: statistics.median(m.wall for m in results[tool.id])
        for tool in tools
        if tool.key == "bulkpull" and results.get(tool.id)
    }
    rows = [
        _row(tool, results[tool.id], reference.get(group), columns)
        for group in groups
        for tool in tools
        if tool.group == group and results.get(tool.id)
    ]
    return render(_headers(columns), rows)


def table_notes(wchar: bool) -> list[str]:
    """What the columns of :func:`tool_table` mean."""
    written = (
        "wchar MiB: bytes the tool's processes passed to write calls (files, pipes and sockets "
        "alike), median; shown because the work directory's file system does not count "
        "write_bytes (tmpfs)."
        if wchar
        else "written MiB: bytes the tool's processes wrote towards the disk (write_bytes of "
        "/proc/PID/io: pages dirtied, also those dropped before writeback), median."
    )
    return [
        "wall s is the median (range s: fastest-slowest run); CPU s the median of user plus "
        "system seconds of the tool's processes; RSS MiB the largest single process over all "
        "runs.",
        "out MiB: size of what the tool delivered (archives, blob files), median; peak disk MiB: "
        "the most the run's directory (output, blob store, TMPDIR) held at any sample, largest "
        "over the runs; disk after MiB: what it held when the tool had exited, median.",
        written,
        "bulkpull/tool is the ratio of median wall times: below 1 means bulkpull is faster.",
    ]
