"""The files of an archive or layout as ``verify`` sees them: each one hashed once, the small
JSON ones kept, links resolved.

Archives come from many writers (bulkpull, ``docker save`` old and new, skopeo, containerd), so
nothing about member order is assumed: every regular file is hashed as it streams past, and the
bytes of small files that look like JSON (manifests, configs, ``index.json``, ``manifest.json``,
``repositories``) are kept for the checks, within a total budget so that a hostile archive
cannot fill memory. ``docker save`` writes a layer shared by two images once and links the
second to it, so names resolve through links. Also the JSON reading every check uses: it never
raises on bad or absurdly nested input. Imports ``digest``; reading a layout directory is its
only I/O (tars are read by ``verify_tar``).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bulkpull.digest import Digest
from bulkpull.output.contents import DELTA_MEMBER

CHUNK = 1024 * 1024
# As large as a manifest or config may be (containers/image's limit); containerd allows 20 MiB
# for index.json and manifest.json.
MAX_KEPT_FILE = 20 * 1024 * 1024
MAX_KEPT_TOTAL = 256 * 1024 * 1024
_MAX_LINK_HOPS = 8
# What a compressed layer starts with: gzip, zstd, bzip2, xz. Anything else is read as a tar.
_COMPRESSION_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ\x00")
_LAYOUT_FILES = ("oci-layout", "index.json", DELTA_MEMBER)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One regular file: its size, sha256, first bytes, and its bytes if it was kept."""

    size: int
    sha256: str
    head: bytes
    data: bytes | None

    @property
    def digest(self) -> Digest:
        return Digest(self.sha256)

    @property
    def compressed(self) -> bool:
        return self.head.startswith(_COMPRESSION_MAGIC)


@dataclass
class ArchiveFiles:
    """Every regular file of an archive by normalized name, and its links."""

    budget: int = MAX_KEPT_TOTAL
    """Bytes of small JSON files to keep at most."""
    files: dict[str, FileEntry] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    kept: int = 0
    dropped: list[str] = field(default_factory=list)
    """Small JSON-looking files not kept because the budget was spent."""

    def get(self, name: str) -> FileEntry | None:
        """The file ``name`` names, through links."""
        name = normalize(name)
        for _ in range(_MAX_LINK_HOPS):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                return None
            name = self.links[name]
        return None

    def blob(self, digest: Digest) -> FileEntry | None:
        return self.get(f"blobs/sha256/{digest.hex}")

    def add_file(self, name: str, stream: IO[bytes]) -> None:
        """Hash ``stream`` to its end, keeping its bytes if it is small and looks like JSON."""
        hasher = hashlib.sha256()
        first = chunk = stream.read(CHUNK)
        keep = first.lstrip()[:1] in (b"{", b"[")
        kept = bytearray()
        size = 0
        while chunk:
            hasher.update(chunk)
            size += len(chunk)
            if keep:
                kept += chunk
                keep = size <= MAX_KEPT_FILE
            chunk = stream.read(CHUNK)
        data = self._within_budget(name, bytes(kept)) if keep else None
        self.files[normalize(name)] = FileEntry(size, hasher.hexdigest(), first[:16], data)

    def _within_budget(self, name: str, data: bytes) -> bytes | None:
        if self.kept + len(data) > self.budget:
            self.dropped.append(normalize(name))
            return None
        self.kept += len(data)
        return data

    def add_link(self, name: str, target: str) -> None:
        """``name`` stands for ``target`` (a path from the archive's root)."""
        self.links[normalize(name)] = normalize(target)


def normalize(name: str) -> str:
    """A member name as the archive's root sees it: no ``./``, no leading ``/``."""
    cleaned = posixpath.normpath("/" + name).lstrip("/")
    return "" if cleaned == "." else cleaned


def read_directory(root: Path, budget: int = MAX_KEPT_TOTAL) -> ArchiveFiles:
    """An OCI layout directory: ``oci-layout``, ``index.json`` and everything under ``blobs``."""
    found = ArchiveFiles(budget)
    for name in _LAYOUT_FILES:
        if (root / name).is_file():
            with (root / name).open("rb") as handle:
                found.add_file(name, handle)
    for directory, _, names in os.walk(root / "blobs"):
        for file_name in sorted(names):
            path = Path(directory, file_name)
            if path.is_file():
                with path.open("rb") as handle:
                    found.add_file(path.relative_to(root).as_posix(), handle)
    return found


@dataclass
class Findings:
    """What the checks found: problems (the archive is broken) and notes (it is unusual)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def json(self, data: bytes | None, what: str) -> object:
        """``data`` parsed, or None with the reason noted as a problem; never raises."""
        if data is None:
            self.problems.append(f"{what}: not JSON, or too large to check")
            return None
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, absurd nesting
            self.problems.append(f"{what}: not JSON: {str(exc)[:200]}")
            return None
