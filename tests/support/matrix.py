"""The interop matrix: image by output by loader, with one result per cell.

Test cells record their outcome here as they run (``Matrix.cell``); cells that cannot exist
are recorded as ``n/a`` with the reason. At the end of the session ``conftest`` prints the
table in the terminal summary and writes it to ``$BULKPULL_MATRIX_FILE`` when that is set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MATRIX_FILE_VARIABLE = "BULKPULL_MATRIX_FILE"


@dataclass(frozen=True)
class Outcome:
    """The result of one cell, with the reason or remark shown as its footnote."""

    status: str
    """``pass``, ``FAIL``, ``xfail``, ``XPASS``, ``skip`` or ``n/a``."""
    note: str = ""


@dataclass
class CellRecorder:
    """Lets a running cell attach notes (shown as footnotes) and declare an expected failure."""

    notes: list[str] = field(default_factory=list)
    expected: type[BaseException] | None = None
    reason: str = ""

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def expect(self, exception: type[BaseException], reason: str) -> None:
        """From here on the cell is expected to fail with ``exception``, because ``reason``."""
        self.expected = exception
        self.reason = reason


@dataclass
class Matrix:
    """Results by (image, output, loader), plus checks outside the grid."""

    rows: tuple[str, ...]
    outputs: tuple[str, ...]
    loaders: tuple[str, ...]
    results: dict[tuple[str, str, str], Outcome] = field(default_factory=dict)
    checks: dict[str, Outcome] = field(default_factory=dict)
    """Results outside the grid (such as running a loaded image), by description."""

    def not_applicable(self, row: str, output: str, loader: str, reason: str) -> None:
        self.results[(row, output, loader)] = Outcome("n/a", reason)

    @contextlib.contextmanager
    def cell(self, key: tuple[str, str, str] | str) -> Iterator[CellRecorder]:
        """Record the outcome of the block under ``key`` (a grid cell or a check's name)."""
        recorder = CellRecorder()
        try:
            yield recorder
        except pytest.skip.Exception as exc:
            self._store(key, Outcome("skip", str(exc)))
            raise
        except BaseException as exc:
            if recorder.expected is not None and isinstance(exc, recorder.expected):
                self._store(key, Outcome("xfail", recorder.reason))
            else:
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self._store(key, Outcome("FAIL", first_line[:200]))
            raise
        else:
            if recorder.expected is not None:
                self._store(key, Outcome("XPASS", recorder.reason))
            else:
                self._store(key, Outcome("pass", "; ".join(recorder.notes)))

    def _store(self, key: tuple[str, str, str] | str, outcome: Outcome) -> None:
        if isinstance(key, str):
            self.checks[key] = outcome
        else:
            self.results[key] = outcome

    def render(self) -> str:
        """The matrix as a Markdown table (rows: images; columns: output/loader), footnotes."""
        ran = [o for o in self.results.values() if o.status != "n/a"]
        if not ran and not self.checks:
            return ""
        columns = [(output, loader) for output in self.outputs for loader in self.loaders]
        notes: dict[str, int] = {}

        def show(outcome: Outcome | None) -> str:
            if outcome is None:
                return "not run"
            if not outcome.note:
                return outcome.status
            number = notes.setdefault(outcome.note, len(notes) + 1)
            return f"{outcome.status} [{number}]"

        header = ["image"] + [f"{output} {loader}" for output, loader in columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [show(self.results.get((row, output, loader))) for output, loader in columns]
            lines.append("| " + " | ".join([row, *cells]) + " |")
        for name, outcome in self.checks.items():
            lines.append(f"\n{name}: {show(outcome)}")
        if notes:
            lines.append("")
            lines += [f"[{number}] {note}" for note, number in notes.items()]
        counts: dict[str, int] = {}
        for outcome in [*self.results.values(), *self.checks.values()]:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        lines.append("")
        lines.append("cells: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        return "\n".join(lines)

    def write(self) -> Path | None:
        """Write the rendered matrix to ``$BULKPULL_MATRIX_FILE`` if set; returns the path."""
        target = os.environ.get(MATRIX_FILE_VARIABLE)
        text = self.render()
        if not target or not text:
            return None
        path = Path(target)
        path.write_text(text + "\n")
        return path


ROWS = (
    "oci",
    "docker-types",
    "multiplatform",
    "multiplatform-other",
    "multiplatform-one",
    "renamed",
    "by-digest",
    "busybox",
)
"""The images of the matrix. ``multiplatform`` is the host's platform of an index pulled for
two platforms, ``multiplatform-other`` the other one; ``multiplatform-one`` is the same index
pulled for the host's platform only (every output then names that platform's manifest)."""
OUTPUTS = ("archive", "bundle", "layout")
"""Per-image archive (``--out-dir``), ``--bundle FILE``, ``--oci-layout DIR``."""
LOADERS = ("docker", "skopeo", "ctr", "podman")

INTEROP = Matrix(ROWS, OUTPUTS, LOADERS)
"""The session's interop matrix; filled by test_interop.py, reported by conftest."""
