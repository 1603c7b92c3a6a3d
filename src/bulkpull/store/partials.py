"""Partial files, and regions of files: a blob's bytes kept as they arrive, hashed, so that a
broken download resumes. :func:`receive` fills any :class:`Region` (a member of an archive being
filled in place, too); :func:`complete` brings one of the store's partial files to a whole blob.

A blob streams into ``sha256/<hex>.partial`` while it is hashed and is installed under its final
name by one rename only after its size and digest check out. A partial file outlives its process:
the next attempt, or the next run, re-hashes the bytes it holds and asks only for the rest. It
keeps one fixed name so that the next run finds it; it is written only by the holder of the
blob's lock (``locks``), opened with ``O_NOFOLLOW``, and resumed only when it is a regular file
of this user's with no other name (a hard link would let a download write into a file
elsewhere). Anything else at that name is removed and a new partial made.

``asyncio.to_thread`` runs work made of many calls that belong together: opening and re-hashing
a partial file, and hashing and writing downloads in batches of ``WRITE_BUFFER_BYTES``
(``_receive``): a hop per network chunk of a few KiB, or an ``aiofiles`` write per chunk, costs
more than the hashing, and batching is what the benchmarks measured fastest. Imports ``digest``,
``errors``, ``files`` and ``ranges``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiofiles.os

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.errors import DigestMismatchError, OutputError
from bulkpull.files import open_own, opened, output_error, remove, shielded
from bulkpull.ranges import Positional, held_verifier, write_at

# Bytes gathered before one hash-and-write in a worker thread: a thread hand-off per network
# chunk (often a few KiB) would cost more than the work itself.
WRITE_BUFFER_BYTES = 1024 * 1024
READ_BUFFER_BYTES = 1024 * 1024
# One batch is one pwritev call, which takes at most IOV_MAX (1024) buffers.
MAX_BATCH_CHUNKS = 512

BlobOpener = Callable[[int], AbstractAsyncContextManager[tuple[int, AsyncIterator[bytes]]]]
"""Opens a blob's body from an offset; yields the offset the body really starts at."""


@dataclass(frozen=True, slots=True)
class Region:
    """Where one blob's bytes go: ``size`` bytes from ``offset`` of the file open as ``fd``
    (``path`` in messages). A partial file of the store is one region of its own; a member of
    an archive being filled in place is a region of that archive."""

    fd: Positional
    offset: int
    size: int
    path: Path


async def complete(
    partial: Path,
    final: Path,
    digest: Digest,
    size: int,
    opener: BlobOpener,
    what: str,
    on_bytes: Callable[[int], None] | None,
) -> None:
    """Bring ``partial`` to the whole blob through ``opener``, resuming from what it holds,
    and install it as ``final`` once it verifies; a mismatch deletes it, so a retry starts
    from zero. A write that fails (a full disk) removes it too, so it does not fill the disk
    further. The caller holds the blob's lock."""
    handle, verifier = await opened(
        asyncio.to_thread(_resume, partial, digest, size), _close_resumed
    )
    try:
        if verifier.size < size or size == 0:
            region = Region(handle.fileno(), 0, size, partial)
            try:
                verifier = await receive(region, verifier, opener, on_bytes)
            except OutputError:
                await remove(partial)
                raise
            # A body that started over may be shorter than what the file held before.
            await asyncio.to_thread(os.ftruncate, handle.fileno(), min(verifier.size, size))
        try:
            verifier.verify(what)
        except DigestMismatchError:
            await remove(partial)
            raise
        await aiofiles.os.replace(partial, final)
    finally:
        await shielded(_close(handle))


async def receive(
    region: Region,
    verifier: DigestVerifier,
    opener: BlobOpener,
    on_bytes: Callable[[int], None] | None,
    on_written: Callable[[int], None] | None = None,
) -> DigestVerifier:
    """Fill ``region`` with what the registry sends from where ``verifier`` stands (the bytes
    the region already holds, hashed), starting over when it ignores the offset asked for;
    ``verifier`` then stands for what the region holds (also after a failure, so a retry
    resumes from there), and is returned for the caller to check. Nothing is
    written past the region: an overlong body is hashed (so ``verify`` refuses it) but never
    lands on the member after it. ``on_written`` hears, in a worker thread, how many bytes of
    the region are written after each batch."""
    async with opener(verifier.size) as (start, chunks):
        if start != verifier.size:
            verifier.restart()
        await _receive(region, chunks, verifier, on_bytes=on_bytes, on_written=on_written)
    return verifier


async def _close(handle: BinaryIO) -> None:
    await asyncio.to_thread(handle.close)


async def _close_resumed(resumed: tuple[BinaryIO, DigestVerifier]) -> None:
    await _close(resumed[0])


def _resume(partial: Path, digest: Digest, size: int) -> tuple[BinaryIO, DigestVerifier]:
    """The partial file, positioned at its end, and a verifier primed with the bytes it holds;
    emptied first when nothing in it can be used (longer than the blob, or complete but wrong)."""
    # Taken over even when another user's: only the holder of the blob's lock writes it.
    fd = open_own(partial, os.O_RDWR, _resumable, take_over=True)
    handle = os.fdopen(fd, "r+b", buffering=0)
    try:
        held = os.fstat(handle.fileno()).st_size
        verifier = held_verifier(handle.fileno(), 0, held if held <= size else 0, digest, size)
        if held > size or (verifier.size == size and verifier.actual != digest):
            _truncate(handle)
            verifier = DigestVerifier(digest, size)
    except BaseException:
        handle.close()
        raise
    return handle, verifier


def _resumable(found: os.stat_result) -> bool:
    """Only a regular file of ours with one name: appending to anything else would write
    somewhere else than this store."""
    return stat.S_ISREG(found.st_mode) and found.st_nlink == 1 and found.st_uid == os.geteuid()


def _truncate(handle: BinaryIO) -> None:
    handle.truncate(0)


async def _receive(
    region: Region,
    chunks: AsyncIterator[bytes],
    verifier: DigestVerifier,
    *,
    on_bytes: Callable[[int], None] | None,
    on_written: Callable[[int], None] | None,
) -> None:
    """Gather chunks into batches, each hashed and written in a worker thread while the next
    batch arrives; at most two batches are held, so memory stays flat whatever the size.

    Chunks are passed on as they came (no copying into one buffer: on a fast link, allocating
    and freeing a megabyte per write costs more than the hashing). Batches land in order, and
    what arrived before a failure or a cancellation is written too, so it can be resumed. The
    file was opened through ``files.opened``, which closes what a worker thread opened for a
    task cancelled meanwhile.
    """
    batch: list[bytes] = []
    batched = 0
    received = verifier.size
    limit = verifier.expected_size
    writing: asyncio.Future[None] | None = None

    def write(chunks: list[bytes]) -> Awaitable[None]:
        return asyncio.to_thread(_hash_and_write, region, verifier, chunks, on_written)

    try:
        async for chunk in chunks:
            batch.append(chunk)
            batched += len(chunk)
            received += len(chunk)
            if on_bytes:
                on_bytes(len(chunk))
            if batched >= WRITE_BUFFER_BYTES or len(batch) >= MAX_BATCH_CHUNKS:
                if writing is not None:
                    await asyncio.shield(writing)  # keep batches in order
                writing = asyncio.ensure_future(write(batch))
                batch, batched = [], 0
            if limit is not None and received > limit:
                break  # longer than promised: stop reading; verify() refuses it
        if writing is not None:
            await asyncio.shield(writing)
    finally:
        if writing is not None and not writing.done():
            # A thread cannot be interrupted: let its write land before the file closes.
            await shielded(asyncio.wait({writing}))
        if writing is None or (not writing.cancelled() and writing.exception() is None):
            await shielded(write(batch))


def _hash_and_write(
    region: Region,
    verifier: DigestVerifier,
    chunks: list[bytes],
    on_written: Callable[[int], None] | None,
) -> None:
    """Runs in a worker thread: hashlib and file writes release the GIL for large chunks."""
    position = verifier.size
    for chunk in chunks:
        verifier.update(chunk)
    try:
        write_at(region.fd, region.offset + position, chunks, region.size - position)
    except OSError as exc:
        raise output_error(exc, region.path) from exc
    if on_written is not None:
        on_written(min(verifier.size, region.size))
