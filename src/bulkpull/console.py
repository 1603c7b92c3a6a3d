"""What a person sees while bulkpull runs: live progress, a line per finished image, a summary.

Both renderings are driven by the same progress events. On a terminal, a live display redrawn
in place: one overall bar (bytes, rate, ETA) and a row per image in flight, with each finished
image printed above it. Anywhere else (CI logs, pipes, ``TERM=dumb``) plain timestamped lines
without a single control character, since those end up in files and greps. Quiet runs print
only failures. Imports the public ``bulkpull`` API and rich; ``cli`` decides which display to
use and when to print the summary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bulkpull import (
    BlobDone,
    BlobNeeded,
    BulkpullError,
    BytesReceived,
    Digest,
    Event,
    ImageDone,
    ImageResult,
    ImageSpec,
    ImageStage,
    PullReport,
    Stage,
    Status,
)

# Messages carry registry text and user input: none of it is rich markup, and nothing in it
# should be coloured by guesswork.
stderr = Console(stderr=True, highlight=False, markup=False)
stdout = Console(highlight=False, markup=False)

STYLES = {
    Status.PULLED: "green",
    Status.UP_TO_DATE: "cyan",
    Status.RESOLVED: "green",
    Status.FAILED: "bold red",
}
# At most this many rows of images in flight; a last row counts the rest. A screen full of
# "resolving" rows says less than fifteen busy ones.
MAX_ROWS = 15
# Rows shown first when more images are in flight than the screen holds: the busiest.
_STAGE_ORDER = {Stage.WRITING: 0, Stage.DOWNLOADING: 1, Stage.RESOLVING: 2}


def is_interactive(console: Console) -> bool:
    """Whether ``console`` can be redrawn in place: a terminal that understands cursor moves."""
    return console.is_terminal and not console.is_dumb_terminal


def size_text(size: float) -> str:
    """A byte count in binary units, as the live bar shows them (``12.3 MiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def count_text(count: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def duration_text(seconds: float) -> str:
    """``0.4 s`` for short runs, ``1:02:03`` for long ones."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def error_text(error: BulkpullError) -> str:
    """The error's own message, plus how hard bulkpull tried before giving up."""
    tries = f" (after {error.tries} tries)" if error.tries > 1 else ""
    return f"{error}{tries}"


def digest_text(digest: Digest | None, *, full: bool) -> str:
    """The whole digest, or ``sha256:`` and 12 hex digits as docker shows image IDs."""
    if digest is None:
        return "-"
    return str(digest) if full else f"sha256:{digest.short}"


def image_text(spec: ImageSpec) -> str:
    """The image as docker names it; a pinned tag without its digest (the digest column and
    the lock file carry it), a digest alone shortened."""
    source = spec.source
    if source.tag:
        return f"{source.familiar_name}:{source.tag}"
    return f"{source.familiar_name}@{digest_text(source.digest, full=False)}"


def result_fields(result: ImageResult, *, full_digest: bool) -> list[str]:
    """Status, image, digest, platform, size, and where it went or why it failed: the same
    facts in a finished line, a summary line and a summary table row."""
    if result.error is not None:
        outcome = error_text(result.error)
    elif result.archive is not None:
        outcome = str(result.archive)
        if result.narrowed:  # the one digest bulkpull makes: never leave it unsaid
            kept, listed = result.narrowed
            outcome += f" (index narrowed to {kept} of {listed} manifests)"
    else:
        outcome = "-"
    return [
        result.status.value,
        image_text(result.spec),
        digest_text(result.manifest_digest, full=full_digest),
        str(result.platform) if result.platform else "-",
        size_text(result.size) if result.manifest_digest else "-",
        outcome,
    ]


@dataclass
class Tally:
    """The run so far, from its events; both renderings read it.

    Bytes count each blob once however many images share it, and never more than its size
    (a download repeated after a reset sends some bytes twice); ``received`` is what actually
    came over the network, for the rate.
    """

    images: int
    sizes: dict[Digest, int] = field(default_factory=dict)
    missing: set[Digest] = field(default_factory=set)
    got: dict[Digest, int] = field(default_factory=dict)
    done: set[Digest] = field(default_factory=set)
    received: int = 0
    in_flight: dict[ImageSpec, ImageStage] = field(default_factory=dict)
    finished: set[ImageSpec] = field(default_factory=set)
    failed: set[ImageSpec] = field(default_factory=set)

    def apply(self, event: Event) -> None:
        if isinstance(event, ImageStage):
            self.in_flight[event.spec] = event
        elif isinstance(event, BlobNeeded):
            self.sizes[event.digest] = event.size
            if not event.present:
                self.missing.add(event.digest)
        elif isinstance(event, BytesReceived):
            self.got[event.digest] = self.got.get(event.digest, 0) + event.count
            self.received += event.count
        elif isinstance(event, BlobDone):
            self.done.add(event.digest)
        else:
            self.in_flight.pop(event.result.spec, None)
            self.finished.add(event.result.spec)
            if not event.result.ok:
                self.failed.add(event.result.spec)

    @property
    def pulled(self) -> int:
        """Images finished without an error (every platform of them)."""
        return len(self.finished - self.failed)

    def _bytes(self, digest: Digest) -> int:
        size = self.sizes.get(digest, 0)
        return size if digest in self.done else min(self.got.get(digest, 0), size)

    @property
    def bytes_total(self) -> int:
        """Bytes to download: every blob needed that was not already in the store."""
        return sum(self.sizes[digest] for digest in self.missing)

    @property
    def bytes_done(self) -> int:
        return sum(self._bytes(digest) for digest in self.missing)

    def image_blobs(self, stage: ImageStage) -> tuple[int, int]:
        """Blobs of an image that are in the store, and how many it needs."""
        return sum(digest in self.done for digest in stage.blobs), len(stage.blobs)

    def image_bytes(self, stage: ImageStage) -> tuple[int, int]:
        """Bytes of an image's blobs in the store so far, and their total."""
        done = sum(self._bytes(digest) for digest in stage.blobs)
        return done, sum(self.sizes.get(digest, 0) for digest in stage.blobs)

    def rows(self) -> list[ImageStage]:
        """Images in flight, busiest first, then in the order they started."""
        return sorted(self.in_flight.values(), key=lambda stage: _STAGE_ORDER[stage.stage])


class Display:
    """Renders a run. ``handle`` takes every event; ``running`` wraps the run and calls
    ``tick`` every ``interval`` seconds, so a stalled download still shows signs of life."""

    interval = 10.0

    def __init__(self, console: Console, images: int, *, dry_run: bool, verbose: bool) -> None:
        self.console = console
        self.tally = Tally(images)
        self.dry_run = dry_run
        self.verbose = verbose

    def handle(self, event: Event) -> None:
        self.tally.apply(event)
        self.show(event)

    def show(self, event: Event) -> None:
        """Render one event; the tally already includes it."""
        if isinstance(event, ImageDone):
            self.finished(event.result)

    def tick(self) -> None:
        """Render the passage of time."""

    def note(self, text: str, style: str = "") -> None:
        """A message of its own line: a log record, a headline, a finished image."""
        self.console.print(Text(text, style=style), soft_wrap=True)

    def finished(self, result: ImageResult) -> None:
        """One line per finished image (and platform); unknown fields are left out."""
        fields = [field for field in self.finished_fields(result) if field != "-"]
        self.note("  ".join(fields), STYLES[result.status])

    def finished_fields(self, result: ImageResult) -> list[str]:
        return result_fields(result, full_digest=self.dry_run)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        ticker = asyncio.create_task(self._ticking())
        try:
            yield
        finally:
            ticker.cancel()

    async def _ticking(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()


@dataclass
class RateMeter:
    """Bytes per second over about the last ``window`` seconds: recent enough to show a
    stall, long enough not to flicker."""

    window: float
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def rate(self, now: float, received: int) -> float:
        self.samples.append((now, received))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        then, before = self.samples[0]
        return (received - before) / (now - then) if now > then else 0.0


def overall_fields(tally: Tally, rate: float, *, dry_run: bool) -> list[str]:
    """Where the run is: images finished; bytes, rate and time left while downloading."""
    fields = [f"{len(tally.finished)} of {count_text(tally.images, 'image')}"]
    if dry_run or not tally.bytes_total:
        return fields
    fields.append(f"{size_text(tally.bytes_done)} / {size_text(tally.bytes_total)}")
    if tally.in_flight and rate > 0:
        eta = duration_text((tally.bytes_total - tally.bytes_done) / rate)
        fields += [f"{size_text(rate)}/s", f"eta {eta}"]
    return fields


class PlainDisplay(Display):
    """Timestamped lines: finished images, and every ``interval`` seconds where the run is.
    With ``verbose``, every stage an image enters too."""

    def __init__(self, console: Console, images: int, *, dry_run: bool, verbose: bool) -> None:
        super().__init__(console, images, dry_run=dry_run, verbose=verbose)
        self._meter = RateMeter(self.interval)

    def note(self, text: str, style: str = "") -> None:
        super().note(f"{time.strftime('%H:%M:%S')} {text}")

    def show(self, event: Event) -> None:
        super().show(event)
        if isinstance(event, ImageStage) and self.verbose:
            blobs = f": {len(event.blobs)} blobs" if event.stage is Stage.DOWNLOADING else ""
            self.note(f"{event.stage.value} {image_text(event.spec)}{blobs}")

    def tick(self) -> None:
        rate = self._meter.rate(time.monotonic(), self.tally.received)
        if self.tally.in_flight:
            self.note(", ".join(overall_fields(self.tally, rate, dry_run=self.dry_run)))


class QuietDisplay(PlainDisplay):
    """Failures only; the summary comes after the run."""

    def show(self, event: Event) -> None:
        if isinstance(event, ImageDone) and not event.result.ok:
            self.finished(event.result)

    def tick(self) -> None:
        return


class LiveDisplay(Display):
    """The overall bar and a row per image in flight, redrawn in place; finished images (and
    log records) are printed above it and scroll away with the terminal.

    The bar measures bytes once there are bytes to download, and images otherwise (a dry run,
    a rerun with everything up to date).
    """

    interval = 0.2

    def __init__(self, console: Console, images: int, *, dry_run: bool, verbose: bool) -> None:
        super().__init__(console, images, dry_run=dry_run, verbose=verbose)
        self._meter = RateMeter(window=5.0)
        self._rate = 0.0
        # Redrawn from the event loop's own ticks (and whenever a line is printed above it),
        # never from rich's refresh thread: the tally changes on the loop, and reading it
        # from another thread would race. Each redraw renders the tally as it is then.
        self._live = Live(console=console, auto_refresh=False, get_renderable=self._render)

    def finished_fields(self, result: ImageResult) -> list[str]:
        """Without the archive, which the summary table that follows shows."""
        fields = super().finished_fields(result)
        return fields[:-1] if result.ok else fields

    def tick(self) -> None:
        self._rate = self._meter.rate(time.monotonic(), self.tally.received)
        self._live.refresh()

    def _render(self) -> RenderableType:
        tally = self.tally
        if self.dry_run or not tally.bytes_total:
            done, total = len(tally.finished), tally.images
        else:
            done, total = tally.bytes_done, tally.bytes_total
        overall = Table.grid(padding=(0, 2))
        overall.add_row(
            ProgressBar(total=total, completed=done, width=30),
            "  ".join(overall_fields(tally, self._rate, dry_run=self.dry_run)),
        )
        return Group(overall, self._rows())

    def _rows(self) -> Table:
        shown = min(max(self.console.height - 4, 3), MAX_ROWS)
        rows = self.tally.rows()
        table = Table.grid(padding=(0, 2))
        table.add_column(max_width=48, no_wrap=True, overflow="ellipsis")
        for _ in range(3):
            table.add_column(no_wrap=True)
        for stage in rows[:shown]:
            table.add_row(image_text(stage.spec), *self._row(stage))
        if len(rows) > shown:
            table.add_row(Text(f"… and {len(rows) - shown} more", style="dim"), "", "", "")
        return table

    def _row(self, stage: ImageStage) -> tuple[RenderableType, RenderableType, str]:
        if stage.stage is not Stage.DOWNLOADING:
            return Text(stage.stage.value, style="dim"), "", ""
        blobs_done, blobs = self.tally.image_blobs(stage)
        done, total = self.tally.image_bytes(stage)
        bar = ProgressBar(total=total or None, completed=done, width=20)
        sizes = f"{size_text(done)} / {size_text(total)}"
        return Text(f"downloading {blobs_done}/{blobs} blobs"), bar, sizes

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        with self._live:
            try:
                async with super().running():
                    yield
            finally:
                self.tick()


def make_display(images: int, *, dry_run: bool, verbose: bool, quiet: bool) -> Display:
    """The display for standard error as it is: live on a terminal, plain lines elsewhere."""
    kind: type[Display]
    if quiet:
        kind = QuietDisplay
    elif is_interactive(stderr):
        kind = LiveDisplay
    else:
        kind = PlainDisplay
    return kind(stderr, images, dry_run=dry_run, verbose=verbose)


class DisplayHandler(logging.Handler):
    """Routes the ``bulkpull`` logger through the display, so log lines print above the live
    bars (or get timestamps like every other plain line) instead of tearing them.

    Only the message is shown: the library writes its messages without credentials and with
    URLs redacted, and this handler adds nothing of a record's arguments or locals.
    """

    def __init__(self, display: Display) -> None:
        super().__init__()
        self.display = display

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        self.display.note(text, "yellow" if record.levelno >= logging.WARNING else "dim")


SUMMARY_COLUMNS = ("status", "image", "digest", "platform", "size")


def print_summary(report: PullReport, *, dry_run: bool) -> None:
    """Every image, then the totals, on standard output.

    A table on a terminal wide enough for it; otherwise one line per image with two spaces
    between fields, so logs and greps keep each image whole.
    """
    rows = [result_fields(result, full_digest=dry_run) for result in report.results]
    table = _summary_table(report, rows, dry_run=dry_run) if is_interactive(stdout) else None
    if table is not None:
        stdout.print(table)
    else:
        for result, row in zip(report.results, rows, strict=True):
            fields = Text.assemble((row[0], STYLES[result.status]), "  " + "  ".join(row[1:]))
            stdout.print(fields, soft_wrap=True)
    for line in [*replaced_lines(report), *totals_lines(report, dry_run=dry_run)]:
        stdout.print(line, soft_wrap=True)


def replaced_lines(report: PullReport) -> list[str]:
    """One line per archive (or bundle, or layout) that held images it holds no longer."""
    by_archive: dict[str, list[str]] = {}
    for image in report.replaced:
        named = f"{image.name} (sha256:{image.digest.short})"
        by_archive.setdefault(str(image.archive), []).append(named)
    return [f"replaced in {archive}: {', '.join(names)}" for archive, names in by_archive.items()]


def _summary_table(report: PullReport, rows: list[list[str]], *, dry_run: bool) -> Table | None:
    """The summary as a table, or None when the terminal is too narrow for one: a table
    folded to ribbons reads worse than plain lines.

    Every column must fit unwrapped, except that error messages may wrap in the last; a last
    column with nothing in it (a dry run where nothing failed) is left out.
    """
    headers = [*SUMMARY_COLUMNS, "error" if dry_run else "archive or error"]
    if all(row[-1] == "-" for row in rows):
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    widths = [max(cell_len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    if len(headers) > len(SUMMARY_COLUMNS):
        whole = [row[-1] for result, row in zip(report.results, rows, strict=True) if result.ok]
        widths[-1] = max(map(cell_len, [headers[-1], *whole]))
    if sum(widths) + 2 * (len(widths) - 1) > stdout.width:
        return None
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for header in headers:
        table.add_column(header, no_wrap=header in SUMMARY_COLUMNS, overflow="fold")
    for result, row in zip(report.results, rows, strict=True):
        table.add_row(Text(row[0], style=STYLES[result.status]), *row[1:])
    return table


def totals_lines(report: PullReport, *, dry_run: bool) -> list[str]:
    """How many images ended how; then bytes, time and rate (a dry run downloads nothing)."""
    counts = [
        f"{report.count(status)} {status.value}"
        for status in Status
        if report.count(status) or status is Status.FAILED
    ]
    first = f"{count_text(len(report.results), 'image')}: {', '.join(counts)}"
    seconds = f"in {duration_text(report.seconds)}"
    if dry_run:
        return [first, f"dry run: no blob downloaded, nothing written; {seconds}"]
    reused = f"{size_text(report.bytes_reused)} reused from the store"
    if not report.bytes_downloaded:
        return [first, f"nothing downloaded, {reused}; {seconds}"]
    rate = report.bytes_downloaded / max(report.seconds, 1e-9)
    downloaded = f"{size_text(report.bytes_downloaded)} downloaded"
    return [first, f"{downloaded}, {reused}; {seconds} ({size_text(rate)}/s)"]


def error(message: str) -> None:
    """A one-line error on standard error, prefixed like every bulkpull message."""
    stderr.print(f"bulkpull: {message}", soft_wrap=True)
