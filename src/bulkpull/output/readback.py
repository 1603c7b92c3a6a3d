"""Reading back what was written: the images an archive at a final name holds, so that a run
knows what it would replace, and the blobs archives already in the outputs hold, so that a run
takes them from there. (A push reads blobs back out of archives and layouts through
``output.sources``.) Imports ``digest``, ``errors``, ``files``, ``sources`` and ``verify``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, OutputError
from bulkpull.files import open_regular, read_chunks
from bulkpull.output.sources import BlobPlace, read_source
from bulkpull.output.verify import archive_digests
from bulkpull.output.volumes import whole_set


class HeldBlobs:
    """The blobs that archives already in the outputs hold (an earlier run's, the archive a
    moved tag replaces): manifests read from there instead of asked for, layers copied from
    there instead of downloaded. Found from tar headers alone (``sources``); whoever uses the
    bytes checks them against their digest (they are hashed as they are read)."""

    def __init__(self) -> None:
        self.found: dict[Digest, BlobPlace] = {}

    def scan(self, archives: Iterable[Path]) -> None:
        """Note the blobs of each of ``archives`` (in a worker thread); one that cannot be
        read as an archive offers nothing."""
        for archive in archives:
            try:
                held = read_source(archive).blobs()
            except (BulkpullError, OSError):
                continue
            for digest, place in held.items():
                self.found.setdefault(digest, place)

    async def read_small(self, digest: Digest, limit: int) -> bytes | None:
        """A held blob's bytes when it is at most ``limit`` long (a manifest), else None."""
        place = self.found.get(digest)
        if place is None or place.size > limit:
            return None
        try:
            return b"".join([chunk async for chunk in read_place(place)])
        except (OSError, OutputError):
            return None


async def read_place(
    place: BlobPlace, start: int = 0, length: int | None = None
) -> AsyncIterator[bytes]:
    """``length`` bytes of a blob from ``start`` (all the rest when None), in chunks, read from
    the files that hold them (a blob of a split bundle may be in two volumes)."""
    for path, offset, size in place.extents(start, length):
        async for chunk in read_chunks(path, offset, size):
            yield chunk


def held_images(path: Path, volume: int | None = None) -> dict[str, Digest]:
    """The images an archive at a final name holds (name → digest); none when nothing, or
    nothing readable, is there. Never follows a link and never waits on a FIFO: anything but
    a regular file at ``path`` is an :class:`OutputError`. With ``volume``, what the volumes
    of ``path`` hold, when they are a whole set of volumes of that size."""
    if volume is not None:
        whole = whole_set(path, volume)
        if whole is None:
            return {}
        with whole as archive:
            return archive_digests(archive)
    try:
        fd = open_regular(path)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as archive:
        return archive_digests(archive)
