"""The content-addressed store on disk: blobs land here verified, or not at all.

A blob streams into ``sha256/<hex>.partial`` while it is hashed and becomes ``sha256/<hex>`` by an
atomic rename only after its size and digest check out, so anything under a final name can be
trusted without reading it again. A partial file outlives its process: the next attempt, or the
next run, re-hashes the bytes it holds and asks the registry only for the rest. Imports ``digest``
and ``errors``; the bytes come from a caller-supplied opener, so the store knows no registry.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import BinaryIO

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.errors import DigestMismatchError, OutputError

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

    def has(self, digest: Digest) -> bool:
        return self.path(digest).is_file()

    def holds_anything(self) -> bool:
        try:
            return any(self._directory.iterdir())
        except FileNotFoundError:
            return False

    async def put_bytes(self, digest: Digest, data: bytes) -> Path:
        """Store bytes already verified in memory (manifests), atomically."""
        return await asyncio.to_thread(self._put_bytes, digest, data)

    def _put_bytes(self, digest: Digest, data: bytes) -> Path:
        final = self.path(digest)
        if not final.is_file():
            self._directory.mkdir(parents=True, exist_ok=True)
            # Unique per call: two images of one run may carry the same manifest at once.
            temporary = final.with_name(f"{digest.hex}.{secrets.token_hex(8)}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, final)
        return final

    async def read_small(self, digest: Digest) -> bytes:
        """A stored blob's bytes; only for configs and manifests, never layers."""
        return await asyncio.to_thread(self.path(digest).read_bytes)

    async def read_if_present(self, digest: Digest) -> bytes | None:
        """A stored manifest's bytes, or None when the store does not hold it."""
        return await self.read_small(digest) if self.has(digest) else None

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
        ``on_bytes`` hears how many bytes each network chunk brought.
        """
        final = self.path(digest)
        if final.is_file():
            return final
        self._directory.mkdir(parents=True, exist_ok=True)
        async with _exclusive(final.with_name(f"{digest.hex}.lock")):
            if not final.is_file():  # another process may have finished it meanwhile
                await self._fetch(digest, size, opener, what, on_bytes)
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
        verifier = await asyncio.to_thread(_rehash, partial, digest, size)
        if verifier.size == size and verifier.actual != digest:
            # A complete partial file with wrong bytes: nothing in it can be trusted.
            partial.unlink()
            verifier = DigestVerifier(digest, size)
        if verifier.size < size or size == 0:
            async with opener(verifier.size) as (start, chunks):
                if start != verifier.size:
                    verifier = DigestVerifier(digest, size)
                try:
                    await _receive(
                        partial, chunks, verifier, truncate=start == 0, on_bytes=on_bytes
                    )
                except OSError as exc:
                    partial.unlink(missing_ok=True)
                    raise OutputError(f"cannot write {partial}: {exc}") from exc
        try:
            verifier.verify(what)
        except DigestMismatchError:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, final)


@asynccontextmanager
async def _exclusive(lock: Path) -> AsyncIterator[None]:
    """Hold ``lock`` (an ``flock`` on a small file) so that two bulkpull processes sharing a
    store never append to one partial file at once; the second waits for the first.

    The lock file is removed when the holder is done, so the store keeps only blobs. A
    waiter that locked the removed file still checks for the finished blob first; in the rare
    race where a third process locks a new file while a download failed, two may append to
    one partial file, and verification then refuses the result rather than storing it.
    """
    handle = lock.open("a")
    try:
        # Polling: the holder is another process, so there is no event to wait on.
        while not _try_lock(handle.fileno()):  # noqa: ASYNC110
            await asyncio.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            _remove(lock)
    finally:
        handle.close()  # releases the lock


def _remove(lock: Path) -> None:
    lock.unlink(missing_ok=True)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def _receive(
    partial: Path,
    chunks: AsyncIterator[bytes],
    verifier: DigestVerifier,
    *,
    truncate: bool,
    on_bytes: Callable[[int], None] | None,
) -> None:
    """Gather chunks into batches, each hashed and written in a worker thread while the next
    batch arrives; at most two batches are held, so memory stays flat whatever the size.

    Chunks are passed on as they came (no copying into one buffer: on a fast link, allocating
    and freeing a megabyte per write costs more than the hashing). Batches land in order, and
    what arrived before a failure or a cancellation is written too, so it can be resumed. The
    file is opened and closed here rather than through an async file library: a task cancelled
    while such a library opens a file in a thread would leak the file.
    """
    batch: list[bytes] = []
    batched = 0
    received = verifier.size
    limit = verifier.expected_size
    writing: asyncio.Future[None] | None = None
    with _open_partial(partial, truncate) as handle:
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
                        asyncio.to_thread(_hash_and_write, handle, verifier, batch)
                    )
                    batch, batched = [], 0
                if limit is not None and received > limit:
                    break  # longer than promised: stop reading; verify() refuses it
            if writing is not None:
                await asyncio.shield(writing)
        finally:
            if writing is not None and not writing.done():
                # A thread cannot be interrupted: let its write land before the file closes.
                await asyncio.wait({writing})
            if writing is None or (not writing.cancelled() and writing.exception() is None):
                _hash_and_write(handle, verifier, batch)


def _open_partial(partial: Path, truncate: bool) -> BinaryIO:
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial.open("wb" if truncate else "ab")


def _hash_and_write(handle: BinaryIO, verifier: DigestVerifier, chunks: list[bytes]) -> None:
    """Runs in a worker thread: hashlib and file writes release the GIL for large chunks."""
    for chunk in chunks:
        verifier.update(chunk)
    handle.writelines(chunks)


def _rehash(partial: Path, digest: Digest, size: int) -> DigestVerifier:
    """A verifier primed with the bytes a partial file already holds (none if it is unusable)."""
    verifier = DigestVerifier(digest, size)
    try:
        held = partial.stat().st_size
    except FileNotFoundError:
        return verifier
    if held > size:
        partial.unlink()
        return verifier
    with partial.open("rb") as existing:
        while chunk := existing.read(READ_BUFFER_BYTES):
            verifier.update(chunk)
    return verifier
