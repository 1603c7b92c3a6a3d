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
give the same bytes, and it is written under ``NAME.partial`` and renamed when complete. Imports
only ``digest``; the only module that imports ``tarfile``.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bulkpull.digest import Digest

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
# containerd and Docker's containerd store name images after this annotation...
CONTAINERD_NAME = "io.containerd.image.name"
# ...and skopeo's oci-archive:FILE:REF and podman after this one.
OCI_REF_NAME = "org.opencontainers.image.ref.name"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
COPY_CHUNK = 8 * 1024 * 1024
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
    path: Path, images: Sequence[ArchiveImage], blob_path: Callable[[Digest], Path]
) -> int:
    """Write ``images`` to ``path`` atomically; returns the archive's size in bytes.

    A blob shared by several images is stored once. On any error the partial file is removed
    and nothing appears under ``path``.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb", buffering=0) as out:
            _write_members(out, images, blob_path)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path.stat().st_size


def _write_members(
    out: io.FileIO, images: Sequence[ArchiveImage], blob_path: Callable[[Digest], Path]
) -> None:
    _write_bytes(out, "oci-layout", OCI_LAYOUT)
    _write_directory(out, "blobs/")
    _write_directory(out, "blobs/sha256/")
    written: set[Digest] = set()
    for image in images:
        for digest in image.blobs:
            if digest not in written:
                _write_file(out, blob_member(digest), blob_path(digest))
                written.add(digest)
    _write_bytes(out, "index.json", _json(index_document(images)))
    _write_bytes(out, "manifest.json", _json(docker_manifest(images)))
    _finish(out)


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


def update_layout(directory: Path, images: Sequence[ArchiveImage]) -> None:
    """Add ``images`` to the OCI image layout in ``directory``, whose blobs are in place.

    Entries already there keep their place unless an image of the same ref name replaces
    them. ``index.json`` is replaced atomically, so a reader sees the old or the new one.
    """
    layout = directory / "oci-layout"
    if not layout.exists():
        layout.write_bytes(OCI_LAYOUT)
    index_path = directory / "index.json"
    kept: list[object] = []
    if index_path.exists():
        existing = json.loads(index_path.read_bytes()).get("manifests", [])
        names = {image.ref_name for image in images}
        kept = [entry for entry in existing if _ref_name(entry) not in names]
    partial = index_path.with_name("index.json.partial")
    partial.write_bytes(_json(_index(kept + [image.descriptor for image in images])))
    os.replace(partial, index_path)


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


def _write_directory(out: io.FileIO, name: str) -> None:
    _write_all(out, _header(name, 0, tarfile.DIRTYPE))


def _write_bytes(out: io.FileIO, name: str, data: bytes) -> None:
    _write_all(out, _header(name, len(data)) + data + _padding(len(data)))


def _write_file(out: io.FileIO, name: str, source: Path) -> None:
    """Copy a file in kernel space where the platform allows (``copy_file_range``)."""
    with source.open("rb", buffering=0) as src:
        size = os.fstat(src.fileno()).st_size
        _write_all(out, _header(name, size))
        _copy(src, out, size)
    _write_all(out, _padding(size))


def _copy(src: io.FileIO, out: io.FileIO, size: int) -> None:
    """``copy_file_range`` where the kernel and filesystems allow it, else a buffered copy."""
    remaining = size
    try:
        while remaining:
            copied = os.copy_file_range(src.fileno(), out.fileno(), min(remaining, COPY_CHUNK))
            if copied == 0:
                raise OSError(f"{src.name}: ended {remaining} bytes early")
            remaining -= copied
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY or remaining != size:
            raise
        shutil.copyfileobj(src, out, COPY_CHUNK)


def _write_all(out: io.FileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]


def _finish(out: io.FileIO) -> None:
    """Two zero blocks end a tar; padding to a whole record is what GNU tar and tarfile write."""
    end = out.tell() + 2 * BLOCK
    _write_all(out, b"\0" * (2 * BLOCK + (-end % RECORD)))
