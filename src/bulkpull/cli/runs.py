"""One run of a command under its display, as a pull and a push both go: the library's log
routed through the display, a headline, the work with Ctrl-C and SIGTERM stopping it alike, the
summary and ``--report``, or after an interruption a word on what is kept and the report of
what finished. A command says its headline, its work and its report of an interrupted run.
Imports the public ``bulkpull`` API and ``commands``, ``display``, ``results``, ``summary``,
``tally`` and ``text``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from bulkpull import ImageSpec, Platform, PullOptions, PullReport, PushReport, Shard
from bulkpull.cli import display, results, summary
from bulkpull.cli.commands import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED
from bulkpull.cli.tally import Tally
from bulkpull.cli.text import count_text

R = TypeVar("R", PullReport, PushReport)


class Run(ABC, Generic[R]):
    """A run of ``specs`` under a display, from the headline to the report."""

    done: ClassVar[str]
    """What a finished image is, in the interrupted line: ``pulled``."""
    kept: ClassVar[str]
    """What an interrupted run leaves for the next one, in words."""

    def __init__(
        self,
        specs: Sequence[ImageSpec],
        platforms: Sequence[Platform],
        *,
        dry_run: bool,
        verbose: bool,
        quiet: bool,
    ) -> None:
        self.images = len(specs)
        self.dry_run = dry_run
        self.verbose = verbose
        self.quiet = quiet
        self.display = display.make_display(
            specs, platforms, dry_run=dry_run, verbose=verbose, quiet=quiet
        )
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.clock = time.monotonic()
        # The part of a longer list this run takes (``--shard``), and that list's length.
        self.shard: tuple[Shard, int] | None = None

    def images_text(self) -> str:
        """``34 images``, or with ``--shard`` ``34 images (shard 1/3 of 100 images)``."""
        images = count_text(self.images, "image")
        if self.shard is None:
            return images
        part, listed = self.shard
        return f"{images} (shard {part} of {count_text(listed, 'image')})"

    @abstractmethod
    def headline(self) -> str:
        """What is to come, in one line."""

    @abstractmethod
    async def work(self) -> R:
        """The run itself, its events going to ``self.display``."""

    @abstractmethod
    def interrupted_report(self, tally: Tally, seconds: float) -> R:
        """The report of what finished before the run was stopped."""

    def start(self) -> None:
        """Route the library's log through the display, and say what is to come."""
        display.log_through(self.display, verbose=self.verbose, quiet=self.quiet)
        if not self.quiet:
            self.display.note(self.headline())

    def wait(self) -> R | None:
        """The report, or None when the run was interrupted."""
        try:
            return asyncio.run(self._until_signalled())
        except (KeyboardInterrupt, asyncio.CancelledError):
            return None

    def conclude(
        self, report_file: Path | None, lock_file: Path | None = None, source: str = ""
    ) -> int:
        """Wait for the run; then the summary, ``--report`` and ``--lock`` (``source`` names
        the list it pins), or after an interruption what is kept. The exit code."""
        report = self.wait()
        if report is None:
            self.interrupted(report_file)
            return EXIT_INTERRUPTED
        written = [
            self.summarize(report, report_file),
            results.write_lock(report, lock_file, source) if lock_file else True,
        ]
        return EXIT_OK if report.ok and all(written) else EXIT_SOME_FAILED

    def summarize(self, report: R, report_file: Path | None) -> bool:
        """Print the summary and write ``--report``; whether the report was written."""
        summary.print_summary(
            report, dry_run=self.dry_run, quiet=self.quiet, report_file=report_file
        )
        return results.write_report(report, report_file) if report_file else True

    def interrupted(self, report_file: Path | None) -> None:
        """Say so, and write the report of what finished."""
        tally = self.display.tally
        display.stderr.print(
            f"interrupted: {tally.pulled} of {self.images} images {self.done}; {self.kept}",
            soft_wrap=True,
        )
        if report_file is not None:
            report = self.interrupted_report(tally, time.monotonic() - self.clock)
            results.write_report(report, report_file)

    async def _until_signalled(self) -> R:
        """The work, with SIGTERM treated like Ctrl-C: cancel, keep what is verified."""
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        async with self.display.running():
            return await self.work()


def platforms_text(options: PullOptions) -> str:
    """The platforms a run picks, for its headline: ``linux/amd64, linux/arm64``, ``all``."""
    if options.all_platforms:
        return "all platforms"
    return ", ".join(str(platform) for platform in options.platforms)
