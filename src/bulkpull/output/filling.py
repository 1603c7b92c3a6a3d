"""An archive filled in place: laid out first (``archive.plan_archive``), then each blob written
straight into its slot as it downloads, and renamed to its final name only once every slot holds
verified bytes. The disk holds the archive once, and no blob is written twice.

The file is new and unique (``NAME.<random>.partial`` beside the final name, made with
``O_CREAT|O_EXCL|O_NOFOLLOW``) and allocated at its full size before a blob arrives, so a full
disk shows at once and names the archive. Beside it, ``NAME.<random>.partial.progress`` records
the layout's key and how many bytes of each slot were written, rewritten every few MiB: after a
SIGKILL the next run takes the partial over (a regular file of this user's with one name, that no
live process holds), re-hashes what each slot holds and asks the registry only for the rest. A
leftover of another layout (a tag that moved) is removed once the new archive is in place.

A partial is held with an ``flock`` while it is written. A second run writing the same archive
waits for it, then finds the archive installed instead of downloading the same blobs at once.
Runs in worker threads (the engine calls it through ``files``' helpers). Imports ``digest``,
``errors``, ``files``, ``ranges`` and ``archive``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.errors import OutputError
from bulkpull.files import (
    check,
    locked_directory,
    names_file,
    open_regular,
    temporary_name,
    try_lock,
)
from bulkpull.output.archive import ArchivePlan, Slot, write_pieces
from bulkpull.ranges import held_verifier, write_at

PROGRESS_SUFFIX = ".progress"
# How often a slot's progress is recorded: at most this many bytes are fetched again after a
# SIGKILL, per download under way.
PROGRESS_EVERY_BYTES = 4 * 1024 * 1024
MAX_PROGRESS_BYTES = 1024 * 1024
_WAIT_SECONDS = 0.05


class ArchiveFile:
    """One archive being filled: its open partial file, and what each slot already holds."""

    def __init__(self, final: Path, plan: ArchivePlan, path: Path, fd: int) -> None:
        self.final = final
        self.plan = plan
        self.path = path
        self.fd = fd
        self._held: dict[Digest, DigestVerifier] = {}
        self._written: dict[str, int] = {}
        self._recorded: dict[str, int] = {}
        self._lock = threading.Lock()
        self._open = True
        self._stale: list[tuple[Path, int]] = []

    @classmethod
    def open(
        cls,
        final: Path,
        plan: ArchivePlan,
        stop: threading.Event | None = None,
        *,
        done: Callable[[], bool] | None = None,
    ) -> ArchiveFile | None:
        """The partial archive for ``final``: a leftover of this layout resumed, else a new one.
        None when another run was writing ``final`` and has installed it meanwhile, or when
        ``done`` says what ``final`` holds already is what is to be written.

        Leftovers are looked at, and a new partial made, under a lock on the directory, so two
        runs never both start the same archive (``done`` is asked there too: another run may
        have installed it since the caller looked); one that another run holds is waited for
        outside that lock."""
        while True:
            with locked_directory(final.parent, stop):
                if done is not None and done():
                    return None
                busy, claimed = _claim_all(final)
                if busy is None:
                    return cls._take(final, plan, claimed)
            _drop(claimed, remove=False)
            if _wait_for(busy, stop):
                return None

    @classmethod
    def _take(cls, final: Path, plan: ArchivePlan, claimed: list[tuple[Path, int]]) -> ArchiveFile:
        """The leftover of this layout among ``claimed`` resumed, else a new partial; the
        other leftovers go once the archive is installed."""
        try:
            for number, (path, fd) in enumerate(claimed):
                resumed = cls._resumed(final, plan, path, fd)
                if resumed is not None:
                    resumed._stale = claimed[:number] + claimed[number + 1 :]
                    return resumed
            made = cls._new(final, plan)
        except BaseException:
            _drop(claimed, remove=False)
            raise
        made._stale = claimed
        return made

    @classmethod
    def _new(cls, final: Path, plan: ArchivePlan) -> ArchiveFile:
        path = temporary_name(final)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        made = cls(final, plan, path, fd)
        try:
            try_lock(fd)  # new: no other process knows it yet
            _allocate(fd, plan.size)
            write_pieces(fd, plan)
            made._save()
        except BaseException:
            made.abandon(remove=True)
            raise
        return made

    @classmethod
    def _resumed(cls, final: Path, plan: ArchivePlan, path: Path, fd: int) -> ArchiveFile | None:
        """The leftover at ``path`` (locked, open as ``fd``) when it has this very layout, its
        slots re-hashed as far as they were written; else None."""
        written = _progress(path, plan.key)
        if written is None or os.fstat(fd).st_size != plan.size:
            return None
        resumed = cls(final, plan, path, fd)
        for slot in plan.slots:
            held = min(written.get(slot.digest.hex, 0), slot.size)
            verifier = held_verifier(fd, slot.offset, held, slot.digest, slot.size)
            if verifier.size == slot.size and verifier.actual != slot.digest:
                verifier = DigestVerifier(slot.digest, slot.size)
            resumed._held[slot.digest] = verifier
            resumed._written[slot.digest.hex] = verifier.size
        return resumed

    def held(self, slot: Slot) -> DigestVerifier:
        """What the slot already holds, hashed: where its download starts."""
        found = self._held.get(slot.digest)
        if found is None or found.size > slot.size:
            return DigestVerifier(slot.digest, slot.size)
        return found.copy()

    def complete(self, slot: Slot) -> bool:
        """Whether the slot held its whole blob, verified, when the partial was taken over."""
        found = self._held.get(slot.digest)
        return found is not None and found.size == slot.size and found.actual == slot.digest

    def record(self, slot: Slot, written: int) -> None:
        """``written`` bytes of the slot are in the file; saved every few MiB (any thread)."""
        with self._lock:
            if not self._open:
                return
            self._written[slot.digest.hex] = written
            last = self._recorded.get(slot.digest.hex, 0)
            if written - last >= PROGRESS_EVERY_BYTES or written == slot.size:
                self._save()

    def reader(self) -> int:
        """A new descriptor of the file for reading, wherever it now is (partial or final)."""
        with self._lock:
            return open_regular(self.path)

    def install(self) -> None:
        """Rename the partial to the final name (every slot is verified); release it."""
        with self._lock:
            os.replace(self.path, self.final)
            _unlink(_progress_path(self.path))
            self.path = self.final
            self._open = False
            os.close(self.fd)
        _drop(self._stale, remove=True)

    def abandon(self, *, remove: bool) -> None:
        """Give the partial up: kept (with its progress) for the next run to resume, or
        removed when it cannot be written, or holds nothing worth keeping."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            if remove or not any(self._written.values()):
                _unlink(self.path)
                _unlink(_progress_path(self.path))
            else:
                self._save()
            os.close(self.fd)
        _drop(self._stale, remove=False)

    def _save(self) -> None:
        """Write the progress file anew (the caller holds the lock, or is alone)."""
        document = {"layout": self.plan.key, "written": dict(self._written)}
        target = _progress_path(self.path)
        temporary = temporary_name(target)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            data = json.dumps(document).encode()
            write_at(fd, 0, [data], len(data))
        finally:
            os.close(fd)
        os.replace(temporary, target)
        self._recorded = dict(self._written)


def _allocate(fd: int, size: int) -> None:
    """Reserve the whole archive on disk now, so a full disk fails it before any download."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(fd, size)


def _leftovers(final: Path) -> list[Path]:
    """The partial archives earlier runs left for ``final``: names ``temporary_name`` makes
    for it, and nothing else."""
    pattern = re.compile(re.escape(temporary_name(final).name[:-21]) + r"\.[0-9a-f]{12}\.partial")
    try:
        with os.scandir(final.parent) as entries:
            names = [entry.name for entry in entries if pattern.fullmatch(entry.name)]
    except FileNotFoundError:
        return []
    return [final.with_name(name) for name in sorted(names)]


def _claim_all(final: Path) -> tuple[Path | None, list[tuple[Path, int]]]:
    """Lock every leftover partial of ``final``; the first that another run holds stops it
    (with what was locked so far). A leftover that is not a regular file of this user's with
    one name is left alone, never written through."""
    claimed: list[tuple[Path, int]] = []
    for path in _leftovers(final):
        try:
            fd = open_regular(path, os.O_RDWR)
        except (OSError, OutputError):  # gone, or not a regular file
            continue
        found = os.fstat(fd)
        if found.st_nlink != 1 or found.st_uid != os.geteuid() or not stat.S_ISREG(found.st_mode):
            os.close(fd)
            continue
        if not try_lock(fd):
            os.close(fd)
            return path, claimed
        claimed.append((path, fd))
    return None, claimed


def _wait_for(path: Path, stop: threading.Event | None) -> bool:
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


def _progress_path(partial: Path) -> Path:
    return partial.with_name(partial.name + PROGRESS_SUFFIX)


def _progress(partial: Path, key: str) -> dict[str, int] | None:
    """The bytes written per slot that the leftover's progress file records for layout
    ``key``; None when it has none, or records another layout."""
    try:
        with os.fdopen(open_regular(_progress_path(partial)), "rb") as handle:
            document = json.loads(handle.read(MAX_PROGRESS_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("layout") != key:
        return None
    written = document.get("written")
    if not isinstance(written, dict):
        return None
    return {k: v for k, v in written.items() if isinstance(k, str) and type(v) is int and v >= 0}


def _drop(leftovers: list[tuple[Path, int]], *, remove: bool) -> None:
    """Release leftovers of other layouts; removed once the archive they were is replaced."""
    for path, fd in leftovers:
        if remove:
            _unlink(path)
            _unlink(_progress_path(path))
        os.close(fd)
    leftovers.clear()


def _unlink(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
