"""The tar writer: one archive that is an OCI image layout and a docker archive at once.

It also adds images to an OCI image layout directory (``update_layout``), the form to carry
to a site that pushes into its own registry.

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
``stop`` event and checks it between blobs and copy chunks. Imports ``digest``, ``errors`` and
``files``; with ``verify`` the only modules that import ``tarfile``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bulkpull.digest import Digest
from bulkpull.errors import OutputError
from bulkpull.files import Temporary, check, open_regular

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
# containerd and Docker's containerd store name images after this annotation...
CONTAINERD_NAME = "io.containerd.image.name"
# ...and skopeo's oci-archive:FILE:REF and podman after this one.
OCI_REF_NAME = "org.opencontainers.image.ref.name"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
COPY_CHUNK = 8 * 1024 * 1024
# An index.json beyond this is not one bulkpull wrote or could rewrite (containerd's limit).
MAX_INDEX_BYTES = 20 * 1024 * 1024
LAYOUT_LOCK_POLL_SECONDS = 0.05
# copy_file_range refuses some pairs of files (other filesystems, old kernels, special files);
# those get a plain copy instead.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


@dataclass(frozen=True, slots=True)
class ImageContent:
    """One platform's image: the manifest and the blobs it names, config first."""

    manifest: Digest
    config: Digest
    layers: tuple[Digest, ...]


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One named image to put in an archive; its blobs must already be in the store.

    ``digest``/``media_type``/``size`` describe what the name points at: a manifest, or an
    index over several ``contents``. ``name`` is the full normalized reference
    (``docker.io/library/alpine:3.19``), which every loader accepts; ``ref_name`` is the OCI
    ref name (the tag in a single-image archive, the full name where tags would collide).
    ``docker load`` sees only the first of ``contents``: it can tag one image per name.
    ``source`` is the registry's index when the name points at something else (one platform's
    manifest, or the index narrowed): carried as a blob nothing refers to, so that the far
    side can check the entry against the index a lock file pins.
    """

    name: str
    ref_name: str
    media_type: str
    digest: Digest
    size: int
    contents: tuple[ImageContent, ...]
    source: Digest | None = None

    @property
    def blobs(self) -> tuple[Digest, ...]:
        found = [self.digest] if self.source is None else [self.digest, self.source]
        for content in self.contents:
            found += [content.manifest, content.config, *content.layers]
        return tuple(dict.fromkeys(found))

    @property
    def descriptor(self) -> dict[str, object]:
        """The ``index.json`` entry: named, and without ``platform``.

        A platform on a top-level entry makes containerd silently skip it on other hosts.
        """
        return {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
            "annotations": {CONTAINERD_NAME: self.name, OCI_REF_NAME: self.ref_name},
        }


def blob_member(digest: Digest) -> str:
    """Where a blob sits in the tar; both the OCI layout and manifest.json use this path."""
    return f"blobs/sha256/{digest.hex}"


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
    _write_bytes(out, "index.json", _json(index_document(images)))
    _write_bytes(out, "manifest.json", _json(docker_manifest(images)))
    _finish(out)


def blob_location(archive: Path, digest: Digest) -> tuple[int, int]:
    """Where a blob's bytes sit in a tar, as offset and size; :class:`OutputError` when the
    archive holds no such blob."""
    with (
        os.fdopen(open_regular(archive), "rb") as handle,
        tarfile.open(fileobj=handle, mode="r:") as tar,
    ):
        try:
            member = tar.getmember(blob_member(digest))
        except KeyError:
            member = None
    if member is None or not member.isfile():
        raise OutputError(f"{archive} holds no blob {digest}")
    return member.offset_data, member.size


def index_document(images: Sequence[ArchiveImage]) -> dict[str, object]:
    """The OCI ``index.json``: one descriptor per named image."""
    return _index([image.descriptor for image in images])


def _index(descriptors: Sequence[object]) -> dict[str, object]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX_MEDIA_TYPE, "manifests": list(descriptors)}


def docker_manifest(images: Sequence[ArchiveImage]) -> list[dict[str, object]]:
    """The docker-archive ``manifest.json``: one item per name, config and layers in order."""
    return [
        {
            "Config": blob_member(image.contents[0].config),
            "RepoTags": [image.name],
            "Layers": [blob_member(layer) for layer in image.contents[0].layers],
        }
        for image in images
    ]


def update_layout(
    directory: Path, images: Sequence[ArchiveImage], stop: threading.Event | None = None
) -> list[dict[str, object]]:
    """Add ``images`` to the OCI image layout in ``directory``, whose blobs are in place; returns
    the entries they displaced (same ref name, another digest).

    Entries already there keep their place unless an image of the same ref name replaces
    them, and the index's other fields are kept. ``index.json`` is replaced atomically, so a
    reader sees the old or the new one, and under a lock on the directory, so two runs adding
    to one layout at once both find their images in it afterwards. An ``index.json`` that is
    not an OCI index is an :class:`OutputError`, and is left as it is.
    """
    with _locked(directory, stop):
        _ensure_oci_layout(directory)
        document, entries = read_layout_index(directory)
        names = {image.ref_name for image in images}
        new = [image.descriptor for image in images]
        kept = [entry for entry in entries if _ref_name(entry) not in names]
        replaced = [entry for entry in entries if entry not in kept and entry not in new]
        with Temporary(directory / "index.json") as temporary:
            _write_all(temporary.file, _json({**document, "manifests": kept + new}))
            check(stop)
            temporary.install()
    return replaced


@contextmanager
def _locked(directory: Path, stop: threading.Event | None) -> Iterator[None]:
    """Hold an ``flock`` on the layout directory itself (no lock file to leave behind)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                check(stop)
                time.sleep(LAYOUT_LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)


def _ensure_oci_layout(directory: Path) -> None:
    path = directory / "oci-layout"
    try:
        found = _read_regular(path, 4096)
    except FileNotFoundError:
        with Temporary(path) as temporary:
            _write_all(temporary.file, OCI_LAYOUT)
            temporary.install()
        return
    if _loads(found, path) != json.loads(OCI_LAYOUT):
        raise OutputError(f"{path}: not an OCI image layout 1.0.0 (it says {found[:80]!r})")


def read_layout_index(directory: Path) -> tuple[dict[str, object], list[dict[str, object]]]:
    """A layout's ``index.json`` and its entries, checked to be an OCI index whose
    ``manifests`` is a list of descriptors (an empty index when there is none yet);
    :class:`OutputError` otherwise."""
    path = directory / "index.json"
    try:
        raw = _read_regular(path, MAX_INDEX_BYTES)
    except FileNotFoundError:
        return _index([]), []
    document = _loads(raw, path)
    if not isinstance(document, dict):
        raise OutputError(f"{path}: not an OCI image index (a JSON {_json_type(document)})")
    manifests = document.get("manifests")
    if not isinstance(manifests, list) or not all(isinstance(e, dict) for e in manifests):
        found = _json_type(manifests) if manifests is not None else "nothing"
        raise OutputError(f'{path}: "manifests" must be a list of descriptors, not {found}')
    return {**_index([]), **document}, manifests


def _read_regular(path: Path, limit: int) -> bytes:
    with os.fdopen(open_regular(path), "rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise OutputError(f"{path}: larger than {limit} bytes")
    return raw


def _loads(raw: bytes, path: Path) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise OutputError(f"{path}: not JSON: {str(exc)[:200]}") from None


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _ref_name(entry: object) -> str | None:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(OCI_REF_NAME) if isinstance(annotations, dict) else None


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


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
    _write_all(out, _header(name, 0, tarfile.DIRTYPE))


def _write_bytes(out: BinaryIO, name: str, data: bytes) -> None:
    _write_all(out, _header(name, len(data)) + data + _padding(len(data)))


def _write_file(out: BinaryIO, name: str, source: Path, stop: threading.Event | None) -> None:
    """Copy a stored blob (never through a link) in kernel space where the platform allows."""
    with os.fdopen(open_regular(source), "rb", buffering=0) as src:
        size = os.fstat(src.fileno()).st_size
        _write_all(out, _header(name, size))
        _copy(src, out, size, stop)
    _write_all(out, _padding(size))


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
            _write_all(out, chunk)


def _write_all(out: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]


def _finish(out: BinaryIO) -> None:
    """Two zero blocks end a tar; padding to a whole record is what GNU tar and tarfile write."""
    end = out.tell() + 2 * BLOCK
    _write_all(out, b"\0" * (2 * BLOCK + (-end % RECORD)))
