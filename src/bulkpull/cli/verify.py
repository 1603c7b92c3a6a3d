"""``bulkpull verify PATH...``: check archives and layouts written by bulkpull or any other tool,
and with ``--lock`` that they hold what a lock file pins.

Imports the public ``bulkpull`` API, typer, ``commands`` and ``display``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import bulkpull
from bulkpull import ImageListError
from bulkpull.cli import display
from bulkpull.cli.commands import EXIT_OK, EXIT_SOME_FAILED, usage_error

SUMMARY = "Check that archives and layouts are complete and loadable."


def verify(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...",
            show_default=False,
            help="Archives (per-image or bundles, docker save's or OCI) and OCI layout "
            "directories.",
        ),
    ],
    lock: Annotated[
        Path | None,
        typer.Option("--lock", metavar="FILE", help="A lock file the PATHs must match."),
    ] = None,
) -> None:
    """Check archives and OCI layout directories (bulkpull's, docker save's, skopeo's,
    containerd's): re-hash every blob, check index.json and manifest.json against what the
    archive holds, layer counts and uncompressed layers against rootfs.diff_ids. With --lock,
    also check that every image the lock file pins is there under its name with the pinned
    digest. Exit 1 if any check fails."""
    checks = [bulkpull.verify_archive(path) for path in paths]
    failed = sum(not _show_check(check) for check in checks)
    if lock is not None:
        try:
            matched = bulkpull.verify_lock(lock, checks)
        except ImageListError as exc:
            usage_error(str(exc))
        lines = [("ok     ", text) for text in matched.found]
        lines += [("FAILED ", text) for text in matched.problems]
        for status, text in lines:
            display.stdout.print(f"{status} {text}", soft_wrap=True)
        failed += len(matched.problems)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def _show_check(check: bulkpull.ArchiveCheck) -> bool:
    """Print what verify found in one archive; returns whether it is sound."""
    for note in check.notes:
        display.stdout.print(f"note    {check.path}: {note}", soft_wrap=True)
    for problem in check.problems:
        display.stdout.print(f"FAILED  {check.path}: {problem}", soft_wrap=True)
    if check.ok:
        names = ", ".join(check.names)
        display.stdout.print(
            f"ok      {check.path}: {check.blobs} blobs verified; {names}", soft_wrap=True
        )
    return check.ok
