"""What a run leaves besides archives: the ``--report`` and ``--lock`` files.

A run (a pull or a push) that is interrupted still writes its report: the images that finished
as they ended, the others ``interrupted``, built from the events the display already heard.
Imports the public ``bulkpull`` API, ``display`` and ``tally``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import bulkpull
from bulkpull import (
    BlobCounts,
    ImageResult,
    ImageSpec,
    PullReport,
    PushReport,
    PushResult,
    PushStatus,
    Status,
)
from bulkpull.cli import display
from bulkpull.cli.tally import Tally


def write_report(report: PullReport | PushReport, path: Path) -> bool:
    """Write the ``--report`` document; False (the error said) when it cannot be written."""
    return _write("report", path, json.dumps(report.to_json(), indent=2) + "\n")


def write_lock(report: PullReport | PushReport, path: Path, source: str) -> bool:
    """Write the ``--lock`` file; False (the error said) when it cannot be written."""
    return _write("lock file", path, lock_text(report, source))


def _write(what: str, path: Path, text: str) -> bool:
    try:
        asyncio.run(bulkpull.write_atomically(path, text.encode()))
    except OSError as exc:
        display.error(f"cannot write the {what} {path}: {exc.strerror or exc}")
        return False
    display.stdout.print(bulkpull.printable(f"{what} written to {path}"), soft_wrap=True)
    return True


def lock_text(report: PullReport | PushReport, source: str) -> str:
    """The lock file: a header saying what it is, then one pinned list line per image.

    Images that could not be resolved stay unpinned (so the lock still lists them) and are
    named in the header.
    """
    header = [
        "# bulkpull lock file: every image pinned to the manifest digest it resolved to.",
        f"# Written by bulkpull {bulkpull.__version__} from {source} at {report.started}.",
        "# It is itself an image list: bulkpull THIS_FILE pulls exactly these images again.",
    ]
    header += [
        f"# not pinned (it failed): {result.spec.source}"
        for result in report.results
        if not result.ok
    ]
    return "\n".join(header + report.lock_lines()) + "\n"


def interrupted_report(
    specs: list[ImageSpec], tally: Tally, started: str, seconds: float
) -> PullReport:
    """The report of a run stopped part-way: what finished, as it finished; every other image
    ``interrupted``, in the order of the list."""
    results: list[ImageResult] = []
    for spec in specs:
        finished = [r for r in tally.results.get(spec, []) if isinstance(r, ImageResult)]
        results += finished or [ImageResult(spec, Status.INTERRUPTED)]
    return PullReport(tuple(results), tally.received, tally.reused, seconds, started)


def interrupted_push_report(
    target: str,
    images: Sequence[tuple[ImageSpec, Path | str]],
    tally: Tally,
    started: str,
    seconds: float,
) -> PushReport:
    """The report of a push or a copy stopped part-way, as :func:`interrupted_report` is of a
    pull; ``images`` are the run's, each with where it is read from. Its blob counts are
    those of the images that finished, and the bytes sent only upload bytes: a copy's
    downloads from its sources are no bytes sent to the target."""
    found: list[PushResult] = []
    for spec, source in images:
        finished = [r for r in tally.results.get(spec, []) if isinstance(r, PushResult)]
        found += finished or [PushResult(spec, PushStatus.INTERRUPTED, source)]
    blobs = sum((result.blobs for result in found), BlobCounts())
    return PushReport(
        target, tuple(found), blobs, bytes_sent=tally.sent, seconds=seconds, started=started
    )
