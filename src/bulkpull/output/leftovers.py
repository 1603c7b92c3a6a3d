"""What earlier runs left of an archive being filled: partial files found by their names,
claimed with an ``flock``, waited for while another run holds them, checked before they are
resumed, and removed once the archive they were is replaced. ``filling`` decides what to do
with them; this module only finds, opens and removes them, never writing through a link or
into a file of two names. Imports ``errors``, ``files``, ``ranges``, ``archive`` and
``volumes``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from contextlib import suppress
from pathlib import Path

from bulkpull.errors import OutputError
from bulkpull.files import check, names_file, open_regular, temporary_name, try_lock
from bulkpull.output.archive import ArchivePlan
from bulkpull.output.volumes import partial_base, partial_paths, partial_siblings, volume_sizes
from bulkpull.ranges import Positional, Spread

PROGRESS_SUFFIX = ".progress"
MAX_PROGRESS_BYTES = 1024 * 1024
_WAIT_SECONDS = 0.05


def leftovers(final: Path) -> list[Path]:
    """The partial archives earlier runs left for ``final``: names ``temporary_name`` makes
    for it, and nothing else."""
    pattern = re.compile(re.escape(temporary_name(final).name[:-21]) + r"\.[0-9a-f]{12}\.partial")
    try:
        with os.scandir(final.parent) as entries:
            names = [entry.name for entry in entries if pattern.fullmatch(entry.name)]
    except FileNotFoundError:
        return []
    return [final.with_name(name) for name in sorted(names)]


def claim_all(final: Path) -> tuple[Path | None, list[tuple[Path, int]]]:
    """Lock every leftover partial of ``final``, written whole or in volumes; the first that
    another run holds stops it (with what was locked so far). A leftover that is not a regular
    file of this user's with one name is left alone, never written through."""
    claimed: list[tuple[Path, int]] = []
    for path in leftovers(final) + leftovers(partial_base(final)):
        fd = _open_own(path)
        if fd is None:
            continue
        if not try_lock(fd):
            os.close(fd)
            return path, claimed
        claimed.append((path, fd))
    return None, claimed


def _open_own(path: Path) -> int | None:
    """A leftover partial open for writing, when it is a regular file of this user's with one
    name; None when it is gone or anything else (never written through)."""
    try:
        fd = open_regular(path, os.O_RDWR)
    except (OSError, OutputError):  # gone, or not a regular file
        return None
    found = os.fstat(fd)
    if found.st_nlink != 1 or found.st_uid != os.geteuid() or not stat.S_ISREG(found.st_mode):
        os.close(fd)
        return None
    return fd


def reopened(
    final: Path, plan: ArchivePlan, head: Path, fd: int, volume: int | None
) -> tuple[list[Path], Positional] | None:
    """A leftover's files, when they are the ones this layout needs at their sizes: the one
    partial ``head`` (open as ``fd``), or every volume of a split one."""
    if volume is None:
        return ([head], fd) if os.fstat(fd).st_size == plan.size else None
    sizes = volume_sizes(plan.size, volume, final)
    paths = partial_paths(head, len(sizes))
    fds = [fd]
    for path in paths[1:]:
        found = _open_own(path)
        if found is None:
            break
        fds.append(found)
    if len(fds) == len(sizes) and [os.fstat(f).st_size for f in fds] == list(sizes):
        return paths, Spread(tuple(fds), sizes)
    close_all([], fds[1:])
    return None


def close_all(remove: list[Path], fds: list[int]) -> None:
    """Close ``fds``, and remove the files at ``remove`` (made new by this run)."""
    for fd in fds:
        os.close(fd)
    for path in remove:
        unlink(path)


def wait_for(path: Path, stop: threading.Event | None) -> bool:
    """Wait until no run holds the partial at ``path``; whether it was installed (or removed)
    meanwhile, rather than given up for a later run to resume."""
    try:
        fd = open_regular(path)
    except (OSError, OutputError):
        return True
    try:
        while not try_lock(fd):
            check(stop)
            time.sleep(_WAIT_SECONDS)
        return not names_file(path, fd)
    finally:
        os.close(fd)


def progress_path(partial: Path) -> Path:
    return partial.with_name(partial.name + PROGRESS_SUFFIX)


def progress(partial: Path, key: str, volume: int | None) -> dict[str, int] | None:
    """The bytes written per slot that the leftover's progress file records for layout
    ``key`` in volumes of ``volume``; None when it has none, or records another layout."""
    try:
        with os.fdopen(open_regular(progress_path(partial)), "rb") as handle:
            document = json.loads(handle.read(MAX_PROGRESS_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("layout") != key:
        return None
    if document.get("volume") != volume:
        return None
    written = document.get("written")
    if not isinstance(written, dict):
        return None
    return {k: v for k, v in written.items() if isinstance(k, str) and type(v) is int and v >= 0}


def drop(leftovers: list[tuple[Path, int]], *, remove: bool) -> None:
    """Release leftovers of other layouts; removed once the archive they were is replaced."""
    for path, fd in leftovers:
        if remove:
            for sibling in partial_siblings(path):
                unlink(sibling)
            unlink(path)
            unlink(progress_path(path))
        os.close(fd)
    leftovers.clear()


def unlink(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
