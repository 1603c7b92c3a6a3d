"""Checks of what a run wrote: archives against the images, and a target registry's digests."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench_infra import BenchError, Registry
from bench_model import MIB, Pullable


def _archive_images(path: Path) -> list[tuple[str, int]]:
    """(config digest, layer count) of every image in a docker-archive, members checked."""
    try:
        with tarfile.open(path, "r:") as tar:
            names = set(tar.getnames())
            member = tar.extractfile("manifest.json")
            if member is None:
                raise BenchError(f"{path}: manifest.json is not a file")
            entries = json.load(member)
            found = []
            for entry in entries:
                config = tar.extractfile(entry["Config"])
                if config is None:
                    raise BenchError(f"{path}: config {entry['Config']} is not a file")
                digest = "sha256:" + hashlib.sha256(config.read()).hexdigest()
                missing = [layer for layer in entry["Layers"] if layer not in names]
                if missing:
                    raise BenchError(f"{path}: layers missing from the archive: {missing}")
                found.append((digest, len(entry["Layers"])))
            return found
    except (tarfile.TarError, KeyError, ValueError, TypeError) as exc:
        raise BenchError(f"{path}: not a docker-archive: {exc!r}") from exc


def check_archives(out: Path, pullables: Sequence[Pullable], what: str) -> None:
    """Every image of ``pullables`` is in exactly one docker-archive file below ``out``.

    Files in hidden directories (a tool's blob store) are not archives and are skipped.
    """
    expected = {p.image.config.digest: len(p.image.layers) for p in pullables}
    found: dict[str, int] = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if not tarfile.is_tarfile(path):
            continue
        for digest, layers in _archive_images(path):
            if digest in found:
                raise BenchError(f"{what}: image {digest} found in more than one archive")
            found[digest] = layers
    if found != expected:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(d for d in set(found) & set(expected) if found[d] != expected[d])
        raise BenchError(
            f"{what}: archives in {out} do not match the images: missing {missing}, "
            f"unexpected {extra}, wrong layer count {wrong}"
        )


def _hash_members(tar: tarfile.TarFile) -> dict[str, tuple[str, int]]:
    """Digest and size of every file below ``blobs/sha256/`` in an archive."""
    found = {}
    for member in tar.getmembers():
        if not member.isfile() or not member.name.startswith("blobs/sha256/"):
            continue
        stream = tar.extractfile(member)
        if stream is None:
            continue
        digest = hashlib.sha256()
        while chunk := stream.read(MIB):
            digest.update(chunk)
        found[member.name] = ("sha256:" + digest.hexdigest(), member.size)
    return found


def compare_with_pushed(out: Path, pullables: Sequence[Pullable]) -> tuple[int, list[str]]:
    """Hash every blob in bulkpull's archives in ``out`` and compare with what was pushed.

    Returns the number of images whose manifest, config and layers are all in one archive with
    the pushed digests and sizes, and the problems found (a blob whose bytes do not match its
    name, an image missing or incomplete, a leftover ``.partial`` file).
    """
    expected = {p.image.config.digest: p for p in pullables}
    complete: set[str] = set()
    problems: list[str] = []
    for path in sorted(out.glob("*.partial")):
        problems.append(f"{path.name}: unfinished archive left behind")
    for path in sorted(out.glob("*.tar")):
        try:
            with tarfile.open(path, "r:") as tar:
                blobs = _hash_members(tar)
                member = tar.extractfile("manifest.json")
                entries = json.load(member) if member is not None else []
        except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
            problems.append(f"{path.name}: unreadable: {exc!r}")
            continue
        for name, (digest, _) in blobs.items():
            if name.rpartition("/")[2] != digest.removeprefix("sha256:"):
                problems.append(f"{path.name}: {name} holds {digest}")
        for entry in entries:
            config = blobs.get(entry.get("Config", ""))
            pullable = expected.get(config[0]) if config else None
            if pullable is None:
                problems.append(f"{path.name}: an image that was not pushed: {entry}")
                continue
            image = pullable.image
            wrong = [
                blob.digest
                for blob in (image.manifest, *image.blobs)
                if blobs.get(f"blobs/sha256/{blob.digest.removeprefix('sha256:')}")
                != (blob.digest, blob.size)
            ]
            if wrong:
                problems.append(f"{path.name}: blobs missing or different: {wrong}")
            else:
                complete.add(image.config.digest)
    return len(complete), problems


def check_served(registry: Registry, expected: Mapping[str, str], what: str) -> None:
    """Every ``repo:tag`` of ``expected`` is in ``registry`` with its digest (a manifest HEAD)."""
    wrong = []
    for reference, digest in expected.items():
        status, served = registry.served_digest(reference)
        if status != 200 or served != digest:
            wrong.append(f"{reference}: {status} {served or 'no digest'} (expected {digest})")
    if wrong:
        shown = "\n  ".join(wrong[:10])
        raise BenchError(
            f"{what}: {len(wrong)} of {len(expected)} image(s) not in {registry.host} with the "
            f"source digest:\n  {shown}"
        )
