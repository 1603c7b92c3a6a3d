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
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from bulkpull.files import names_file, open_own, opened, shielded, try_lock

# How often a download waits to see whether another process has finished the same blob.
LOCK_POLL_SECONDS = 0.2


@asynccontextmanager
async def exclusive(lock: Path) -> AsyncIterator[None]:
    """Hold ``lock`` (an ``flock`` on a small file) so that two bulkpull processes sharing a
    store never append to one partial file at once; the second waits for the first.

    The holder removes the lock file while it still holds it, so the store keeps only blobs.
    A waiter that then gets the lock of the removed file sees that the name no longer names
    its file and starts over with the file now there, so no two processes ever hold a blob's
    lock at once. A lock nobody else holds costs one worker-thread call to take and one to
    give back: a run takes one for each blob it stores or places.
    """
    fd = await _lock(lock)
    try:
        yield
    finally:
        await shielded(asyncio.to_thread(_release, lock, fd))


async def _lock(lock: Path) -> int:
    while True:
        fd, taken = await opened(asyncio.to_thread(_open_and_take, lock), _close_opened)
        try:
            if taken is None:  # another process holds it: wait for it to let go
                # Polling: the holder is another process, so there is no event to wait on.
                while not try_lock(fd):  # noqa: ASYNC110
                    await asyncio.sleep(LOCK_POLL_SECONDS)
                taken = await asyncio.to_thread(names_file, lock, fd)
            if taken:
                return fd
        except BaseException:
            await shielded(_close_fd(fd))
            raise
        await _close_fd(fd)


def _open_and_take(lock: Path) -> tuple[int, bool | None]:
    """The lock file opened, and whether it was taken and is still the file its name names;
    None: another process holds it. In a worker thread."""
    fd = open_own(lock, os.O_RDONLY, _is_regular)
    try:
        return fd, (names_file(lock, fd) if try_lock(fd) else None)
    except BaseException:
        os.close(fd)
        raise


def _release(lock: Path, fd: int) -> None:
    """Remove the lock file, then let go of it (closing releases the ``flock``)."""
    try:
        with suppress(FileNotFoundError):
            os.unlink(lock)
    finally:
        os.close(fd)


async def _close_opened(opened_lock: tuple[int, bool | None]) -> None:
    await _close_fd(opened_lock[0])


async def _close_fd(fd: int) -> None:
    await asyncio.to_thread(os.close, fd)


def _is_regular(found: os.stat_result) -> bool:
    return stat.S_ISREG(found.st_mode)
