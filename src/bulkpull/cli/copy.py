"""``bulkpull LIST --to REGISTRY[/NAMESPACE]``: the images of a list copied from their
registries into one, through the blob store, with the progress, summary and exit codes of a pull
and the report of a push.

The pull's flags choose and reach the sources (platforms, mirrors, logins per registry), the
push's naming rule places the images; ``--dry-run`` asks the target what it lacks, ``--lock``
pins every image to the digest its source resolved to. Ctrl-C and SIGTERM stop the run: verified
blobs stay in the store and unfinished uploads in the state directory, for the next run. Imports
the public ``bulkpull`` API and its siblings.
"""

from __future__ import annotations

from typing import Any

import bulkpull
from bulkpull import (
    ImageListError,
    ImageSpec,
    InvalidOptionError,
    PullOptions,
    PushOptions,
    PushReport,
    PushTarget,
    Shard,
)
from bulkpull.cli import results, runs
from bulkpull.cli.commands import usage_error
from bulkpull.cli.tally import Tally


class CopyRun(runs.Run[PushReport]):
    """One copy (or dry run) under its display, from the headline to the report and lock."""

    done = "copied"
    kept = "verified blobs and unfinished uploads are kept for the next run"

    def __init__(
        self,
        specs: list[ImageSpec],
        to: str,
        options: PullOptions,
        dry_run: bool,
        *,
        part: Shard | None,
        push: dict[str, Any] | None = None,
        verbose: bool,
        quiet: bool,
    ) -> None:
        """``specs`` is the whole list: names are checked across it, and with ``part`` the
        rest of it tells where the other shards put what they share with this one. ``push``:
        the push's own options the flags gave (``max_uploads``, ``state_dir``)."""
        try:
            self.target = PushTarget.parse(to)
            self.plan = bulkpull.copy_plan(specs, self.target)
            self.push = PushOptions.from_environment(pull=options, **(push or {}))
        except (ImageListError, InvalidOptionError) as exc:
            usage_error(str(exc))
        self.part = part
        self.listed = specs
        self.specs = self.plan if part is None else part.select(self.plan)
        platforms = options.platforms
        super().__init__(self.specs, platforms, dry_run=dry_run, verbose=verbose, quiet=quiet)
        self.options = options

    def headline(self) -> str:
        """``copying 12 images (linux/amd64) to registry.internal:5000/mirror``."""
        platforms, images = runs.platforms_text(self.options), self.images_text()
        if self.dry_run:
            return (
                f"checking {images} ({platforms}) against {self.target}; dry run: nothing written"
            )
        return f"copying {images} ({platforms}) to {self.target}"

    def interrupted_report(self, tally: Tally, seconds: float) -> PushReport:
        images = [(spec, str(spec.source)) for spec in self.specs]
        target = str(self.target)
        return results.interrupted_push_report(target, images, tally, self.started, seconds)

    async def work(self) -> PushReport:
        """Copy the list as it was given: the plan made of it is the one made here (the
        display's), and the lock needs the names the lines gave."""
        return await bulkpull.copy_images(
            self.listed,
            self.target,
            self.options,
            push=self.push,
            shard=self.part,
            dry_run=self.dry_run,
            on_event=self.display.handle,
        )
