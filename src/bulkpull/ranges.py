"""Bytes at places inside open files: chunks written at an offset, kernel copies between files,
and re-hashing what a file already holds. Archives are filled slot by slot (each blob at the
offset its member has) and resumed downloads start from what was kept, so these work on file
descriptors and offsets, never on whole files. Blocking calls, for worker threads. Imports
``digest``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from bulkpull.digest import Digest, DigestVerifier

COPY_CHUNK = 8 * 1024 * 1024
# copy_file_range refuses some pairs of files (other file systems, old kernels, special files);
# those get a plain copy instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def write_at(fd: int, offset: int, chunks: Sequence[bytes], room: int) -> None:
    """Write ``chunks`` one after the other at ``offset`` of ``fd``, at most ``room`` bytes of
    them: what lies past that belongs to someone else (the next member of an archive)."""
    views = []
    for chunk in chunks:
        if room <= 0:
            break
        views.append(memoryview(chunk)[:room])
        room -= len(views[-1])
    while views:
        written = os.pwritev(fd, views, offset)
        offset += written
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views and written:
            views[0] = views[0][written:]


def copy_range(source: int, source_offset: int, target: int, target_offset: int, size: int) -> None:
    """Copy ``size`` bytes between two open files at the offsets given, in the kernel
    (``copy_file_range``; file systems that share extents share them instead of copying) where
    the kernel allows it, else through a buffer."""
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


def held_verifier(fd: int, offset: int, held: int, digest: Digest, size: int) -> DigestVerifier:
    """A verifier primed with the first ``held`` bytes at ``offset`` of ``fd``: how a download
    resumes after what an earlier run kept."""
    verifier = DigestVerifier(digest, size)
    position = offset
    while verifier.size < held:
        chunk = os.pread(fd, min(COPY_CHUNK, held - verifier.size), position)
        if not chunk:
            break
        verifier.update(chunk)
        position += len(chunk)
    return verifier
