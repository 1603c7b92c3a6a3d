"""Reading tars back, for ``verify`` and for a rerun's "is this archive current?".

An archive is read in one pass as a stream, so a ``docker save | gzip`` file (gzip, bzip2 or xz
around the tar, which ``docker load`` accepts too) costs one decompression, and member order
does not matter. Nothing is extracted to disk. Imports ``files`` and ``verify_files``; with
``archive``, the only modules that import ``tarfile``.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from pathlib import Path
from typing import IO

from bulkpull.files import open_named
from bulkpull.output.verify_files import MAX_KEPT_FILE, MAX_KEPT_TOTAL, ArchiveFiles

# What reading a broken or foreign file can raise besides OSError: a tar that is not one,
# a compressed stream cut short.
READ_ERRORS = (OSError, EOFError, tarfile.TarError)


def read_tar(archive: Path | IO[bytes], budget: int = MAX_KEPT_TOTAL) -> ArchiveFiles:
    """Every regular file of the tar at ``archive`` (a path, or the archive open) hashed, links
    recorded; raises READ_ERRORS.

    ``budget`` bounds the bytes of small JSON files kept for the checks."""
    found = ArchiveFiles(budget)
    if isinstance(archive, Path):
        with os.fdopen(open_named(archive), "rb") as opened:
            return read_tar(opened, budget)
    with tarfile.open(None, "r|*", fileobj=archive) as tar:
        for member in tar:
            if member.isfile():
                stream = tar.extractfile(member)
                assert stream is not None  # a regular file always has a stream
                found.add_file(member.name, stream)
            elif member.issym():
                target = posixpath.join(posixpath.dirname(member.name), member.linkname)
                found.add_link(member.name, target)
            elif member.islnk():
                found.add_link(member.name, member.linkname)
    return found


def read_member(archive: Path | IO[bytes], name: str) -> bytes | None:
    """One small member's bytes (``index.json``), or None when absent; raises READ_ERRORS.

    Random access over an uncompressed tar (a path, or the archive already open): a rerun asks
    this of every archive it would write, and reading only the headers and one member is cheap
    even for large archives.
    """
    with tarfile.open(
        archive if isinstance(archive, Path) else None,
        "r:",
        fileobj=None if isinstance(archive, Path) else archive,
    ) as tar:
        try:
            stream = tar.extractfile(name)
        except KeyError:
            return None
        return stream.read(MAX_KEPT_FILE) if stream is not None else None
