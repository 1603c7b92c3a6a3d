"""File work every writer shares: new and unique temporaries, names never followed, and file
calls kept off the event loop without leaking what a cancelled task opened.

Everything bulkpull puts under a final name (an archive, a bundle, a layout's ``index.json``, a
stored blob, a report) is first written to a temporary made here: in the final name's directory,
with a random part, by ``O_CREAT|O_EXCL|O_NOFOLLOW``. It is therefore always a new file of this
writer's own: two runs racing on one name each write their own file, and a link planted at a
name someone could predict is never written through. It gets its final name by one rename once
complete. Files read back (stored blobs, an archive already at a final name, an index) are
opened with ``O_NOFOLLOW|O_NONBLOCK`` and used only when they are regular files, so a link or a
FIFO at such a name is a clear error instead of a read of some other file or a hang.

Async code reaches files through worker threads only. A small file is read or written whole
in one worker-thread call (:func:`read_file`, :func:`write_atomically`: a run of hundreds of
images does that for each, and the few threads are shared by every download and upload);
``aiofiles`` serves streamed reads and single operations (``aiofiles.os`` in the store);
:func:`opened` guards every open in a thread against cancellation; :func:`run_stoppable`
runs long work (writing an archive) that a cancellation must stop before it installs anything.
Imports only ``errors``.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import secrets
import stat
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

import aiofiles
import aiofiles.os

from bulkpull.errors import OutputError

T = TypeVar("T")

DIRECTORY_LOCK_POLL_SECONDS = 0.05

# The longest file name Linux file systems accept (bytes); temporaries stay within it.
NAME_MAX = 255
_NEVER_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


class NotRegularFileError(OutputError):
    """Something other than a regular file sits where bulkpull reads or writes one."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.path = Path(path)


class Stopped(Exception):
    """Raised by work under :func:`run_stoppable` once it has seen its stop event."""


def check(stop: threading.Event | None) -> None:
    """Raise :class:`Stopped` when ``stop`` is set: called between steps of stoppable work."""
    if stop is not None and stop.is_set():
        raise Stopped


def kind_of(mode: int) -> str | None:
    """What a file of this mode is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "something else")


def output_error(exc: OSError, path: Path | str, doing: str = "write") -> OutputError:
    """The error an image fails with when a file cannot be used: the path, and why."""
    named = exc.filename if isinstance(exc.filename, str) else path
    return OutputError(f"cannot {doing} {named}: {exc.strerror or exc}")


def open_regular(path: Path, flags: int = os.O_RDONLY) -> int:
    """Open an existing regular file without following a link or blocking on a FIFO."""
    try:
        fd = os.open(path, flags | _NEVER_FOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFileError(path, "a symbolic link") from None
        raise
    kind = kind_of(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise NotRegularFileError(path, kind)
    return fd


def open_named(path: Path) -> int:
    """Open a file the user named to be read (an archive to verify): a link is followed, as
    ``tar`` and ``docker load`` follow it, but a FIFO, device or directory at its end is a
    :class:`NotRegularFileError` at once, where a plain open would wait on a FIFO's writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    kind = kind_of(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise NotRegularFileError(path, kind)
    return fd


def open_own(
    path: Path, flags: int, usable: Callable[[os.stat_result], bool], *, take_over: bool = False
) -> int:
    """Open (creating it if need be) the file at a name that is meant to outlive one writer: a
    lock file, a partial blob kept for resuming.

    Such a name cannot be new and unique, so it is opened without following a link and kept
    only when ``usable`` accepts what was opened; a link, a FIFO or a file ``usable`` refuses is
    removed (which never touches what a link points at) and a new file made in its place. With
    ``take_over``, so is a file this user may not open (another user's partial blob).
    """
    refused = (errno.ELOOP, errno.EACCES, errno.EPERM) if take_over else (errno.ELOOP,)
    for _ in range(3):
        try:
            fd = os.open(path, flags | os.O_CREAT | _NEVER_FOLLOW, 0o666)
        except OSError as exc:
            if exc.errno not in refused:
                raise
            _unlink(path)
            continue
        if usable(os.fstat(fd)):
            return fd
        os.close(fd)
        _unlink(path)
    raise OutputError(f"cannot use {path}: something keeps putting another file there")


def _unlink(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


@contextmanager
def locked_directory(directory: Path, stop: threading.Event | None) -> Iterator[None]:
    """Hold an ``flock`` on ``directory`` itself (no lock file to leave behind), waiting while
    another process holds it; ``stop`` is looked at while waiting. Runs in a worker thread."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while not try_lock(fd):
            check(stop)
            time.sleep(DIRECTORY_LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)


def try_lock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` if no other process holds one; whether it did."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def names_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, nor replaced)."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def temporary_name(final: Path) -> Path:
    """``NAME.<random>.partial`` next to ``final``, ``NAME`` shortened so the whole fits."""
    suffix = f".{secrets.token_hex(6)}.partial"
    stem = os.fsencode(final.name)[: NAME_MAX - len(suffix)]
    return final.with_name(os.fsdecode(stem) + suffix)


class Temporary:
    """A new file next to ``final``; :meth:`install` renames it to ``final``, and leaving the
    ``with`` block without that removes it, so nothing half written stays behind."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.path = temporary_name(final)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NEVER_FOLLOW, 0o666)
        self.file: BinaryIO = os.fdopen(fd, "wb", buffering=0)

    def __enter__(self) -> Temporary:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.file.close()
        _unlink(self.path)  # nothing there once installed

    def install(self) -> None:
        self.file.close()
        os.replace(self.path, self.final)


async def _remove(path: Path) -> None:
    with suppress(FileNotFoundError):
        await aiofiles.os.unlink(path)


async def remove(path: Path) -> None:
    """Remove ``path`` if it is there, even when the task is cancelled meanwhile."""
    await shielded(_remove(path))


async def _wait_out(future: asyncio.Future[T]) -> bool:
    """Wait until ``future`` is done whatever cancellations arrive; whether one did."""
    interrupted = False
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            interrupted = True
    return interrupted


async def shielded(awaitable: Awaitable[T]) -> T:
    """Await to the end even when the task is cancelled meanwhile, then let the cancellation
    through: for steps that must not stop half done (closing a file, removing a lock file)."""
    future = asyncio.ensure_future(awaitable)
    if await _wait_out(future):
        if not future.cancelled():
            future.exception()  # seen, so an error in it is not logged as never retrieved
        raise asyncio.CancelledError
    return future.result()


async def opened(opening: Awaitable[T], close: Callable[[T], Awaitable[object]]) -> T:
    """What ``opening`` opens in a worker thread; a task cancelled while the thread is at it
    would never see that file, and nobody would close it (the leak that keeps ``aiofiles.open``
    from being used bare), so then the open is waited for and what it opened is closed."""
    future = asyncio.ensure_future(opening)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await _wait_out(future)
        if not future.cancelled() and future.exception() is None:
            await shielded(close(future.result()))
        raise


async def run_stoppable(work: Callable[[threading.Event], T]) -> T:
    """Run ``work(stop)`` in a worker thread. A cancellation sets ``stop`` and waits for the work
    to end, so nothing it does happens after its caller has gone.

    Work that has seen ``stop`` raises :class:`Stopped` (cleaning up after itself), and the
    cancellation goes on. Work already past its last check (an archive being renamed into
    place) finishes: its result is returned and the cancellation requested again, so the task
    still ends cancelled, but only after the caller has reported what was installed.
    """
    stop = threading.Event()
    future = asyncio.ensure_future(asyncio.to_thread(work, stop))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        await _wait_out(future)
        if future.cancelled() or future.exception() is not None:
            raise
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return future.result()


def _read_only(path: str, flags: int) -> int:
    return open_regular(Path(path), flags)


async def read_file(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file at ``path`` (a link or FIFO is refused)."""
    return await asyncio.to_thread(_read_regular, path, limit)


def _read_regular(path: Path, limit: int) -> bytes:
    fd = open_regular(path)
    try:
        data = bytearray()
        while len(data) < limit and (chunk := os.read(fd, limit - len(data))):
            data += chunk
        return bytes(data)
    finally:
        os.close(fd)


async def read_chunks(
    path: Path, offset: int = 0, size: int | None = None, chunk_size: int = 1024 * 1024
) -> AsyncIterator[bytes]:
    """The bytes of the regular file at ``path`` from ``offset``: ``size`` of them (all the
    rest when None), in chunks. Fewer than ``size`` is an :class:`OutputError`: the file is not
    what its reader was told.

    Each chunk opens, reads and closes the file, so that no file stays open between two
    chunks: a consumer that stops early (an upload the registry answered before its body was
    sent) leaves nothing open for the garbage collector to find.
    """
    position, remaining = offset, size
    while remaining is None or remaining > 0:
        chunk = await _read_at(
            path, position, chunk_size if remaining is None else min(remaining, chunk_size)
        )
        if not chunk:
            break
        position += len(chunk)
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk
    if remaining:
        raise OutputError(f"{path}: ended {remaining} bytes early")


async def _read_at(path: Path, offset: int, size: int) -> bytes:
    handle = await opened(aiofiles.open(path, "rb", opener=_read_only), lambda f: f.close())
    try:
        if offset:
            await handle.seek(offset)
        return await handle.read(size)
    finally:
        await shielded(handle.close())


async def write_atomically(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` the way bulkpull writes its reports and lock files: into a new,
    unique temporary file next to it (never through a link), renamed over ``path`` once
    complete, so a reader sees the old file or the whole new one and a run racing this one
    writes its own temporary. Nothing is left behind on failure; a cancellation waits for the
    write to end (one worker-thread call), so the file is then either there whole or not."""
    await shielded(asyncio.to_thread(_write_atomically, Path(path), data))


def _write_atomically(final: Path, data: bytes) -> None:
    temporary = temporary_name(final)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NEVER_FOLLOW, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temporary, final)
    except BaseException:
        _unlink(temporary)
        raise
