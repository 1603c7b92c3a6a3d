"""The summary after a run, on standard output: the images, then the totals.

Every image, a line each, where standard output is not a terminal, so logs and greps keep each
image whole. On a terminal a table, or lines wrapped at words when it is too narrow for one, of
every image of a short run and of the failures of a long one, so that it still ends on one
screen (the report and redirected output list every image). Imports the public ``bulkpull``
API, rich, ``display`` and ``text``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from rich.table import Table
from rich.text import Text

from bulkpull import PullReport, PushReport, PushStatus, SignatureError, Status, printable
from bulkpull.cli.display import STYLES, is_interactive, stdout
from bulkpull.cli.tally import Finished
from bulkpull.cli.text import (
    blob_counts_text,
    count_text,
    duration_text,
    result_fields,
    size_text,
    text_width,
)

S = TypeVar("S", Status, PushStatus)

# A terminal's summary lists every image up to this many; beyond, failures and totals only.
SUMMARY_ROWS = 20


SUMMARY_COLUMNS = ("status", "image", "digest", "platform", "size")
PUSH_COLUMNS = ("status", "image", "digest", "size")
# Error messages wrap in a table's last column; narrower than this they read as ribbons.
MIN_ERROR_COLUMN = 40


def print_summary(
    report: PullReport | PushReport, *, dry_run: bool, quiet: bool, report_file: Path | None
) -> None:
    """The images (every one up to ``SUMMARY_ROWS`` on a terminal, else its failures), then
    the totals. ``quiet``: the totals only, the failures having been shown as they came."""
    listed: list[Finished] = [] if quiet else list(report.results)
    interactive = is_interactive(stdout)
    if interactive and len(listed) > SUMMARY_ROWS:
        listed = [result for result in listed if not result.ok]
    rows = [result_fields(result, full_digest=dry_run) for result in listed]
    columns: tuple[str, ...]
    if isinstance(report, PushReport):
        columns, last = PUSH_COLUMNS, "target or error"
        totals = [*push_referrer_lines(report), *push_totals_lines(report)]
    else:
        columns, last = SUMMARY_COLUMNS, "error" if dry_run else "archive or error"
        totals = [*replaced_lines(report), *volume_lines(report), *referrer_lines(report)]
        totals += delta_lines(report)
        totals += totals_lines(report, dry_run=dry_run)
    table = None
    if interactive and listed:
        table = _summary_table(listed, rows, (*columns, last), len(columns))
    if table is not None:
        stdout.print(table)
    elif interactive and listed:
        stdout.print(_summary_lines(listed, rows))
    else:
        for result, row in zip(listed, rows, strict=True):
            line = Text.assemble((row[0], STYLES[result.status]), "  " + "  ".join(row[1:]))
            stdout.print(line, soft_wrap=True)
    left_out = len(report.results) - len(listed)
    if left_out and not quiet:
        where = f"{report_file} lists" if report_file else "--report FILE.json lists"
        left = f"{count_text(left_out, 'more image')} not listed here; {where} every image"
        stdout.print(printable(left))
    for total in totals:
        stdout.print(printable(total), soft_wrap=True)


def volume_lines(report: PullReport) -> list[str]:
    """Where a split bundle went: its volumes, and the list of their sha256 sums."""
    if not report.volumes:
        return []
    *volumes, listed = report.volumes
    named = str(volumes[0]) if len(volumes) == 1 else f"{volumes[0]} … {volumes[-1].name}"
    return [
        f"bundle in {count_text(len(volumes), 'volume')}: {named}; their sha256 in {listed} "
        f"(sha256sum -c {listed.name} checks them; cat joins them)"
    ]


def replaced_lines(report: PullReport) -> list[str]:
    """One line per archive (or bundle, or layout) that held images it holds no longer."""
    by_archive: dict[str, list[str]] = {}
    for image in report.replaced:
        named = f"{image.name} (sha256:{image.digest.short})"
        by_archive.setdefault(str(image.archive), []).append(named)
    return [f"replaced in {archive}: {', '.join(names)}" for archive, names in by_archive.items()]


def delta_lines(report: PullReport) -> list[str]:
    """What a delta (``--have``) left out, and what that means for the far side."""
    if report.delta is None:
        return []
    delta = report.delta
    blobs = f"{count_text(delta.blobs_left_out, 'blob')} ({size_text(delta.bytes_left_out)})"
    held = count_text(delta.have_images, "--have image")
    return [
        f"delta: {blobs} left out, expected at the target (held by {held}); "
        "for bulkpull push, not docker load"
    ]


# What the summary calls a referrer of these types; others go by their type.
_REFERRER_KINDS = {
    "application/vnd.dev.cosign.simplesigning.v1+json": "signature",
    "application/vnd.dsse.envelope.v1+json": "attestation",
}


def referrer_lines(report: PullReport) -> list[str]:
    """The referrers carried (each once, however many results list it) by kind, those left
    behind, and the signatures verified; nothing when there were none."""
    carried = {r.digest: r for result in report.results for r in result.referrers}
    skipped = {r.digest for result in report.results for r in result.skipped_referrers}
    signed = {
        result.spec
        for result in report.results
        if result.signature is not None or isinstance(result.error, SignatureError)
    }
    verified = {r.spec for r in report.results if r.signature is not None and r.signature.verified}
    lines = []
    if carried:
        images = len({result.spec for result in report.results if result.referrers})
        lines.append(_referrers_line("carried", [r.type for r in carried.values()], images))
    if skipped:
        lines.append(
            f"{count_text(len(skipped), 'listed referrer')} not carried; the report says why"
        )
    if signed:
        lines.append(f"signatures: {len(verified)} of {count_text(len(signed), 'image')} verified")
    return lines


def push_referrer_lines(report: PushReport) -> list[str]:
    """The referrers pushed after their images (a dry run: missing at the target), by kind,
    and those the target had already."""
    pushed = [r for result in report.results for r in result.referrers if not r.present]
    present = sum(r.present for result in report.results for r in result.referrers)
    images = len({r.spec for r in report.results if any(not c.present for c in r.referrers)})
    if not pushed and not present:
        return []
    done = "missing at the target" if report.dry_run else "pushed"
    line = _referrers_line(done, [r.type for r in pushed], images) if pushed else ""
    there = f"{count_text(present, 'referrer')} already in the target" if present else ""
    return ["; ".join(part for part in (line, there) if part)]


def _referrers_line(done: str, types: list[str], images: int) -> str:
    """``3 referrers carried with 1 image: 1 application/spdx+json, 1 attestation, 1 signature``"""
    kinds: dict[str, int] = {}
    for type_ in types:
        kind = _REFERRER_KINDS.get(type_, type_)
        kinds[kind] = kinds.get(kind, 0) + 1
    shown = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    return (
        f"{count_text(len(types), 'referrer')} {done} with {count_text(images, 'image')}: {shown}"
    )


def _summary_table(
    results: Sequence[Finished], rows: list[list[str]], headers: tuple[str, ...], fixed: int
) -> Table | None:
    """The summary as a table, or None when the terminal is too narrow for one: a table
    folded to ribbons reads worse than plain lines.

    The first ``fixed`` columns must fit unwrapped; the last (where it went, or the error)
    may wrap error messages, given room for ``MIN_ERROR_COLUMN`` cells; a last column with
    nothing in it (a dry run where nothing failed) is left out.
    """
    if all(row[-1] == "-" for row in rows):
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    widths = [max(map(text_width, column)) for column in zip(headers, *rows, strict=True)]
    if len(headers) > fixed:
        whole = [row[-1] for result, row in zip(results, rows, strict=True) if result.ok]
        widths[-1] = max(map(text_width, [headers[-1], *whole]))
    room = stdout.width - sum(widths[:-1]) - 2 * (len(widths) - 1)
    if room < max(widths[-1], MIN_ERROR_COLUMN if len(headers) > fixed else 0):
        return None
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for position, header in enumerate(headers):
        table.add_column(header, no_wrap=position < fixed, overflow="fold")
    for result, row in zip(results, rows, strict=True):
        table.add_row(Text(row[0], style=STYLES[result.status]), *row[1:])
    return table


def _summary_lines(results: Sequence[Finished], rows: list[list[str]]) -> Table:
    """The summary for a terminal too narrow for its table: a line per image, wrapped at
    words under the image rather than under its status; unknown fields left out."""
    lines = Table.grid(padding=(0, 2))
    lines.add_column(no_wrap=True)
    lines.add_column()
    for result, row in zip(results, rows, strict=True):
        known = "  ".join(field for field in row[1:] if field != "-")
        lines.add_row(Text(row[0], style=STYLES[result.status]), known)
    return lines


def _outcomes(images: int, count: Callable[[S], int], statuses: type[S], failed: S) -> str:
    """``12 images: 11 pulled, 1 failed``: every status an image ended with, and failures
    even when none did."""
    counts = [f"{count(s)} {s.value}" for s in statuses if count(s) or s is failed]
    return f"{count_text(images, 'image')}: {', '.join(counts)}"


def totals_lines(report: PullReport, *, dry_run: bool) -> list[str]:
    """How many images ended how; then bytes, time and rate (a dry run downloads nothing)."""
    first = _outcomes(len(report.results), report.count, Status, Status.FAILED)
    seconds = f"in {duration_text(report.seconds)}"
    if dry_run:
        return [first, f"dry run: no blob downloaded, nothing written; {seconds}"]
    reused = f"{size_text(report.bytes_reused)} reused"
    if not report.bytes_downloaded:
        return [first, f"nothing downloaded, {reused}; {seconds}"]
    rate = report.bytes_downloaded / max(report.seconds, 1e-9)
    downloaded = f"{size_text(report.bytes_downloaded)} downloaded"
    return [first, f"{downloaded}, {reused}; {seconds} ({size_text(rate)}/s)"]


def push_totals_lines(report: PushReport) -> list[str]:
    """How many images ended how; then what went to the target (a dry run: what it lacks)."""
    first = _outcomes(len(report.results), report.count, PushStatus, PushStatus.FAILED)
    seconds = f"in {duration_text(report.seconds)}"
    if report.dry_run:
        return [
            first,
            f"dry run: {size_text(report.bytes_missing)} of blobs missing at {report.target}, "
            f"nothing written; {seconds}",
        ]
    # Nothing sent is "needed" only when every image went through; a failed one may need all.
    blobs = blob_counts_text(report.blobs) or ("no blobs needed" if report.ok else "no blobs sent")
    rate = report.bytes_sent / max(report.seconds, 1e-9)
    sent = f"{size_text(report.bytes_sent)} sent to {report.target}"
    speed = f" ({size_text(rate)}/s)" if report.bytes_sent else ""
    return [first, f"{sent}; {blobs}; {seconds}{speed}"]
