"""The content-addressed store on disk: blobs land here verified, or not at all.

A blob streams into ``sha256/<hex>.partial`` while it is hashed and becomes ``sha256/<hex>`` by an
atomic rename only after its size and digest check out, so anything under a final name can be
trusted without reading it again. A partial file outlives its process: the next attempt, or the
next run, re-hashes the bytes it holds and asks the registry only for the rest. Imports ``digest``,
``errors`` and ``files``; the bytes come from a caller-supplied opener, so the store knows no
registry.

Names in the store are never followed. The partial file keeps one fixed name so that the next
run finds it; it is written only by the holder of the blob's lock, opened with ``O_NOFOLLOW``, and
resumed only when it is a regular file of this user's with no other name (a hard link would let a
download write into a file elsewhere). Anything else at that name is removed and a new partial
made. The lock file is the meeting point of processes, so it too has a fixed name, opened the same
way and never written to. Everything else (manifests) is written through a unique temporary.

Which thread does what, and why:

- ``aiofiles.os`` for single metadata steps on the event loop's behalf: the ``stat`` of
  :meth:`BlobStore.has`, ``makedirs``, the ``replace`` that installs a blob, ``unlink``; each is
  one call, so one worker-thread hop is the whole cost.
- ``aiofiles.open`` (through ``files.read_file``/``files.write_atomically``, guarded against the
  cancellation leak) to read manifests and configs and to store manifests: small files, a few
  calls each.
- ``asyncio.to_thread`` for work made of many calls that belong together: opening and re-hashing a
  partial file, and hashing and writing downloads in batches of ``WRITE_BUFFER_BYTES``
  (``_receive``): a hop per network chunk of a few KiB, or an ``aiofiles`` write per chunk, costs
  more than the hashing, and batching is what the benchmarks measured fastest.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import BinaryIO

import aiofiles.os

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.errors import DigestMismatchError, OutputError
from bulkpull.files import (
    open_own,
    opened,
    output_error,
    read_file,
    remove,
    shielded,
    write_atomically,
)

# Bytes gathered before one hash-and-write in a worker thread: a thread hand-off per network
# chunk (often a few KiB) would cost more than the work itself.
WRITE_BUFFER_BYTES = 1024 * 1024
READ_BUFFER_BYTES = 1024 * 1024
# How often a download waits to see whether another process has finished the same blob.
LOCK_POLL_SECONDS = 0.2

BlobOpener = Callable[[int], AbstractAsyncContextManager[tuple[int, AsyncIterator[bytes]]]]
"""Opens a blob's body from an offset; yields the offset the body really starts at."""


class BlobStore:
    """Verified blobs under ``root/sha256/<hex>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._directory = root / "sha256"

    def path(self, digest: Digest) -> Path:
        return self._directory / digest.hex

    async def has(self, digest: Digest) -> bool:
        """Whether the blob is stored: a regular file under its name (a link is not)."""
        try:
            found = await aiofiles.os.stat(self.path(digest), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISREG(found.st_mode)

    async def holds_anything(self) -> bool:
        return await asyncio.to_thread(self._holds_anything)

    def _holds_anything(self) -> bool:
        try:
            with os.scandir(self._directory) as entries:
                return any(entries)
        except OSError:
            return False

    async def put_bytes(self, digest: Digest, data: bytes) -> Path:
        """Store bytes already verified in memory (manifests), atomically."""
        final = self.path(digest)
        if not await self.has(digest):
            try:
                await aiofiles.os.makedirs(self._directory, exist_ok=True)
                # Unique per call: two images of one run may carry the same manifest at once.
                await write_atomically(final, data)
            except OSError as exc:
                raise output_error(exc, final) from exc
        return final

    async def read_small(self, digest: Digest, limit: int) -> bytes | None:
        """A stored blob's bytes when it is here and at most ``limit`` bytes long (manifests,
        configs), else None. The size is looked at before anything is read: a registry may name
        any stored blob, a layer of gigabytes too, as the manifest a tag points at."""
        path = self.path(digest)
        try:
            found = await aiofiles.os.stat(path, follow_symlinks=False)
            if not stat.S_ISREG(found.st_mode) or found.st_size > limit:
                return None
            data = await read_file(path, limit + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise output_error(exc, path, "read") from exc
        return data if len(data) <= limit else None

    async def ingest(
        self,
        digest: Digest,
        size: int,
        opener: BlobOpener,
        what: str,
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Path:
        """Download a blob through ``opener`` unless it is here, resuming a partial file.

        A body that runs past ``size`` is cut off at once rather than read to its end. On a
        digest or size mismatch the partial file is deleted, so a retry starts from zero.
        ``on_bytes`` hears how many bytes each network chunk brought. A file that cannot be
        written fails with an :class:`OutputError` naming it.
        """
        final = self.path(digest)
        if await self.has(digest):
            return final
        try:
            await aiofiles.os.makedirs(self._directory, exist_ok=True)
            async with _exclusive(final.with_name(f"{digest.hex}.lock")):
                if not await self.has(digest):  # another process may have finished it meanwhile
                    await self._fetch(digest, size, opener, what, on_bytes)
        except OSError as exc:
            raise output_error(exc, final) from exc
        return final

    async def _fetch(
        self,
        digest: Digest,
        size: int,
        opener: BlobOpener,
        what: str,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        final = self.path(digest)
        partial = final.with_name(f"{digest.hex}.partial")
        handle, verifier = await opened(
            asyncio.to_thread(_resume, partial, digest, size), _close_resumed
        )
        try:
            if verifier.size < size or size == 0:
                verifier = await _download(handle, partial, verifier, opener, on_bytes)
            try:
                verifier.verify(what)
            except DigestMismatchError:
                await remove(partial)
                raise
            await aiofiles.os.replace(partial, final)
        finally:
            await shielded(_close(handle))


async def _download(
    handle: BinaryIO,
    partial: Path,
    verifier: DigestVerifier,
    opener: BlobOpener,
    on_bytes: Callable[[int], None] | None,
) -> DigestVerifier:
    """Append what the registry sends to the partial file, starting over when it ignores the
    offset asked for; the verifier of what the file then holds. A write that fails (a full
    disk) removes the partial file, so it does not fill the disk further."""
    async with opener(verifier.size) as (start, chunks):
        if start != verifier.size:
            await asyncio.to_thread(_truncate, handle)
            verifier = DigestVerifier(verifier.expected, verifier.expected_size)
        try:
            await _receive(handle, partial, chunks, verifier, on_bytes=on_bytes)
        except OutputError:
            await remove(partial)
            raise
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
        verifier = DigestVerifier(digest, size)
        held = os.fstat(handle.fileno()).st_size
        if held <= size:
            while chunk := handle.read(READ_BUFFER_BYTES):
                verifier.update(chunk)
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
    handle.seek(0)


@asynccontextmanager
async def _exclusive(lock: Path) -> AsyncIterator[None]:
    """Hold ``lock`` (an ``flock`` on a small file) so that two bulkpull processes sharing a
    store never append to one partial file at once; the second waits for the first.

    The holder removes the lock file while it still holds it, so the store keeps only blobs.
    A waiter that then gets the lock of the removed file sees that the name no longer names
    its file and starts over with the file now there, so no two processes ever hold a blob's
    lock at once.
    """
    fd = await _lock(lock)
    try:
        yield
    finally:
        try:
            await remove(lock)
        finally:
            await shielded(asyncio.to_thread(os.close, fd))  # releases the lock


async def _lock(lock: Path) -> int:
    while True:
        fd = await opened(asyncio.to_thread(open_own, lock, os.O_RDONLY, _is_regular), _close_fd)
        try:
            # Polling: the holder is another process, so there is no event to wait on.
            while not _try_lock(fd):  # noqa: ASYNC110
                await asyncio.sleep(LOCK_POLL_SECONDS)
            if await asyncio.to_thread(_names, lock, fd):
                return fd
        except BaseException:
            await shielded(_close_fd(fd))
            raise
        await _close_fd(fd)


async def _close_fd(fd: int) -> None:
    await asyncio.to_thread(os.close, fd)


def _is_regular(found: os.stat_result) -> bool:
    return stat.S_ISREG(found.st_mode)


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def _receive(
    handle: BinaryIO,
    partial: Path,
    chunks: AsyncIterator[bytes],
    verifier: DigestVerifier,
    *,
    on_bytes: Callable[[int], None] | None,
) -> None:
    """Gather chunks into batches, each hashed and written in a worker thread while the next
    batch arrives; at most two batches are held, so memory stays flat whatever the size.

    Chunks are passed on as they came (no copying into one buffer: on a fast link, allocating
    and freeing a megabyte per write costs more than the hashing). Batches land in order, and
    what arrived before a failure or a cancellation is written too, so it can be resumed. The
    file was opened by :meth:`BlobStore._fetch` through ``files.opened``, which closes what a
    worker thread opened for a task cancelled meanwhile.
    """
    batch: list[bytes] = []
    batched = 0
    received = verifier.size
    limit = verifier.expected_size
    writing: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            batch.append(chunk)
            batched += len(chunk)
            received += len(chunk)
            if on_bytes:
                on_bytes(len(chunk))
            if batched >= WRITE_BUFFER_BYTES:
                if writing is not None:
                    await asyncio.shield(writing)  # keep batches in order
                writing = asyncio.ensure_future(
                    asyncio.to_thread(_hash_and_write, handle, partial, verifier, batch)
                )
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
            await shielded(asyncio.to_thread(_hash_and_write, handle, partial, verifier, batch))


def _hash_and_write(
    handle: BinaryIO, partial: Path, verifier: DigestVerifier, chunks: list[bytes]
) -> None:
    """Runs in a worker thread: hashlib and file writes release the GIL for large chunks."""
    for chunk in chunks:
        verifier.update(chunk)
    try:
        handle.writelines(chunks)
    except OSError as exc:
        raise output_error(exc, partial) from exc
