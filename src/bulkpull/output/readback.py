"""Reading back what was written: the images an archive holds, and a blob's bytes out of an
archive, a bundle or a layout (what an upload streams to a registry). Imports ``digest``,
``errors``, ``files``, ``contents`` and ``verify``.
"""

from __future__ import annotations

import asyncio
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import OutputError
from bulkpull.files import open_regular, read_chunks
from bulkpull.output.contents import blob_member
from bulkpull.output.verify import archive_digests


def blob_location(archive: Path, digest: Digest) -> tuple[int, int]:
    """Where a blob's bytes sit in a tar, as offset and size; :class:`OutputError` when the
    archive holds no such blob."""
    with (
        os.fdopen(open_regular(archive), "rb") as handle,
        tarfile.open(fileobj=handle, mode="r:") as tar,
    ):
        try:
            member = tar.getmember(blob_member(digest))
        except KeyError:
            member = None
    if member is None or not member.isfile():
        raise OutputError(f"{archive} holds no blob {digest}")
    return member.offset_data, member.size


async def blob_chunks(source: Path, digest: Digest) -> AsyncIterator[bytes]:
    """A blob's bytes, in order, from a per-image archive, a bundle or an OCI layout directory:
    what an upload streams to a registry. Read where they sit (a tar is not unpacked), one
    worker-thread read per chunk."""
    if await asyncio.to_thread(source.is_dir):
        chunks = read_chunks(source / "blobs" / "sha256" / digest.hex)
    else:
        offset, size = await asyncio.to_thread(blob_location, source, digest)
        chunks = read_chunks(source, offset, size)
    async for chunk in chunks:
        yield chunk


def held_images(path: Path) -> dict[str, Digest]:
    """The images an archive at a final name holds (name → digest); none when nothing, or
    nothing readable, is there. Never follows a link and never waits on a FIFO: anything but
    a regular file at ``path`` is an :class:`OutputError`."""
    try:
        fd = open_regular(path)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as archive:
        return archive_digests(archive)
