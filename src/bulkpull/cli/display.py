"""What a person sees while bulkpull runs, drawn with rich: live progress, lines, a summary.

Both renderings are driven by the same progress events, through one ``tally``. On a terminal, a
live display redrawn in place: one overall line (bytes, rate, ETA) and a row per image in flight,
fitted to the terminal's width, and gone when the run ends, so that a run of a hundred images
ends with its failures and totals, not a screen of scrolled rows. Anywhere else (CI logs, pipes,
``TERM=dumb``) plain timestamped lines without a single control character, since those end up
in files and greps: every image, every retry. Quiet runs print only failures. The words come
from ``text`` and ``tally``; this module only lays them out. Imports the public ``bulkpull``
API and rich; ``cli`` decides which display to use and when to print the summary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bulkpull import (
    ImageDone,
    ImageSpec,
    ImageStage,
    Platform,
    PushDone,
    PushEvent,
    PushStatus,
    Retrying,
    Stage,
    Status,
    printable,
)
from bulkpull.cli.tally import Finished, RateMeter, Row, Tally
from bulkpull.cli.text import (
    Labels,
    count_text,
    digest_text,
    fit,
    image_text,
    overall_layout,
    reason_text,
    result_fields,
    retry_text,
    row_layout,
    text_width,
)

# Messages carry registry text and user input: none of it is rich markup, and nothing in it
# should be coloured by guesswork.
stderr = Console(stderr=True, highlight=False, markup=False)
stdout = Console(highlight=False, markup=False)

STYLES: dict[Status | PushStatus, str] = {
    Status.PULLED: "green",
    Status.UP_TO_DATE: "cyan",
    Status.RESOLVED: "green",
    Status.FAILED: "bold red",
    Status.INTERRUPTED: "yellow",
    PushStatus.PUSHED: "green",
    PushStatus.MISSING: "yellow",
}
# At most this many rows of images in flight; a last row counts the rest. A screen full of
# rows says less than fifteen busy ones.
MAX_ROWS = 15
# Failures the live display keeps in view (the latest); the summary lists them all.
LIVE_FAILURES = 3


def is_interactive(console: Console) -> bool:
    """Whether ``console`` can be redrawn in place: a terminal that understands cursor moves."""
    return console.is_terminal and not console.is_dumb_terminal


class Display:
    """Renders a run. ``handle`` takes every event; ``running`` wraps the run and calls
    ``tick`` every ``interval`` seconds, so a stalled download still shows signs of life."""

    interval = 10.0

    def __init__(self, console: Console, labels: Labels, images: int, *, dry_run: bool) -> None:
        self.console = console
        self.labels = labels
        self.tally = Tally(images)
        self.dry_run = dry_run

    def handle(self, event: PushEvent) -> None:
        self.tally.apply(event, time.monotonic())
        self.show(event)

    def show(self, event: PushEvent) -> None:
        """Render one event; the tally already includes it."""
        if isinstance(event, ImageDone | PushDone):
            self.finished(event.result)

    def tick(self) -> None:
        """Render the passage of time."""

    def note(self, text: str, style: str = "") -> None:
        """A message of its own line: a log record, a headline, a finished image. Escaped:
        paths, names and registry text in it may hold characters a terminal would act on."""
        self.console.print(Text(printable(text), style=style), soft_wrap=True)

    def finished(self, result: Finished) -> None:
        """One line per finished image (and platform); unknown fields are left out."""
        fields = result_fields(result, full_digest=self.dry_run)
        self.note("  ".join(field for field in fields if field != "-"), STYLES[result.status])

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


class PlainDisplay(Display):
    """Timestamped lines: finished images, retries, and every ``interval`` seconds where the
    run is. With ``verbose``, every stage an image enters too."""

    def __init__(
        self, console: Console, labels: Labels, images: int, *, dry_run: bool, verbose: bool
    ) -> None:
        super().__init__(console, labels, images, dry_run=dry_run)
        self.verbose = verbose
        self._meter = RateMeter(self.interval)

    def note(self, text: str, style: str = "") -> None:
        super().note(f"{time.strftime('%H:%M:%S')} {text}")

    def show(self, event: PushEvent) -> None:
        super().show(event)
        if isinstance(event, Retrying):
            what = self._retried(event)
            self.note(f"retrying {what} {retry_text(event, event.delay, str(event.error))}")
        elif isinstance(event, ImageStage) and self.verbose:
            self.note(_stage_text(event))

    def _retried(self, event: Retrying) -> str:
        """The image a retry delays, or the blob and the images that wait for it."""
        if event.spec is not None:
            return image_text(event.spec)
        waiting = [
            image_text(stage.spec)
            for stage in self.tally.in_flight.values()
            if event.digest in stage.blobs
        ]
        of = f" of {', '.join(waiting)}" if waiting else ""
        return f"blob {digest_text(event.digest, full=False)}{of}"

    def tick(self) -> None:
        rate = self._meter.rate(time.monotonic(), self.tally.received)
        if self.tally.in_flight:
            self.note(", ".join(self.tally.overall_fields(rate, dry_run=self.dry_run)))


def _reason(result: Finished) -> str:
    return reason_text(result.error) if result.error else result.status.value


def _stage_text(stage: ImageStage) -> str:
    platforms = f" ({', '.join(map(str, stage.platforms))})" if stage.platforms else ""
    moving = stage.stage in (Stage.DOWNLOADING, Stage.UPLOADING)
    blobs = f": {count_text(len(stage.blobs), 'blob')}" if moving else ""
    return f"{stage.stage.value} {image_text(stage.spec)}{platforms}{blobs}"


class QuietDisplay(PlainDisplay):
    """Failures only, as they happen; the summary adds only the totals."""

    def show(self, event: PushEvent) -> None:
        if isinstance(event, ImageDone | PushDone) and not event.result.ok:
            self.finished(event.result)

    def tick(self) -> None:
        return


class LiveDisplay(Display):
    """The overall line, the latest failures and a row per image in flight, redrawn in place
    and fitted to the terminal's width; it disappears when the run ends, for the summary.

    The bar measures bytes once there are bytes to download, and images otherwise (a dry run,
    a rerun with everything up to date).
    """

    interval = 0.2

    def __init__(self, console: Console, labels: Labels, images: int, *, dry_run: bool) -> None:
        super().__init__(console, labels, images, dry_run=dry_run)
        self._meter = RateMeter(window=5.0)
        self._rate = 0.0
        self._failures: list[Finished] = []
        # Redrawn from the event loop's own ticks (and whenever a line is printed above it),
        # never from rich's refresh thread: the tally changes on the loop, and reading it
        # from another thread would race. Each redraw renders the tally as it is then.
        self._live = Live(
            console=console, auto_refresh=False, transient=True, get_renderable=self._render
        )

    def note(self, text: str, style: str = "") -> None:
        """Printed above the live rows, wrapped at words to the terminal's width; escaped."""
        self.console.print(Text(printable(text), style=style))

    def finished(self, result: Finished) -> None:
        """Kept in view while failures are few; every image is in the summary that follows."""
        if not result.ok:
            self._failures.append(result)

    def tick(self) -> None:
        self._rate = self._meter.rate(time.monotonic(), self.tally.received)
        self._live.refresh()

    def _render(self) -> RenderableType:
        width = self.console.width
        failures = self._failure_lines(width)
        shown = min(max(self.console.height - 3 - len(failures), 3), MAX_ROWS)
        return Group(self._overall(width), *failures, self._rows(width, shown))

    def _overall(self, width: int) -> RenderableType:
        tally = self.tally
        if self.dry_run or not tally.bytes_total:
            done, total = tally.finished, tally.images
        else:
            done, total = tally.bytes_done, tally.bytes_total
        bar, text = overall_layout(tally.overall_fields(self._rate, dry_run=self.dry_run), width)
        if not bar:
            return Text(text, no_wrap=True)
        line = Table.grid(padding=(0, 2))
        line.add_row(ProgressBar(total=total, completed=done, width=bar), text)
        return line

    def _failure_lines(self, width: int) -> list[Text]:
        latest = self._failures[-LIVE_FAILURES:]
        lines = [
            Text(fit(f"failed  {self.labels.name(result.spec)}  {_reason(result)}", width))
            for result in latest
        ]
        if len(self._failures) > len(latest):
            more = len(self._failures) - len(latest)
            lines.insert(0, Text(f"… {more} more failed", style=STYLES[Status.FAILED]))
        return lines

    def _rows(self, width: int, shown: int) -> RenderableType:
        rows = self.tally.rows(time.monotonic())
        visible = rows[:shown]
        labels = [self.labels.label(row.stage, width) for row in visible]
        layout = row_layout(
            width,
            max(map(text_width, labels), default=0),
            max((text_width(row.counts) for row in visible), default=0),
            max((text_width(row.note) for row in visible), default=0),
        )
        table = Table.grid(padding=(0, 2))
        table.add_column(width=layout.label, no_wrap=True)
        table.add_column(width=layout.counts, no_wrap=True)
        if layout.bar:
            table.add_column(width=layout.bar, no_wrap=True)
        table.add_column(width=layout.note, no_wrap=True, overflow="ellipsis")
        for row in visible:
            table.add_row(*self._cells(row, layout.label, layout.bar))
        if len(rows) <= shown:
            return table
        return Group(table, Text(f"… and {len(rows) - shown} more in flight", style="dim"))

    def _cells(self, row: Row, label: int, bar: int) -> list[RenderableType]:
        cells: list[RenderableType] = [self.labels.label(row.stage, label), row.counts]
        if bar:
            total = row.bytes_total
            cells.append(ProgressBar(total=total or None, completed=row.bytes_done, width=bar))
        style = "dim" if row.stage.stage is Stage.RESOLVING else ""
        return [*cells, Text(row.note, style=style)]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        with self._live:
            async with super().running():
                yield


def make_display(
    specs: Sequence[ImageSpec],
    platforms: Sequence[Platform],
    *,
    dry_run: bool,
    verbose: bool,
    quiet: bool,
) -> Display:
    """The display for standard error as it is: live on a terminal, plain lines elsewhere."""
    labels = Labels.for_run(specs, platforms)
    if quiet:
        return QuietDisplay(stderr, labels, len(specs), dry_run=dry_run, verbose=False)
    if is_interactive(stderr):
        return LiveDisplay(stderr, labels, len(specs), dry_run=dry_run)
    return PlainDisplay(stderr, labels, len(specs), dry_run=dry_run, verbose=verbose)


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


def log_through(shown: Display, *, verbose: bool, quiet: bool) -> None:
    """Send the library's log records through the display: with ``-v`` every request (URLs
    redacted by the library), by default warnings, with ``-q`` errors only."""
    logger = logging.getLogger("bulkpull")
    logger.addHandler(DisplayHandler(shown))
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    logger.propagate = False


def error(message: str) -> None:
    """A one-line error on standard error, prefixed like every bulkpull message."""
    stderr.print(f"bulkpull: {printable(message)}", soft_wrap=True)
