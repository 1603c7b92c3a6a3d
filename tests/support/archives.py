"""Reading the archives the CLI writes, and the reference spelling they use."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def normalize_tagged(reference: str) -> str:
    """``name:tag`` in its fully qualified form (``alpine:3`` → ``docker.io/library/alpine:3``).

    The same rules as distribution/reference's ParseNormalizedNamed, for tagged references only.
    """
    name, colon, tag = reference.rpartition(":")
    if not colon or not name or "/" in tag:
        raise ValueError(f"not a tagged reference: {reference!r}")
    domain, slash, rest = name.partition("/")
    is_domain = "." in domain or ":" in domain or domain == "localhost" or domain != domain.lower()
    if not slash or not is_domain:
        domain, rest = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return f"{domain}/{rest}:{tag}"


def blob_path(digest: str) -> str:
    """Where an archive keeps the blob ``digest``."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"blobs/{algorithm}/{hex_digest}"


@dataclass(frozen=True)
class Archive:
    """One archive, read completely into memory (test archives are small)."""

    path: Path
    members: dict[str, tarfile.TarInfo]
    files: dict[str, bytes]

    @classmethod
    def read(cls, path: Path) -> Archive:
        members: dict[str, tarfile.TarInfo] = {}
        files: dict[str, bytes] = {}
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                members[name] = member
                if member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    files[name] = extracted.read()
        return cls(path, members, files)

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])

    @property
    def manifest_json(self) -> list[dict[str, Any]]:
        """The docker-archive ``manifest.json`` items."""
        items = self.json("manifest.json")
        assert isinstance(items, list), f"{self.path}: manifest.json is not a JSON array"
        return items

    @property
    def repo_tags(self) -> list[str]:
        """All RepoTags of all ``manifest.json`` items."""
        return [tag for item in self.manifest_json for tag in item.get("RepoTags") or []]

    @property
    def normalized_repo_tags(self) -> set[str]:
        return {normalize_tagged(tag) for tag in self.repo_tags}

    def blob(self, digest: str) -> bytes:
        return self.files[blob_path(digest)]

    def has_blob(self, digest: str) -> bool:
        return blob_path(digest) in self.files


def read_member(target: Path, member: str) -> bytes:
    """A file of an output: a member of a tar (archive, bundle) or a file of a layout."""
    if target.is_dir():
        return (target / member).read_bytes()
    with tarfile.open(target) as tar:
        extracted = tar.extractfile(member)
        assert extracted is not None, f"{target}: {member} is not a file"
        return extracted.read()


def read_archives(out_dir: Path) -> list[Archive]:
    """Every ``OUT_DIR/*.tar`` (the blob store in a hidden directory is not an archive)."""
    paths = sorted(path for path in out_dir.glob("*.tar") if not path.name.startswith("."))
    return [Archive.read(path) for path in paths]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def recorded_progress(directory: Path, digest: str) -> int:
    """How many bytes of a blob the progress file of a partial archive (or bundle) in
    ``directory`` records as written."""
    for progress in directory.glob("*.partial.progress"):
        try:
            recorded = json.loads(progress.read_bytes())["written"]
        except (OSError, ValueError):
            continue  # replaced while read
        return int(recorded.get(digest.removeprefix("sha256:"), 0))
    return 0
