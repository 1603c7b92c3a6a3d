"""How the command line is parsed and explained: commands, a default command, usage lines.

``bulkpull images.txt`` is a pull, as people type it every day; ``bulkpull verify …`` (and
every command added beside it, one module each) is named. :class:`Commands` is the group that
makes ``pull`` the default, suggests the command meant by a typo, lists every command in its
usage lines and completes the default command's flags. :class:`Command` writes arguments as users
know them from man pages (``[IMAGES_FILE]``, ``ARCHIVE...``), without typer's type labels.

typer vendors click (``typer._click``); these classes extend typer's own, the way typer documents
for custom groups and commands, and take the vendored types in their signatures.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import NoReturn

import typer
from typer._click import Context, HelpFormatter, Parameter
from typer._click.shell_completion import CompletionItem
from typer.core import TyperCommand, TyperGroup

from bulkpull.cli import display

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_BUG = 70  # EX_SOFTWARE in sysexits.h
EXIT_INTERRUPTED = 130


def usage_error(message: str) -> NoReturn:
    """A command line that cannot run: one ``bulkpull:`` line, exit 2."""
    display.error(message)
    raise typer.Exit(EXIT_USAGE)


class Command(TyperCommand):
    """A command whose usage and argument list read like a man page's."""

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [
            argument_usage(param) for param in self.get_params(ctx) if is_argument(param)
        ]

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        params = self.get_params(ctx)
        arguments = [
            (argument_usage(param), str(getattr(param, "help", "") or ""))
            for param in params
            if is_argument(param) and not getattr(param, "hidden", False)
        ]
        options = [
            record
            for param in params
            if not is_argument(param) and (record := param.get_help_record(ctx)) is not None
        ]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def is_argument(param: Parameter) -> bool:
    return param.param_type_name == "argument"


def argument_usage(param: Parameter) -> str:
    """``IMAGES_FILE``, ``[IMAGES_FILE]`` when it may be left out, ``ARCHIVE...`` for many."""
    name = param.metavar or (param.name or "").upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if param.required else f"[{name}]"


class Commands(TyperGroup):
    """The ``bulkpull`` group: a command name first, or else the default command's arguments.

    A first word that is neither a command nor the group's own flag goes to ``pull``, unless it
    is no file and looks like a mistyped command name (``verfy``): then the group says which
    command was meant instead of reporting a missing list file.
    """

    DEFAULT = "pull"

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if self._goes_to_default(ctx, args):
            args = [self.DEFAULT, *args]
        return super().parse_args(ctx, args)

    def _goes_to_default(self, ctx: Context, args: list[str]) -> bool:
        if not args:
            # Completing the first word offers commands and the default's flags alike.
            return not ctx.resilient_parsing
        first = args[0]
        own_flags = {name for param in self.get_params(ctx) for name in param.opts}
        if first in self.commands or first in own_flags:
            return False
        return first.startswith("-") or Path(first).exists() or not self._resembles_command(first)

    def _resembles_command(self, word: str) -> bool:
        return bool(difflib.get_close_matches(word, list(self.commands), n=1, cutoff=0.75))

    def format_usage(self, ctx: Context, formatter: HelpFormatter) -> None:
        """One usage line per command, the default first with its name optional."""
        for number, name in enumerate(self._ordered()):
            command = self.commands[name]
            pieces = command.collect_usage_pieces(Context(command, info_name=name, parent=ctx))
            shown = f"[{name}]" if name == self.DEFAULT else name
            prefix = "Usage: " if number == 0 else "   or: "
            formatter.write_usage(ctx.command_path, " ".join([shown, *pieces]), prefix)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The usage lines, the commands, then the default command's own help and flags:
        ``bulkpull --help`` is how most people look up the flags of a pull."""
        default = self.commands[self.DEFAULT]
        default_ctx = Context(default, info_name=self.DEFAULT, parent=ctx)
        self.format_usage(ctx, formatter)
        default.format_help_text(default_ctx, formatter)
        self.format_commands(ctx, formatter)
        default.format_options(default_ctx, formatter)
        own = [
            record
            for param in self.get_params(ctx)
            if "--help" not in param.opts and (record := param.get_help_record(ctx))
        ]
        if own:
            with formatter.section("Shell completion"):
                formatter.write_dl(own)
        default.format_epilog(default_ctx, formatter)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = [
            (name, ("(default) " if name == self.DEFAULT else "") + command.get_short_help_str())
            for name in self._ordered()
            if not (command := self.commands[name]).hidden
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: Context, incomplete: str) -> list[CompletionItem]:
        """Command names and, as ``bulkpull --dry<TAB>`` is a pull, the default's flags."""
        found = super().shell_complete(ctx, incomplete)
        default = self.commands[self.DEFAULT]
        with default.make_context(self.DEFAULT, [], parent=ctx, resilient_parsing=True) as sub:
            found += default.shell_complete(sub, incomplete)
        unique = {item.value: item for item in found}
        return list(unique.values())

    def _ordered(self) -> list[str]:
        return [self.DEFAULT, *(name for name in self.commands if name != self.DEFAULT)]
