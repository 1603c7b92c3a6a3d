"""The tar writer: one archive that is an OCI image layout and a docker archive at once.

Every loader reads a different part of the same tar: ``docker load`` (graphdriver store) and
``skopeo``'s ``docker-archive:`` read ``manifest.json``; containerd, Docker's containerd store and
``oci-archive:`` read ``oci-layout`` + ``index.json``. Both point at the same
``blobs/sha256/<hex>`` files, which hold the registry's exact bytes (layers stay compressed; every
loader sniffs the compression and checks diff_ids).

An archive is laid out before its blobs exist (:func:`plan_archive`): the manifests give every
blob's size, so each member's header and offset are known up front, and a blob can be written
straight into its slot as it downloads (``filling``). Output is deterministic (fixed mtimes and
owners, manifest order, ``manifest.json`` last) so the same images give the same bytes however
the blobs arrive. :func:`write_archive` fills a plan from local blob files instead, in a new
temporary file renamed when complete (``files.Temporary``); blobs are read without following
links, and copied in the kernel. Work that a cancellation must stop takes a ``stop`` event and
checks it between blobs. Imports ``digest``, ``files``, ``ranges`` and ``contents``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bulkpull.digest import Digest
from bulkpull.files import Temporary, check, open_regular
from bulkpull.output.contents import (
    DELTA_MEMBER,
    OCI_LAYOUT,
    ArchiveImage,
    blob_member,
    docker_manifest,
    index_document,
    json_bytes,
)
from bulkpull.ranges import Positional, copy_range, write_at

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one blob's bytes go in an archive: ``size`` bytes from ``offset``."""

    digest: Digest
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class ArchivePlan:
    """An archive laid out before a byte of its blobs is there: what is in hand (headers,
    padding, small documents) as ``pieces`` at their offsets, the ``slots`` the blobs fill,
    and the whole ``size``. Sizes come from the manifests, so each slot's place is known
    while the blob is still on the registry."""

    pieces: tuple[tuple[int, bytes], ...]
    slots: tuple[Slot, ...]
    size: int

    @property
    def key(self) -> str:
        """Names this layout: a partial archive of the same key can be resumed."""
        described = hashlib.sha256()
        for offset, data in self.pieces:
            described.update(f"{offset}:{len(data)}:".encode() + data)
        for slot in self.slots:
            described.update(f"{slot.digest}@{slot.offset}+{slot.size};".encode())
        return described.hexdigest()


def plan_archive(
    images: Sequence[ArchiveImage],
    sizes: Mapping[Digest, int],
    inline: Mapping[Digest, bytes],
    delta: bytes | None = None,
) -> ArchivePlan:
    """The layout of the archive holding ``images``: blobs in manifest order, each once;
    those of ``inline`` (manifests, configs) written from memory, the others (``sizes``) left
    as slots to fill. Member order and headers are fixed, so the same images give the same
    bytes however the blobs arrive. A delta (its record is ``delta``) has no
    ``manifest.json``: ``docker load`` could not use it, and should say so at once."""
    plan = _Planner()
    plan.add_bytes("oci-layout", OCI_LAYOUT)
    plan.add_directory("blobs/")
    plan.add_directory("blobs/sha256/")
    for digest in dict.fromkeys(digest for image in images for digest in image.blobs):
        if digest in inline:
            plan.add_bytes(blob_member(digest), inline[digest])
        else:
            plan.add_slot(digest, sizes[digest])
    if delta is not None:
        plan.add_bytes(DELTA_MEMBER, delta)
    plan.add_bytes("index.json", json_bytes(index_document(images)))
    if delta is None:
        plan.add_bytes("manifest.json", json_bytes(docker_manifest(images)))
    return plan.finish()


class _Planner:
    def __init__(self) -> None:
        self.pieces: list[tuple[int, bytes]] = []
        self.slots: list[Slot] = []
        self.offset = 0

    def _piece(self, data: bytes) -> None:
        self.pieces.append((self.offset, data))
        self.offset += len(data)

    def add_directory(self, name: str) -> None:
        self._piece(_header(name, 0, tarfile.DIRTYPE))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._piece(_header(name, len(data)) + data + _padding(len(data)))

    def add_slot(self, digest: Digest, size: int) -> None:
        self._piece(_header(blob_member(digest), size))
        self.slots.append(Slot(digest, self.offset, size))
        self.offset += size + len(_padding(size))  # the padding stays zeros

    def finish(self) -> ArchivePlan:
        """Two zero blocks end a tar; padding to a whole record is what GNU tar and tarfile
        write. Zeros need no writing: the file is made at its full size."""
        end = self.offset + 2 * BLOCK
        return ArchivePlan(tuple(self.pieces), tuple(self.slots), end + (-end % RECORD))


def write_pieces(fd: Positional, plan: ArchivePlan) -> None:
    """Everything of ``plan`` that is in hand, at its place in the file (or volumes) ``fd``."""
    for offset, data in plan.pieces:
        write_at(fd, offset, [data], len(data))


def write_archive(
    path: Path,
    images: Sequence[ArchiveImage],
    blob_path: Callable[[Digest], Path],
    stop: threading.Event | None = None,
) -> int:
    """Write ``images`` to ``path`` atomically from blob files; returns the archive's size.

    A blob shared by several images is stored once. On any error, or once ``stop`` is set
    (``files.Stopped``), the temporary file is removed and nothing appears under ``path``.
    """
    with ExitStack() as sources:
        opened = {}
        for digest in dict.fromkeys(digest for image in images for digest in image.blobs):
            handle = sources.enter_context(os.fdopen(open_regular(blob_path(digest)), "rb"))
            opened[digest] = handle.fileno()
        sizes = {digest: os.fstat(fd).st_size for digest, fd in opened.items()}
        plan = plan_archive(images, sizes, {})
        with Temporary(path) as temporary:
            out = temporary.file.fileno()
            os.ftruncate(out, plan.size)
            write_pieces(out, plan)
            for slot in plan.slots:
                check(stop)
                copy_range(opened[slot.digest], 0, out, slot.offset, slot.size)
            check(stop)
            temporary.install()
    return plan.size


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def write_all(out: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]
