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
A bundle split into volumes (``--split``) is one partial file per volume, each allocated at its
own size and written as one file through a ``ranges.Spread`` (a blob may span two volumes):
volume 1 is a partial as above, named ``NAME.volumes.<random>.partial`` so that ``cat NAME.0*``
never joins it (locked, resumed, its progress recording the volume size too), volume N beside
it as ``NAME.volumes.<random>.partial.00N``. It is resumed only whole; its final names
and sha256 list are given by ``volumes.install_volumes``.

Runs in worker threads (the engine calls it through ``files``' helpers). Imports ``digest``,
``errors``, ``files``, ``ranges``, ``archive`` and ``volumes``.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.files import (
    locked_directory,
    open_regular,
    temporary_name,
    try_lock,
)
from bulkpull.output.archive import ArchivePlan, Slot, write_pieces
from bulkpull.output.leftovers import (
    claim_all,
    close_all,
    drop,
    progress,
    progress_path,
    reopened,
    unlink,
    wait_for,
)
from bulkpull.output.volumes import (
    install_volumes,
    partial_base,
    partial_paths,
    remove_other_form,
    volume_path,
    volume_sizes,
)
from bulkpull.ranges import Positional, Spread, close, held_verifier, write_at

# How often a slot's progress is recorded: at most this many bytes are fetched again after a
# SIGKILL, per download under way.
PROGRESS_EVERY_BYTES = 4 * 1024 * 1024


class ArchiveFile:
    """One archive being filled: its open partial file (or volumes: ``paths``, ``fd`` a
    spread of them), and what each slot already holds."""

    def __init__(self, final: Path, plan: ArchivePlan, paths: list[Path], fd: Positional) -> None:
        self.final = final
        self.plan = plan
        self.paths = paths
        self.fd = fd
        self._held: dict[Digest, DigestVerifier] = {}
        self._written: dict[str, int] = {}
        self._recorded: dict[str, int] = {}
        self._lock = threading.Lock()
        self._open = True
        self._stale: list[tuple[Path, int]] = []

    @property
    def path(self) -> Path:
        """The file the archive is in now (a split one's first volume)."""
        return self.paths[0]

    @property
    def volume(self) -> int | None:
        """The size of its volumes; None when it is one file."""
        return self.fd.sizes[0] if isinstance(self.fd, Spread) else None

    @classmethod
    def open(
        cls,
        final: Path,
        plan: ArchivePlan,
        stop: threading.Event | None = None,
        *,
        done: Callable[[], bool] | None = None,
        volume: int | None = None,
    ) -> ArchiveFile | None:
        """The partial archive for ``final``: a leftover of this layout resumed, else a new one.
        None when another run was writing ``final`` and has installed it meanwhile, or when
        ``done`` says what ``final`` holds already is what is to be written. With ``volume``,
        it is written in volumes of at most that many bytes.

        Leftovers are looked at, and a new partial made, under a lock on the directory, so two
        runs never both start the same archive (``done`` is asked there too: another run may
        have installed it since the caller looked); one that another run holds is waited for
        outside that lock."""
        while True:
            with locked_directory(final.parent, stop):
                if done is not None and done():
                    return None
                busy, claimed = claim_all(final)
                if busy is None:
                    return cls._take(final, plan, claimed, volume)
            drop(claimed, remove=False)
            if wait_for(busy, stop):
                return None

    @classmethod
    def _take(
        cls, final: Path, plan: ArchivePlan, claimed: list[tuple[Path, int]], volume: int | None
    ) -> ArchiveFile:
        """The leftover of this layout among ``claimed`` resumed, else a new partial; the
        other leftovers go once the archive is installed."""
        try:
            for number, (path, fd) in enumerate(claimed):
                resumed = cls._resumed(final, plan, path, fd, volume)
                if resumed is not None:
                    resumed._stale = claimed[:number] + claimed[number + 1 :]
                    return resumed
            made = cls._new(final, plan, volume)
        except BaseException:
            drop(claimed, remove=False)
            raise
        made._stale = claimed
        return made

    @classmethod
    def _new(cls, final: Path, plan: ArchivePlan, volume: int | None) -> ArchiveFile:
        sizes = (plan.size,) if volume is None else volume_sizes(plan.size, volume, final)
        base = final if volume is None else partial_base(final)
        paths = partial_paths(temporary_name(base), len(sizes))
        fds: list[int] = []
        try:
            for path in paths:
                flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fds.append(os.open(path, flags, 0o666))
        except BaseException:
            close_all(paths[: len(fds)], fds)
            raise
        made = cls(final, plan, paths, fds[0] if volume is None else Spread(tuple(fds), sizes))
        try:
            try_lock(fds[0])  # new: no other process knows it yet
            for fd, size in zip(fds, sizes, strict=True):
                _allocate(fd, size)
            write_pieces(made.fd, plan)
            made._save()
        except BaseException:
            made.abandon(remove=True)
            raise
        return made

    @classmethod
    def _resumed(
        cls, final: Path, plan: ArchivePlan, path: Path, fd: int, volume: int | None
    ) -> ArchiveFile | None:
        """The leftover at ``path`` (locked, open as ``fd``) when it has this very layout and
        volumes, its slots re-hashed as far as they were written; else None."""
        written = progress(path, plan.key, volume)
        if written is None:
            return None
        opened = reopened(final, plan, path, fd, volume)
        if opened is None:
            return None
        resumed = cls(final, plan, *opened)
        for slot in plan.slots:
            held = min(written.get(slot.digest.hex, 0), slot.size)
            verifier = held_verifier(resumed.fd, slot.offset, held, slot.digest, slot.size)
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

    def reader(self) -> Positional:
        """A new descriptor of the file for reading, wherever it now is (partial or final)."""
        with self._lock:
            if not isinstance(self.fd, Spread):
                return open_regular(self.path)
            fds: list[int] = []
            try:
                for path in self.paths:
                    fds.append(open_regular(path))
            except BaseException:
                close_all([], fds)
                raise
            return Spread(tuple(fds), self.fd.sizes)

    def install(self, stop: threading.Event | None = None) -> None:
        """Rename the partial to the final name, or the volumes to theirs with their list
        (every slot is verified; ``stop`` is looked at while volumes are hashed); release it."""
        with self._lock:
            split = isinstance(self.fd, Spread)
            if isinstance(self.fd, Spread):
                install_volumes(self.final, self.paths, self.fd, stop or threading.Event())
                finals = [volume_path(self.final, n) for n in range(1, len(self.paths) + 1)]
            else:
                os.replace(self.path, self.final)
                finals = [self.final]
            remove_other_form(self.final, split=split)
            unlink(progress_path(self.paths[0]))
            self.paths = finals
            self._open = False
            close(self.fd)
        drop(self._stale, remove=True)

    def abandon(self, *, remove: bool) -> None:
        """Give the partial up: kept (with its progress) for the next run to resume, or
        removed when it cannot be written, or holds nothing worth keeping."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            if remove or not any(self._written.values()):
                for path in self.paths:
                    unlink(path)
                unlink(progress_path(self.path))
            else:
                self._save()
            close(self.fd)
        drop(self._stale, remove=False)

    def _save(self) -> None:
        """Write the progress file anew (the caller holds the lock, or is alone)."""
        document = {
            "layout": self.plan.key,
            "volume": self.volume,
            "written": dict(self._written),
        }
        target = progress_path(self.path)
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
