"""Where a blob is to land, and where it did: the two ends of a copy that never goes through
the network twice. Imports ``files``, ``ranges``, ``store`` and ``output``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bulkpull.digest import DigestVerifier
from bulkpull.files import open_regular, read_chunks
from bulkpull.output import ArchiveFile, Slot
from bulkpull.ranges import Positional, close, copy_range, duplicate, read_at, write_at
from bulkpull.store import BlobOpener, BlobStore, Region


@dataclass(frozen=True, slots=True)
class Landing:
    """Where a blob's verified bytes are: in memory (``data``), in a stored blob file
    (``path``), or at ``offset`` of an archive this run fills (``archive``). An old archive's
    blob is a landing too, one that is verified again as it is read (``file_opener``)."""

    size: int
    data: bytes | None = None
    path: Path | None = None
    archive: ArchiveFile | None = None
    offset: int = 0

    def _open(self) -> Positional:
        if self.archive is not None:
            return self.archive.reader()
        assert self.path is not None
        return open_regular(self.path)

    def copy_into(self, fd: Positional, offset: int) -> None:
        """Copy the blob to ``offset`` of the file open as ``fd`` (in a worker thread)."""
        if self.data is not None:
            write_at(fd, offset, [self.data], self.size)
            return
        source = self._open()
        try:
            copy_range(source, self.offset, fd, offset, self.size)
        finally:
            close(source)

    def read(self) -> bytes:
        """The blob's bytes (a small one: a config), in a worker thread."""
        if self.data is not None:
            return self.data
        source = self._open()
        try:
            return read_at(source, self.offset, self.size)
        finally:
            close(source)


@dataclass(slots=True)
class Target:
    """Where a download is to land: a slot of an archive being filled (``archive``), a blob
    store (``store``, else the run's own), or memory (neither)."""

    archive: ArchiveFile | None = None
    slot: Slot | None = None
    store: BlobStore | None = None
    region: Region | None = None
    verifier: DigestVerifier | None = None
    complete: bool = False
    _closed: bool = field(default=False, repr=False)

    def opened(self) -> Target:
        """The target as its download holds it: a descriptor of the archive of its own (the
        image may give the archive up while others still wait for the download), and what the
        slot already holds."""
        if self.archive is None or self.slot is None:
            return self
        archive, slot = self.archive, self.slot
        region = Region(duplicate(archive.fd), slot.offset, slot.size, archive.path)
        complete = archive.complete(slot)
        return Target(archive, slot, None, region, archive.held(slot), complete)

    def close(self) -> None:
        if self.region is not None and not self._closed:
            self._closed = True
            close(self.region.fd)

    def restart(self) -> None:
        """What the slot held is of no use: the next attempt starts from its first byte."""
        if self.verifier is not None and self.archive is not None and self.slot is not None:
            self.verifier.restart()
            self.archive.record(self.slot, 0)

    def landing(self) -> Landing:
        assert self.archive is not None
        assert self.slot is not None
        return Landing(self.slot.size, archive=self.archive, offset=self.slot.offset)


def file_opener(found: Landing) -> BlobOpener:
    """Opens a blob's bytes in a file of an earlier run, as a registry's body would be."""
    assert found.path is not None
    path = found.path

    @asynccontextmanager
    async def open_file(offset: int) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        yield offset, read_chunks(path, found.offset + offset, found.size - offset)

    return open_file
