"""Checking an archive that is already on disk: every blob re-hashed, both indexes consistent.

``bulkpull verify`` uses it before an archive is carried across an air gap, and a rerun uses
:func:`archive_digests` to see whether an archive already holds the image it would write. It reads
archives from any writer, not only ours, so nothing about member order is assumed. Imports
``digest``, ``errors``, ``reference``, ``manifest`` and ``archive``; reading tars is its only I/O.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bulkpull.archive import CONTAINERD_NAME, OCI_LAYOUT, OCI_REF_NAME
from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError
from bulkpull.manifest import ImageIndex, parse_config, parse_manifest
from bulkpull.reference import parse_reference

_BLOB_PREFIX = "blobs/sha256/"
_CHUNK = 1024 * 1024
# containerd refuses larger index.json/manifest.json files; so do we.
_MAX_INDEX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """What ``verify`` found: the names the archive holds and every problem, if any."""

    path: Path
    names: tuple[str, ...]
    blobs: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def archive_digests(path: Path) -> dict[str, Digest]:
    """The ``io.containerd.image.name`` → digest pairs of an archive's ``index.json``.

    Empty when the file is missing or unreadable: the caller then simply writes it anew.
    """
    try:
        with tarfile.open(path, "r:") as tar:
            index = _read_json(tar, "index.json")
    except (OSError, KeyError, tarfile.TarError, ValueError):
        return {}
    found = {}
    for entry in _entries(index):
        name, digest = _annotations(entry).get(CONTAINERD_NAME), entry.get("digest")
        if isinstance(name, str) and isinstance(digest, str) and digest.startswith("sha256:"):
            try:
                found[name] = Digest.parse(digest)
            except BulkpullError:
                continue  # not a digest we would write; the archive is rewritten
    return found


def verify_archive(path: Path) -> ArchiveCheck:
    """Re-hash every blob and check ``oci-layout``, ``index.json`` and ``manifest.json``."""
    try:
        with tarfile.open(path, "r:") as tar:
            return _Checker(path, tar).run()
    except (OSError, tarfile.TarError) as exc:
        return ArchiveCheck(path, (), 0, (f"cannot read archive: {exc}",))


class _Checker:
    def __init__(self, path: Path, tar: tarfile.TarFile) -> None:
        self.path = path
        self.tar = tar
        self.problems: list[str] = []
        self.blobs: dict[str, tarfile.TarInfo] = {}

    def run(self) -> ArchiveCheck:
        for member in self.tar.getmembers():
            if member.name.startswith(_BLOB_PREFIX) and member.isfile():
                self.blobs[member.name.removeprefix(_BLOB_PREFIX)] = member
                self._rehash(member)
        names = self._check_oci_index() + self._check_docker_manifest()
        if not names:
            self.problems.append("holds no image: neither index.json nor manifest.json names one")
        return ArchiveCheck(
            self.path, tuple(dict.fromkeys(names)), len(self.blobs), tuple(self.problems)
        )

    def _rehash(self, member: tarfile.TarInfo) -> None:
        hasher = hashlib.sha256()
        handle = self.tar.extractfile(member)
        assert handle is not None
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
        expected = member.name.removeprefix(_BLOB_PREFIX)
        if hasher.hexdigest() != expected:
            self.problems.append(f"{member.name}: content hashes to sha256:{hasher.hexdigest()}")

    def _blob(self, digest: str, size: int | None, where: str) -> bytes | None:
        """A small blob's bytes (manifests, configs), or None with a problem noted."""
        hex_digest = digest.removeprefix("sha256:")
        member = self.blobs.get(hex_digest)
        if member is None:
            self.problems.append(f"{where}: blob {digest} is missing")
            return None
        if size is not None and member.size != size:
            self.problems.append(f"{where}: blob {digest} is {member.size} bytes, not {size}")
            return None
        handle = self.tar.extractfile(member)
        assert handle is not None
        return handle.read(_MAX_INDEX_BYTES)

    def _check_oci_index(self) -> list[str]:
        layout = self._member_bytes("oci-layout")
        if layout is None:
            return []
        if json.loads(layout) != json.loads(OCI_LAYOUT):
            self.problems.append("oci-layout: imageLayoutVersion is not 1.0.0")
        index = self._member_json("index.json")
        names = []
        for position, entry in enumerate(_entries(index)):
            where = f"index.json entry {position}"
            annotations = _annotations(entry)
            names.append(str(annotations.get(CONTAINERD_NAME) or annotations.get(OCI_REF_NAME)))
            self._check_manifest(entry, where)
        return names

    def _check_manifest(self, entry: dict[str, object], where: str) -> None:
        digest, size = entry.get("digest"), entry.get("size")
        if not isinstance(digest, str) or not isinstance(size, int):
            self.problems.append(f"{where}: descriptor without digest or size")
            return
        raw = self._blob(digest, size, where)
        if raw is None:
            return
        try:
            content = parse_manifest(raw, str(entry.get("mediaType", "")), where)
        except BulkpullError as exc:
            self.problems.append(str(exc))
            return
        if isinstance(content, ImageIndex):
            for child in content.manifests:
                if not child.is_attestation:
                    self._check_manifest(child.to_json(), f"{where} -> {child.digest}")
            return
        layers = [str(layer.digest) for layer in content.layers]
        self._check_image(str(content.config.digest), layers, where)
        for layer in content.layers:
            if layer.digest.hex not in self.blobs and not layer.urls:
                self.problems.append(f"{where}: layer {layer.digest} is missing")

    def _check_image(self, config_digest: str, layers: list[str], where: str) -> None:
        raw = self._blob(config_digest, None, where)
        if raw is None:
            return
        try:
            config = parse_config(raw, f"{where}: config")
        except BulkpullError as exc:
            self.problems.append(str(exc))
            return
        if len(config.diff_ids) != len(layers):
            self.problems.append(
                f"{where}: {len(layers)} layers but {len(config.diff_ids)} rootfs.diff_ids"
            )

    def _check_docker_manifest(self) -> list[str]:
        items = self._member_json("manifest.json")
        if items is None:
            return []
        if not isinstance(items, list):
            self.problems.append("manifest.json: not a JSON array")
            return []
        names: list[str] = []
        for position, item in enumerate(items):
            where = f"manifest.json item {position}"
            if not isinstance(item, dict):
                self.problems.append(f"{where}: not an object")
                continue
            layers = [str(layer).removeprefix(_BLOB_PREFIX) for layer in item.get("Layers", [])]
            for layer in layers:
                if layer not in self.blobs:
                    self.problems.append(f"{where}: layer {layer} is missing")
            config = str(item.get("Config", "")).removeprefix(_BLOB_PREFIX)
            self._check_image(f"sha256:{config}", layers, where)
            names += self._check_repo_tags(item.get("RepoTags") or [], where)
        return names

    def _check_repo_tags(self, tags: object, where: str) -> list[str]:
        if not isinstance(tags, list):
            self.problems.append(f"{where}: RepoTags is not a list")
            return []
        for tag in tags:
            try:
                tagged = ":" in str(tag).rpartition("/")[2]
                if parse_reference(str(tag)).digest is not None or not tagged:
                    raise ValueError("docker load needs NAME:TAG")
            except ValueError as exc:
                self.problems.append(f"{where}: RepoTags entry {tag!r}: {exc}")
        return [str(tag) for tag in tags]

    def _member_bytes(self, name: str) -> bytes | None:
        try:
            handle = self.tar.extractfile(name)
        except KeyError:
            return None
        return handle.read(_MAX_INDEX_BYTES) if handle else None

    def _member_json(self, name: str) -> object:
        raw = self._member_bytes(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            self.problems.append(f"{name}: not JSON: {exc}")
            return None


def _read_json(tar: tarfile.TarFile, name: str) -> object:
    handle = tar.extractfile(name)
    return json.loads(handle.read(_MAX_INDEX_BYTES)) if handle else None


def _entries(index: object) -> list[dict[str, object]]:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        return []
    return [entry for entry in manifests if isinstance(entry, dict)]


def _annotations(entry: dict[str, object]) -> dict[str, object]:
    annotations = entry.get("annotations")
    return annotations if isinstance(annotations, dict) else {}
