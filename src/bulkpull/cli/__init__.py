"""The ``bulkpull`` command line: one module per command, on the public ``bulkpull`` API.

``bulkpull [pull] IMAGES_FILE`` (``pull``, the default, may be left out), ``bulkpull push
SOURCE... --to REGISTRY`` and ``bulkpull verify ARCHIVE...``; a new command is a module with its
function, registered below. Exit codes: 0
every image pulled, 1 some failed (the rest still completed), 2 usage error or a bad list line,
70 a bug in bulkpull, 130 interrupted.
"""

from __future__ import annotations

import sys
import traceback

import typer

import bulkpull
from bulkpull import BulkpullError
from bulkpull.cli import display, pull, push, verify
from bulkpull.cli.commands import EXIT_BUG, EXIT_SOME_FAILED, Command, Commands

# Locals stay out of tracebacks: they hold passwords.
app = typer.Typer(cls=Commands, rich_markup_mode=None, pretty_exceptions_show_locals=False)
app.command("pull", cls=Command, epilog=pull.EXAMPLES, short_help=pull.SUMMARY)(pull.pull)
app.command("push", cls=Command, epilog=push.EXAMPLES, short_help=push.SUMMARY)(push.push)
app.command("verify", cls=Command, short_help=verify.SUMMARY)(verify.verify)


def main() -> None:
    """Entry point of the ``bulkpull`` script and ``python -m bulkpull``.

    Errors bulkpull expects (its own, and the system's: a full disk, a missing directory) are
    one line; anything else is a bug, shown with its traceback and a request to report it.
    """
    try:
        # The name completion scripts and usage lines use, also under python -m bulkpull.
        app(prog_name="bulkpull")
    except BulkpullError as exc:  # not attributed to an image
        display.error(str(exc))
        sys.exit(EXIT_SOME_FAILED)
    except OSError as exc:  # the system's: a full disk, a file where a directory should be
        display.error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        sys.exit(EXIT_SOME_FAILED)
    except Exception:
        traceback.print_exc()
        display.error(
            f"this is a bug in bulkpull {bulkpull.__version__}; please report it with the "
            "traceback above and the command line that led to it (leave out passwords)"
        )
        sys.exit(EXIT_BUG)
