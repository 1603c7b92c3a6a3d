"""Locks between processes that share a store: one writer per partial file.

A blob's lock is an ``flock`` on ``sha256/<hex>.lock``. That file is the meeting point of
processes, so it has a fixed name; it is opened without following a link (``files.open_own``),
used only when it is a regular file, and never written to. Imports ``files``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bulkpull.files import names_file, open_own, opened, remove, shielded, try_lock

# How often a download waits to see whether another process has finished the same blob.
LOCK_POLL_SECONDS = 0.2


@asynccontextmanager
async def exclusive(lock: Path) -> AsyncIterator[None]:
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
            while not try_lock(fd):  # noqa: ASYNC110
                await asyncio.sleep(LOCK_POLL_SECONDS)
            if await asyncio.to_thread(names_file, lock, fd):
                return fd
        except BaseException:
            await shielded(_close_fd(fd))
            raise
        await _close_fd(fd)


async def _close_fd(fd: int) -> None:
    await asyncio.to_thread(os.close, fd)


def _is_regular(found: os.stat_result) -> bool:
    return stat.S_ISREG(found.st_mode)
