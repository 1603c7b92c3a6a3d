"""Bytes at places inside open files: chunks written at an offset, kernel copies between files,
and re-hashing what a file already holds. Archives are filled slot by slot (each blob at the
offset its member has) and resumed downloads start from what was kept, so these work on file
descriptors and offsets, never on whole files. A bundle split into volumes is one run of
bytes over several files (:class:`Spread`): every call here takes one where it takes a
descriptor, and finds the file each byte belongs to. Blocking calls, for worker threads.
Imports ``digest``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bulkpull.digest import Digest, DigestVerifier

COPY_CHUNK = 8 * 1024 * 1024
# copy_file_range refuses some pairs of files (other file systems, old kernels, special files);
# those get a plain copy instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def pieces(sizes: Sequence[int], offset: int, size: int) -> Iterator[tuple[int, int, int]]:
    """Where ``size`` bytes from ``offset`` of files of ``sizes`` laid end to end are: (which
    file, offset in it, length). What lies past the end is the last file's."""
    start = 0
    for index, length in enumerate(sizes):
        last = index == len(sizes) - 1
        if size > 0 and (offset < start + length or last):
            inside = offset - start
            taken = size if last else min(size, start + length - offset)
            yield index, inside, taken
            offset += taken
            size -= taken
        start += length


@dataclass(frozen=True, slots=True)
class Spread:
    """Files open as ``fds`` that hold one run of bytes between them, ``sizes`` bytes each: a
    bundle split into volumes, read and written as one file. A member of the bundle may start
    in one volume and end in the next."""

    fds: tuple[int, ...]
    sizes: tuple[int, ...]

    def parts(self, offset: int, size: int) -> Iterator[tuple[int, int, int]]:
        """Where ``size`` bytes from ``offset`` are: (descriptor, offset in it, length)."""
        for index, inside, length in pieces(self.sizes, offset, size):
            yield self.fds[index], inside, length


Positional = int | Spread
"""What bytes are read and written at offsets of: one open file, or a spread of volumes."""


def duplicate(target: Positional) -> Positional:
    """A descriptor (or spread) of its own for the same files: closing it leaves the other."""
    if isinstance(target, Spread):
        return Spread(tuple(os.dup(fd) for fd in target.fds), target.sizes)
    return os.dup(target)


def close(target: Positional) -> None:
    for fd in target.fds if isinstance(target, Spread) else (target,):
        os.close(fd)


def read_at(source: Positional, offset: int, size: int) -> bytes:
    """At most ``size`` bytes from ``offset`` (fewer where the files end)."""
    if isinstance(source, Spread):
        return b"".join(
            read_at(fd, inside, length) for fd, inside, length in source.parts(offset, size)
        )
    return os.pread(source, size, offset)


def write_at(target: Positional, offset: int, chunks: Sequence[bytes], room: int) -> None:
    """Write ``chunks`` one after the other at ``offset`` of ``target``, at most ``room`` bytes
    of them: what lies past that belongs to someone else (the next member of an archive)."""
    views = []
    for chunk in chunks:
        if room <= 0:
            break
        views.append(memoryview(chunk)[:room])
        room -= len(views[-1])
    if isinstance(target, Spread):
        data = memoryview(b"".join(views))
        for fd, inside, length in target.parts(offset, len(data)):
            _write_views(fd, inside, [data[:length]])
            data = data[length:]
        return
    _write_views(target, offset, views)


def _write_views(fd: int, offset: int, views: list[memoryview]) -> None:
    while views:
        written = os.pwritev(fd, views, offset)
        offset += written
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views and written:
            views[0] = views[0][written:]


def copy_range(
    source: Positional, source_offset: int, target: Positional, target_offset: int, size: int
) -> None:
    """Copy ``size`` bytes between two open files (or spreads) at the offsets given, in the
    kernel (``copy_file_range``; file systems that share extents share them instead of
    copying) where the kernel allows it, else through a buffer."""
    done = 0
    if isinstance(source, Spread):
        for fd, inside, length in source.parts(source_offset, size):
            copy_range(fd, inside, target, target_offset + done, length)
            done += length
        return
    if isinstance(target, Spread):
        for fd, inside, length in target.parts(target_offset, size):
            copy_range(source, source_offset + done, fd, inside, length)
            done += length
        return
    _copy_file_range(source, source_offset, target, target_offset, size)


def _copy_file_range(
    source: int, source_offset: int, target: int, target_offset: int, size: int
) -> None:
    done = 0
    try:
        while done < size:
            copied = os.copy_file_range(
                source,
                target,
                min(size - done, COPY_CHUNK),
                source_offset + done,
                target_offset + done,
            )
            if copied == 0:
                raise OSError(errno.EIO, f"source ended {size - done} bytes early")
            done += copied
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY or done:
            raise
    while done < size:
        chunk = os.pread(source, min(size - done, COPY_CHUNK), source_offset + done)
        if not chunk:
            raise OSError(errno.EIO, f"source ended {size - done} bytes early")
        write_at(target, target_offset + done, [chunk], len(chunk))
        done += len(chunk)


def held_verifier(
    fd: Positional, offset: int, held: int, digest: Digest, size: int
) -> DigestVerifier:
    """A verifier primed with the first ``held`` bytes at ``offset`` of ``fd``: how a download
    resumes after what an earlier run kept."""
    verifier = DigestVerifier(digest, size)
    position = offset
    while verifier.size < held:
        chunk = read_at(fd, position, min(COPY_CHUNK, held - verifier.size))
        if not chunk:
            break
        verifier.update(chunk)
        position += len(chunk)
    return verifier
