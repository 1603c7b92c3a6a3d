"""The tar writer: one archive that is an OCI image layout and a docker archive at once.

Every loader reads a different part of the same tar: ``docker load`` (graphdriver store) and
``skopeo``'s ``docker-archive:`` read ``manifest.json``; containerd, Docker's containerd store and
``oci-archive:`` read ``oci-layout`` + ``index.json``. Both point at the same
``blobs/sha256/<hex>`` files, which hold the registry's exact bytes (layers stay compressed; every
loader sniffs the compression and checks diff_ids).

The writer works from verified local files only and never touches the network. Output is
deterministic (fixed mtimes and owners, manifest order, ``manifest.json`` last) so the same images
give the same bytes. It is written to a new temporary file of its own next to the final name and
renamed when complete (``files.Temporary``), so runs racing on one name each install a whole
archive; blobs are read without following links. Work that a cancellation must stop takes a
``stop`` event and checks it between blobs and copy chunks. Imports ``digest``, ``files`` and
``contents``.
"""

from __future__ import annotations

import errno
import os
import tarfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from bulkpull.digest import Digest
from bulkpull.files import Temporary, check, open_regular
from bulkpull.output.contents import (
    OCI_LAYOUT,
    ArchiveImage,
    blob_member,
    docker_manifest,
    index_document,
    json_bytes,
)

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
COPY_CHUNK = 8 * 1024 * 1024
# copy_file_range refuses some pairs of files (other filesystems, old kernels, special files);
# those get a plain copy instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def write_archive(
    path: Path,
    images: Sequence[ArchiveImage],
    blob_path: Callable[[Digest], Path],
    stop: threading.Event | None = None,
) -> int:
    """Write ``images`` to ``path`` atomically; returns the archive's size in bytes.

    A blob shared by several images is stored once. On any error, or once ``stop`` is set
    (``files.Stopped``), the temporary file is removed and nothing appears under ``path``.
    """
    with Temporary(path) as temporary:
        _write_members(temporary.file, images, blob_path, stop)
        size = temporary.file.tell()
        check(stop)
        temporary.install()
    return size


def _write_members(
    out: BinaryIO,
    images: Sequence[ArchiveImage],
    blob_path: Callable[[Digest], Path],
    stop: threading.Event | None,
) -> None:
    _write_bytes(out, "oci-layout", OCI_LAYOUT)
    _write_directory(out, "blobs/")
    _write_directory(out, "blobs/sha256/")
    written: set[Digest] = set()
    for image in images:
        for digest in image.blobs:
            if digest not in written:
                _write_file(out, blob_member(digest), blob_path(digest), stop)
                written.add(digest)
    _write_bytes(out, "index.json", json_bytes(index_document(images)))
    _write_bytes(out, "manifest.json", json_bytes(docker_manifest(images)))
    _finish(out)


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _write_directory(out: BinaryIO, name: str) -> None:
    write_all(out, _header(name, 0, tarfile.DIRTYPE))


def _write_bytes(out: BinaryIO, name: str, data: bytes) -> None:
    write_all(out, _header(name, len(data)) + data + _padding(len(data)))


def _write_file(out: BinaryIO, name: str, source: Path, stop: threading.Event | None) -> None:
    """Copy a stored blob (never through a link) in kernel space where the platform allows."""
    with os.fdopen(open_regular(source), "rb", buffering=0) as src:
        size = os.fstat(src.fileno()).st_size
        write_all(out, _header(name, size))
        _copy(src, out, size, stop)
    write_all(out, _padding(size))


def _copy(src: BinaryIO, out: BinaryIO, size: int, stop: threading.Event | None) -> None:
    """``copy_file_range`` where the kernel and filesystems allow it, else a buffered copy;
    ``stop`` is looked at between chunks, so a cancelled write of a large layer ends soon."""
    remaining = size
    try:
        while remaining:
            check(stop)
            copied = os.copy_file_range(src.fileno(), out.fileno(), min(remaining, COPY_CHUNK))
            if copied == 0:
                raise OSError(f"{src.name}: ended {remaining} bytes early")
            remaining -= copied
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY or remaining != size:
            raise
        while chunk := src.read(COPY_CHUNK):
            check(stop)
            write_all(out, chunk)


def write_all(out: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]


def _finish(out: BinaryIO) -> None:
    """Two zero blocks end a tar; padding to a whole record is what GNU tar and tarfile write."""
    end = out.tell() + 2 * BLOCK
    write_all(out, b"\0" * (2 * BLOCK + (-end % RECORD)))
