"""Images to push, read out of archives and OCI layouts where they sit.

A push source is anything with an OCI ``index.json``: an OCI layout directory (bulkpull's
``--oci-layout``, skopeo's ``oci:``), a per-image archive or a bundle of bulkpull's, an OCI
archive of skopeo (``oci-archive:``), ``ctr export`` or Docker 25+ ``docker save``. Its
``index.json`` names the images; its ``blobs/sha256/`` hold their exact bytes. A tar is read
in place: its headers are read once to learn where each blob's bytes start, and uploads stream
them from there (nothing is extracted). A compressed tar cannot be read that way and is refused,
as is a docker archive without ``index.json`` (``docker save`` before 25, skopeo's
``docker-archive:``): it holds no registry manifest, only one a loader would make up, so its
digests could not be kept. A bundle split into volumes is read across them where they sit, from
any of its names (``volumes.find_volumes``): a blob's place may then span two volumes.

Everything here reads files and is meant for a worker thread. Imports ``digest``, ``errors``,
``jsondoc``, ``manifest``, ``files``, ``contents`` (the annotations that name an image),
``delta`` (a delta's record), ``layout`` (the largest index) and ``volumes``.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, ContentError, InvalidReferenceError, SourceError
from bulkpull.files import open_regular
from bulkpull.jsondoc import load_object
from bulkpull.manifest import Descriptor, parse_descriptor
from bulkpull.output.contents import CONTAINERD_NAME, DELTA_MEMBER, OCI_REF_NAME
from bulkpull.output.delta import MAX_DELTA_BYTES, Delta, parse_delta, read_layout_delta
from bulkpull.output.layout import MAX_INDEX_BYTES
from bulkpull.output.volumes import VolumeSet, extents, find_volumes, joined

_BLOB_DIRECTORY = "blobs/sha256/"
_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_MAX_LINK_HOPS = 8


@dataclass(frozen=True, slots=True)
class BlobPlace:
    """Where a blob's bytes are: ``size`` of them in ``path`` from ``offset``. In a split
    bundle ``path`` is the bundle's name, ``offset`` counts over its ``volumes`` (each volume's
    path and size), and :meth:`extents` says which files hold the bytes."""

    path: Path
    offset: int
    size: int
    volumes: tuple[tuple[Path, int], ...] = ()

    def extents(self, start: int = 0, length: int | None = None) -> list[tuple[Path, int, int]]:
        """Where ``length`` bytes of the blob from ``start`` are (all the rest when None):
        (file, offset in it, length), one per file they are in."""
        size = self.size - start if length is None else length
        if not self.volumes:
            return [(self.path, self.offset + start, size)]
        paths, sizes = zip(*self.volumes, strict=True)
        return extents(sizes, paths, self.offset + start, size)

    def in_one_file(self) -> BlobPlace | None:
        """The same place as one file's (``path`` that file), when one file holds it all."""
        found = self.extents()
        if len(found) != 1:
            return None
        path, offset, size = found[0]
        return BlobPlace(path, offset, size)


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """One ``index.json`` entry: its position, the name its annotations give it (None when
    they give none) and what it points at."""

    position: int
    name: str | None
    descriptor: Descriptor


@dataclass(frozen=True)
class Source:
    """An archive or layout opened for a push: its entries, and where its blobs are.

    A layout's blobs are found when asked for (a directory may hold thousands); a tar's are
    all known from the one pass over its headers.
    """

    path: Path
    entries: tuple[SourceEntry, ...]
    _members: dict[str, BlobPlace] = field(default_factory=dict, repr=False)
    volumes: VolumeSet | None = None
    delta: Delta | None = None
    """A delta's record (``bulkpull-delta.json``): the blobs it expects at the target."""

    def place(self, digest: Digest) -> BlobPlace | None:
        """Where the blob is in this source, or None when it is not here."""
        if self._members:
            return self._members.get(_BLOB_DIRECTORY + digest.hex)
        path = self.path / "blobs" / "sha256" / digest.hex
        try:
            found = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        return BlobPlace(path, 0, found.st_size) if stat.S_ISREG(found.st_mode) else None

    def blobs(self) -> dict[Digest, BlobPlace]:
        """Every blob a tar holds, by digest (a layout's are found only when asked for)."""
        found = {}
        for name, place in self._members.items():
            with suppress(InvalidReferenceError):  # not named as a blob of ours
                found[Digest(name.removeprefix(_BLOB_DIRECTORY))] = place
        return found

    def read(self, digest: Digest, limit: int) -> bytes | None:
        """A small blob's bytes (a manifest), checked against ``digest``; None when it is not
        here. Larger than ``limit`` or not what its name says is a :class:`ContentError`."""
        place = self.place(digest)
        if place is None:
            return None
        if place.size > limit:
            raise ContentError(f"{self.path}: blob {digest} is {place.size} bytes, too large")
        data = _read_at(place)
        if Digest.of(data) != digest:
            raise ContentError(f"{self.path}: blob {digest} holds other bytes")
        return data


def read_source(path: Path) -> Source:
    """Open ``path`` for a push: an OCI layout directory or an uncompressed tar with an
    ``index.json``. :class:`SourceError` names what is wrong with anything else."""
    path = _followed(path)
    try:
        if path.is_dir():
            raw = _read_file(path / "index.json", path)
            return Source(path, _entries(raw, path), delta=read_layout_delta(path))
        volumes = find_volumes(path)
        if volumes is not None:
            return _read_volumes(volumes, path)
        with os.fdopen(open_regular(path), "rb") as handle:
            members, index, delta = _read_tar(handle, path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except ContentError as exc:  # a delta's record that is not one
        raise SourceError(str(exc)) from None
    return Source(path, _entries(index, path), members, delta=delta)


def _followed(path: Path) -> Path:
    """The file a named link leads to (``current.tar`` -> this month's bundle), as ``docker
    load`` and ``skopeo`` follow it: what the user named is read from where it is, and only
    the files inside it (a layout's blobs) are refused as links."""
    return path.resolve() if path.is_symlink() else path


def _read_file(path: Path, source: Path) -> bytes:
    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            data = handle.read(MAX_INDEX_BYTES + 1)
    except FileNotFoundError:
        raise SourceError(
            f"{source}: a directory without index.json, so no OCI image layout"
        ) from None
    if len(data) > MAX_INDEX_BYTES:
        raise SourceError(f"{path}: larger than {MAX_INDEX_BYTES} bytes")
    return data


def _read_volumes(volumes: VolumeSet, path: Path) -> Source:
    """A split bundle read across its volumes: each blob's place counted over them."""
    spread = volumes.open()
    with joined(spread) as handle:
        members, index, delta = _read_tar(handle, volumes.final)
    held = tuple(zip(volumes.paths, spread.sizes, strict=True))
    placed = {name: replace(place, volumes=held) for name, place in members.items()}
    return Source(path, _entries(index, path), placed, volumes, delta)


def _read_tar(handle: BinaryIO, path: Path) -> tuple[dict[str, BlobPlace], bytes, Delta | None]:
    """Every blob's place in the tar open as ``handle``, its ``index.json``, and a delta's
    record."""
    _refuse_compressed(handle.read(8), path)
    handle.seek(0)
    places, links = _scan(handle, path)
    index = places.get("index.json")
    if index is None:
        raise SourceError(_no_index(path, docker="manifest.json" in places))
    handle.seek(index.offset)
    raw = handle.read(min(index.size, MAX_INDEX_BYTES + 1))
    record = places.get(DELTA_MEMBER)
    delta = None
    if record is not None:
        handle.seek(record.offset)
        data = handle.read(min(record.size, MAX_DELTA_BYTES + 1))
        delta = parse_delta(data, f"{path}: {DELTA_MEMBER}")
    for name, target in links.items():
        resolved = _follow(target, places, links)
        if resolved is not None:
            places[name] = resolved
    return {name: place for name, place in places.items() if _is_blob(name)}, raw, delta


def _scan(handle: BinaryIO, path: Path) -> tuple[dict[str, BlobPlace], dict[str, str]]:
    """One pass over the tar's headers: each regular file's place, each link's target."""
    places: dict[str, BlobPlace] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=handle, mode="r:") as tar:
            for member in tar:
                name = _normalize(member.name)
                if member.isfile():
                    places[name] = BlobPlace(path, member.offset_data, member.size)
                elif member.islnk():
                    links[name] = _normalize(member.linkname)
                elif member.issym():
                    target = posixpath.join(posixpath.dirname(name), member.linkname)
                    links[name] = _normalize(target)
    except tarfile.TarError as exc:
        raise SourceError(f"{path}: not a tar archive or OCI layout ({exc})") from None
    return places, links


def _follow(name: str, places: dict[str, BlobPlace], links: dict[str, str]) -> BlobPlace | None:
    for _ in range(_MAX_LINK_HOPS):
        if name in places:
            return places[name]
        if name not in links:
            return None
        name = links[name]
    return None


def _refuse_compressed(head: bytes, path: Path) -> None:
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            raise SourceError(
                f"{path} is {kind}-compressed: a push streams blobs out of the archive where "
                f"they sit, which a compressed tar does not allow; decompress it first"
            )


def _no_index(path: Path, docker: bool) -> str:
    if docker:
        return (
            f"{path} is a docker archive without index.json (docker save before 25, skopeo's "
            "docker-archive:): it holds no registry manifests, so their digests cannot be "
            "kept; push an OCI archive or layout instead (bulkpull writes both)"
        )
    return f"{path}: no index.json, so neither an OCI archive nor an OCI layout"


def _entries(raw: bytes, path: Path) -> tuple[SourceEntry, ...]:
    where = f"{path}: index.json"
    try:
        document = load_object(raw, MAX_INDEX_BYTES, where)
    except ContentError as exc:
        raise SourceError(str(exc)) from None
    manifests = document.get("manifests")
    if not isinstance(manifests, list):
        raise SourceError(f"{where}: not an OCI index (no manifests list)")
    entries = []
    for position, item in enumerate(manifests):
        try:
            descriptor = parse_descriptor(item, f"manifests[{position}]", where)
        except BulkpullError as exc:
            raise SourceError(str(exc)) from None
        name = descriptor.annotation(CONTAINERD_NAME) or descriptor.annotation(OCI_REF_NAME)
        entries.append(SourceEntry(position, name, descriptor))
    return tuple(entries)


def _read_at(place: BlobPlace) -> bytes:
    parts = []
    for path, offset, size in place.extents():
        with os.fdopen(open_regular(path), "rb") as handle:
            handle.seek(offset)
            parts.append(handle.read(size))
    return b"".join(parts)


def _normalize(name: str) -> str:
    cleaned = posixpath.normpath("/" + name).lstrip("/")
    return "" if cleaned == "." else cleaned


def _is_blob(name: str) -> bool:
    if not name.startswith(_BLOB_DIRECTORY):
        return False
    try:
        Digest(name.removeprefix(_BLOB_DIRECTORY))
    except InvalidReferenceError:
        return False
    return True
