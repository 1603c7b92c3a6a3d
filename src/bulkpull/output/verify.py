"""Checking an archive or OCI layout already on disk: every blob re-hashed, both indexes
consistent, every image complete.

``bulkpull verify`` runs it before an archive is carried across an air gap and after; a rerun
uses :func:`archive_digests` to see whether an archive already holds the image it would write.
It reads what other tools write as well as bulkpull's own: OCI layout directories and archives
(skopeo, containerd, Docker 25+ ``docker save``, which is also a docker archive), the older
``docker save`` tars and skopeo's ``docker-archive:`` (see ``verify_docker``). Problems are what
breaks a loader; notes are what is unusual but legal, such as an index whose other platforms
were left behind (``ctr export`` writes those). A bundle split into volumes is checked volume by
volume against its sha256 list first (so that a damaged or missing one is named, and only it
carried again), then read across the volumes like a plain bundle. Imports ``digest``,
``errors``, ``manifest``, ``archive``, ``volumes`` and the ``verify_`` modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, ContentError, SourceError, UnsupportedMediaTypeError
from bulkpull.files import NotRegularFileError
from bulkpull.manifest import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_LAYER,
    IMAGE_CONFIG_TYPES,
    OCI_LAYER,
    OCI_NONDISTRIBUTABLE_LAYER,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_config,
    parse_descriptor,
    parse_manifest,
)
from bulkpull.output.contents import (
    CONTAINERD_NAME,
    DELTA_MEMBER,
    OCI_REF_NAME,
    REFERRER_OF,
    ExpectedBlob,
    referrer_key,
)
from bulkpull.output.delta import Delta, parse_delta
from bulkpull.output.verify_docker import check_docker_manifest, check_repositories
from bulkpull.output.verify_files import (
    MAX_KEPT_TOTAL,
    ArchiveFiles,
    FileEntry,
    Findings,
    read_directory,
)
from bulkpull.output.verify_tar import READ_ERRORS, read_member, read_tar
from bulkpull.output.volumes import VolumeSet, find_volumes, joined

_HEX = re.compile(r"[a-f0-9]{64}")
# Layers stored as plain tars: their digest is their diff_id.
_UNCOMPRESSED_LAYER_TYPES = frozenset(
    {DOCKER_LAYER, DOCKER_FOREIGN_LAYER, OCI_LAYER, OCI_NONDISTRIBUTABLE_LAYER}
)
# Indexes of indexes exist (a few tools nest them), but not deeper than this.
_MAX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One ``index.json`` entry: its name (``io.containerd.image.name``, else the OCI ref
    name; None when it has neither) and what it points at."""

    name: str | None
    descriptor: Descriptor


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """What ``verify`` found: the names the archive holds, every problem and note.

    ``entries`` are its ``index.json`` entries (the referrers carried with images among
    them; ``names`` leaves those out); :meth:`holds` and :meth:`document` look further, for
    checks such as a lock file's digests or signatures.
    """

    path: Path
    names: tuple[str, ...]
    blobs: int
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()
    entries: tuple[ArchiveEntry, ...] = ()
    _files: ArchiveFiles = field(default_factory=ArchiveFiles, repr=False, compare=False)
    expected: tuple[ExpectedBlob, ...] | None = None
    """For a delta (``bulkpull-delta.json``): the blobs it leaves out, which the target of a
    push must hold; None for an archive that carries everything."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def holds(self, digest: Digest) -> bool:
        """Whether the blob ``digest`` is here (its content is checked by the problems)."""
        return self._files.blob(digest) is not None

    def document(self, digest: Digest) -> bytes | None:
        """The blob ``digest`` if it is here and small JSON (a manifest, index or config)."""
        blob = self._files.blob(digest)
        return blob.data if blob is not None and blob.sha256 == digest.hex else None


def archive_digests(archive: Path | IO[bytes]) -> dict[str, Digest]:
    """The ``io.containerd.image.name`` → digest pairs of an archive's ``index.json`` (a path,
    or the archive already open), and the referrers carried with them (``referrer_key``).

    Empty when the file is missing, unreadable or not what bulkpull writes: the caller then
    simply writes it anew.
    """
    try:
        raw = read_member(archive, "index.json")
    except READ_ERRORS:
        return {}
    index = Findings().json(raw, "index.json") if raw is not None else None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    found = {}
    for item in manifests if isinstance(manifests, list) else []:
        try:
            descriptor = parse_descriptor(item, "entry", "index.json")
        except ContentError:
            continue  # not an entry bulkpull would write; the archive is rewritten
        name = descriptor.annotation(CONTAINERD_NAME)
        of = descriptor.annotation(REFERRER_OF)
        if name is not None:
            found[name] = descriptor.digest
        elif of is not None:
            found[referrer_key(of, descriptor.digest)] = descriptor.digest
    return found


def verify_archive(path: Path | str, *, max_json_bytes: int = MAX_KEPT_TOTAL) -> ArchiveCheck:
    """Re-hash every blob of an archive (a tar, plain or compressed) or an OCI layout
    directory, and check ``oci-layout``, ``index.json``, ``manifest.json`` and
    ``repositories`` against what it holds.

    Small JSON files (manifests, configs) are held in memory to be checked, at most
    ``max_json_bytes`` of them, so that a hostile archive cannot exhaust memory; more is a
    problem.
    """
    path = Path(path)
    try:
        if path.is_dir():
            files = read_directory(path, max_json_bytes)
        else:
            volumes = find_volumes(path)
            if volumes is not None:
                return _verify_volumes(path, volumes, max_json_bytes)
            files = read_tar(path, max_json_bytes)
    except (SourceError, NotRegularFileError) as exc:
        return ArchiveCheck(path, (), 0, (str(exc),))
    except READ_ERRORS as exc:
        return ArchiveCheck(path, (), 0, (f"cannot read archive: {_read_failure(exc)}",))
    return _Checker(files).run(path)


def _read_failure(exc: BaseException) -> str:
    """Why an archive could not be read, without Python's ``[Errno 2] …: 'PATH'`` repeating
    the path the line already names."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _verify_volumes(path: Path, volumes: VolumeSet, max_json_bytes: int) -> ArchiveCheck:
    """A split bundle: every volume against its sha256 line first (each damaged or missing
    one named), then what the volumes hold together, as for a plain bundle."""
    damaged = tuple(volumes.problems())
    if any(problem.endswith(" is missing") for problem in damaged):
        return ArchiveCheck(path, (), 0, damaged)
    with joined(volumes.open()) as archive:
        check = _Checker(read_tar(archive, max_json_bytes)).run(path)
    return replace(check, problems=damaged + check.problems)


class _Checker:
    def __init__(self, files: ArchiveFiles) -> None:
        self.files = files
        self.found = Findings()
        self.checked: set[Digest] = set()
        self.delta = self._delta()
        self.expected = self.delta.left_out if self.delta is not None else {}

    def _delta(self) -> Delta | None:
        record = self.files.get(DELTA_MEMBER)
        if record is None:
            return None
        if record.data is None:
            self.problem(f"{DELTA_MEMBER}: not JSON, or too large to check")
            return None
        try:
            return parse_delta(record.data, DELTA_MEMBER)
        except ContentError as exc:
            self.problem(str(exc))
            return None

    def problem(self, text: str) -> None:
        self.found.problems.append(text)

    def run(self, path: Path) -> ArchiveCheck:
        blobs = self._check_blob_names()
        entries = self._check_oci_index()
        docker_names = check_docker_manifest(self.files, self.found)
        check_repositories(self.files, self.found)
        images = [e for e in entries if e.descriptor.annotation(REFERRER_OF) is None]
        names = [entry.name or f"{entry.descriptor.digest} (no name)" for entry in images]
        names += docker_names
        if not names:
            self.problem("holds no image: neither index.json nor manifest.json names one")
        if self.files.dropped:
            self.problem(
                f"{len(self.files.dropped)} JSON files were not checked: together with the "
                f"others they exceed {self.files.budget} bytes ({self.files.dropped[0]}, …)"
            )
        return ArchiveCheck(
            path,
            tuple(dict.fromkeys(names)),
            blobs,
            tuple(dict.fromkeys(self.found.problems)),
            tuple(dict.fromkeys(self.found.notes)),
            tuple(entries),
            self.files,
            tuple(self.expected.values()) if self.delta is not None else None,
        )

    def _check_blob_names(self) -> int:
        """Every ``blobs/sha256/<hex>`` must hash to its name; returns how many were checked."""
        checked = 0
        for name, entry in self.files.files.items():
            parts = name.split("/")
            if len(parts) != 3 or parts[0] != "blobs":
                continue
            if parts[1] != "sha256":
                self.found.notes.append(f"blobs/{parts[1]}/: not checked (only sha256 is)")
            elif _HEX.fullmatch(parts[2]):  # not a writer's temporary file
                checked += 1
                if entry.sha256 != parts[2]:
                    self.problem(f"{name}: content hashes to sha256:{entry.sha256}")
        return checked

    def _check_oci_index(self) -> list[ArchiveEntry]:
        layout, index_file = self.files.get("oci-layout"), self.files.get("index.json")
        if layout is None and index_file is None:
            return []
        if layout is None:
            self.problem("index.json without oci-layout: no loader reads it as an OCI layout")
        else:
            self._check_layout_file(layout)
        if index_file is None:
            self.problem("oci-layout without index.json: the layout names no image")
            return []
        index = self.found.json(index_file.data, "index.json")
        if index is None:
            return []
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            self.problem("index.json: not an OCI index (no manifests list)")
            return []
        entries = []
        for position, item in enumerate(manifests):
            try:
                descriptor = parse_descriptor(item, f"manifests[{position}]", "index.json")
            except ContentError as exc:
                self.problem(str(exc))
                continue
            name = descriptor.annotation(CONTAINERD_NAME) or descriptor.annotation(OCI_REF_NAME)
            entries.append(ArchiveEntry(name, descriptor))
            where = f"index.json entry {position}" + (f" ({name})" if name else "")
            self._check_manifest(descriptor, where, 0)
        return entries

    def _check_layout_file(self, layout: FileEntry) -> None:
        document = self.found.json(layout.data, "oci-layout")
        version = document.get("imageLayoutVersion") if isinstance(document, dict) else None
        if document is not None and version != "1.0.0":
            self.problem(f"oci-layout: imageLayoutVersion is {version!r}, not '1.0.0'")

    def _check_manifest(self, descriptor: Descriptor, where: str, depth: int) -> None:
        if descriptor.digest in self.checked:
            return
        self.checked.add(descriptor.digest)
        content = self._manifest(descriptor, where)
        if isinstance(content, ImageIndex):
            self._check_index(content, descriptor.digest, where, depth)
        elif content is not None:
            self._check_image(content, where)

    def _manifest(self, descriptor: Descriptor, where: str) -> ImageManifest | ImageIndex | None:
        blob = self._blob(descriptor, where, "manifest")
        if blob is None:
            return None
        what = f"{where}: manifest {descriptor.digest}"
        if blob.data is None:
            self.problem(f"{what}: not JSON, or too large to check")
            return None
        try:
            return parse_manifest(blob.data, descriptor.media_type, what)
        except UnsupportedMediaTypeError as exc:
            self.found.notes.append(f"{what}: not checked: {exc.media_type} is not an image")
        except ContentError as exc:
            self.problem(str(exc))
        return None

    def _check_index(self, index: ImageIndex, digest: Digest, where: str, depth: int) -> None:
        """Every manifest of the index that is here is checked; one holding none of them
        is broken, one holding some is legal (a layout MAY omit blobs) and noted."""
        if depth >= _MAX_DEPTH:
            self.problem(f"{where}: indexes nested more than {_MAX_DEPTH} deep")
            return
        present = [child for child in index.manifests if self.files.blob(child.digest)]
        listed = len(index.manifests)
        if listed and not present:
            self.problem(f"{where}: none of the {listed} manifests of index {digest} is here")
        elif len(present) < listed:
            self.found.notes.append(
                f"{where}: {len(present)} of the {listed} manifests of index {digest} are here"
            )
        for child in present:
            self._check_manifest(child, f"{where} -> {child.digest}", depth + 1)

    def _check_image(self, content: ImageManifest, where: str) -> None:
        config_blob = self._blob(content.config, where, "config")
        for layer in content.layers:
            if not layer.urls or self.files.blob(layer.digest):  # foreign layers may stay out
                self._blob(layer, where, "layer")
        if config_blob is None or content.config.media_type not in IMAGE_CONFIG_TYPES:
            return
        what = f"{where}: config {content.config.digest}"
        if config_blob.data is None:
            self.problem(f"{what}: not JSON, or too large to check")
            return
        try:
            diff_ids = parse_config(config_blob.data, what).diff_ids
        except BulkpullError as exc:
            self.problem(str(exc))
            return
        if len(diff_ids) != len(content.layers):
            self.problem(
                f"{where}: {len(content.layers)} layers but {len(diff_ids)} rootfs.diff_ids"
            )
            return
        for position, (layer, diff_id) in enumerate(zip(content.layers, diff_ids, strict=True)):
            if layer.media_type in _UNCOMPRESSED_LAYER_TYPES and str(layer.digest) != diff_id:
                self.problem(
                    f"{where}: layer {layer.digest} is an uncompressed tar, but "
                    f"rootfs.diff_ids[{position}] is {diff_id}"
                )

    def _blob(self, descriptor: Descriptor, where: str, kind: str) -> FileEntry | None:
        blob = self.files.blob(descriptor.digest)
        if blob is None and kind != "manifest" and descriptor.digest in self.expected:
            return None  # left out of a delta: the target holds it
        if blob is None:
            self.problem(f"{where}: {kind} {descriptor.digest} is missing")
        elif blob.size != descriptor.size:
            self.problem(
                f"{where}: {kind} {descriptor.digest} is {blob.size} bytes, not {descriptor.size}"
            )
            return None
        return blob
