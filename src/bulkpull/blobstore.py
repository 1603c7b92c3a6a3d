"""The content-addressed store on disk: blobs land here verified, or not at all.

A blob streams into ``sha256/<hex>.partial`` while it is hashed and becomes ``sha256/<hex>`` by an
atomic rename only after its size and digest check out, so anything under a final name can be
trusted without reading it again. A partial file outlives its process: the next attempt, or the
next run, re-hashes the bytes it holds and asks the registry only for the rest. Imports ``digest``
and ``errors``; the bytes come from a caller-supplied opener, so the store knows no registry.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiofiles

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.errors import DigestMismatchError

# Bytes gathered before one write: a thread hand-off per network chunk (often a few KiB) would
# cost more than the write itself.
WRITE_BUFFER_BYTES = 1024 * 1024
READ_BUFFER_BYTES = 1024 * 1024

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

    async def put_bytes(self, digest: Digest, data: bytes) -> Path:
        """Store bytes already verified in memory (manifests), atomically."""
        final = self.path(digest)
        if final.is_file():
            return final
        self._directory.mkdir(parents=True, exist_ok=True)
        # Unique per call: two images of one run may carry the same manifest at the same time.
        temporary = final.with_name(f"{digest.hex}.{secrets.token_hex(8)}.tmp")
        async with aiofiles.open(temporary, "wb") as out:
            await out.write(data)
        os.replace(temporary, final)
        return final

    async def ingest(self, digest: Digest, size: int, opener: BlobOpener, what: str) -> Path:
        """Download a blob through ``opener`` unless it is here, resuming a partial file.

        A body that runs past ``size`` is cut off at once rather than read to its end. On a
        digest or size mismatch the partial file is deleted, so a retry starts from zero.
        """
        final = self.path(digest)
        if final.is_file():
            return final
        self._directory.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f"{digest.hex}.partial")
        verifier = await asyncio.to_thread(_rehash, partial, digest, size)
        async with opener(verifier.size) as (start, chunks):
            if start != verifier.size:
                verifier = DigestVerifier(digest, size)
            await _append(partial, chunks, verifier, truncate=start == 0)
        try:
            verifier.verify(what)
        except DigestMismatchError:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, final)
        return final


async def _append(
    partial: Path, chunks: AsyncIterator[bytes], verifier: DigestVerifier, *, truncate: bool
) -> None:
    """Hash and write chunks; what arrived before a failure is flushed so it can be resumed."""
    buffer = bytearray()
    limit = verifier.expected_size
    async with aiofiles.open(partial, "wb" if truncate else "ab") as out:
        try:
            async for chunk in chunks:
                verifier.update(chunk)
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER_BYTES:
                    await out.write(bytes(buffer))
                    buffer.clear()
                if limit is not None and verifier.size > limit:
                    break  # longer than promised: stop reading; verify() refuses it
        finally:
            if buffer:
                await out.write(bytes(buffer))


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
