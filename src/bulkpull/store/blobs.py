"""The content-addressed store on disk: blobs land here verified, or not at all.

Verified blobs sit under ``sha256/<hex>``, so anything under a final name can be trusted without
reading it again; a download fills a partial file (``partials``) under the blob's lock
(``locks``) and is renamed into place once its size and digest check out. The bytes come from a
caller-supplied opener, so the store knows no registry. Names in the store are never followed;
what is not a partial file or a lock (manifests) is written through a unique temporary.

Which thread does what, and why: ``aiofiles.os`` for single metadata steps on the event loop's
behalf (the ``stat`` of :meth:`BlobStore.has`, ``makedirs``, the ``replace`` that installs a
blob), each one call, so one worker-thread hop is the whole cost; a manifest or config is read
whole in one worker-thread call too (open, size, read, close), since a rerun reads one for each
of hundreds of images at once; ``aiofiles.open`` (through ``files.write_atomically``, guarded
against the cancellation leak) to store manifests. Imports ``digest``, ``errors``, ``files``,
``locks`` and ``partials``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path

import aiofiles.os

from bulkpull.digest import Digest
from bulkpull.files import (
    NotRegularFileError,
    Temporary,
    open_regular,
    output_error,
    write_atomically,
)
from bulkpull.store.locks import exclusive
from bulkpull.store.partials import BlobOpener, complete


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

    async def put_copy(self, digest: Digest, copy: Callable[[int, int], None]) -> Path:
        """Store a blob verified elsewhere (in another store, an archive): ``copy(fd, offset)``
        writes its bytes into a new temporary file, in a worker thread, which is then renamed."""
        final = self.path(digest)
        if not await self.has(digest):
            try:
                await aiofiles.os.makedirs(self._directory, exist_ok=True)
                await asyncio.to_thread(_copy_atomically, final, copy)
            except OSError as exc:
                raise output_error(exc, final) from exc
        return final

    async def read_small(self, digest: Digest, limit: int) -> bytes | None:
        """A stored blob's bytes when it is here and at most ``limit`` bytes long (manifests,
        configs), else None. The size is looked at before anything is read: a registry may name
        any stored blob, a layer of gigabytes too, as the manifest a tag points at."""
        path = self.path(digest)
        try:
            return await asyncio.to_thread(_read_small, path, limit)
        except OSError as exc:
            raise output_error(exc, path, "read") from exc

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
            async with exclusive(final.with_name(f"{digest.hex}.lock")):
                if not await self.has(digest):  # another process may have finished it meanwhile
                    partial = final.with_name(f"{digest.hex}.partial")
                    await complete(partial, final, digest, size, opener, what, on_bytes)
        except OSError as exc:
            raise output_error(exc, final) from exc
        return final


def _read_small(path: Path, limit: int) -> bytes | None:
    """The regular file at ``path`` (never through a link) when it holds at most ``limit``
    bytes; in a worker thread."""
    try:
        fd = open_regular(path)
    except (FileNotFoundError, NotADirectoryError, NotRegularFileError):
        return None
    try:
        if os.fstat(fd).st_size > limit:
            return None
        data = bytearray()
        while chunk := os.read(fd, limit + 1 - len(data)):
            data += chunk
            if len(data) > limit:
                return None
        return bytes(data)
    finally:
        os.close(fd)


def _copy_atomically(final: Path, copy: Callable[[int, int], None]) -> None:
    with Temporary(final) as temporary:
        copy(temporary.file.fileno(), 0)
        temporary.install()
