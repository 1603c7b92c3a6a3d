"""Checking the docker-archive side of a tar: ``manifest.json`` and the legacy ``repositories``.

``docker load`` (graphdriver store) and skopeo's ``docker-archive:`` read it in three layouts:
bulkpull's and Docker 25+'s (config and layers under ``blobs/sha256/``), Docker 24 and older
(``<config hex>.json``, ``<id>/layer.tar``, ``repositories``) and skopeo's (``<config hex>.json``,
``<diff_id hex>.tar``). A config filed under a digest must hash to it (Docker's image ID is that
digest); an uncompressed layer must hash to its ``rootfs.diff_ids`` entry, as ``docker load``
checks; a compressed layer is vouched for by its blob name, where it has one. Imports
``errors``, ``manifest``, ``reference`` and ``verify_files``; no I/O.
"""

from __future__ import annotations

import posixpath
import re

from bulkpull.errors import BulkpullError, InvalidReferenceError
from bulkpull.manifest import parse_config
from bulkpull.output.verify_files import ArchiveFiles, Findings
from bulkpull.reference import parse_reference

_HEX = re.compile(r"[a-f0-9]{64}")


def check_docker_manifest(files: ArchiveFiles, found: Findings) -> list[str]:
    """Check ``manifest.json`` if there is one; returns the names it tags images with (an
    untagged image by its config)."""
    entry = files.get("manifest.json")
    if entry is None:
        return []
    items = found.json(entry.data, "manifest.json")
    if items is None:
        return []
    if not isinstance(items, list):
        found.problems.append("manifest.json: not a JSON array")
        return []
    names: list[str] = []
    for position, item in enumerate(items):
        where = f"manifest.json item {position}"
        if not isinstance(item, dict):
            found.problems.append(f"{where}: not an object")
            continue
        _check_item(files, item, where, found)
        tags = _check_repo_tags(item.get("RepoTags") or [], where, found)
        names += tags or [f"{item.get('Config')} (untagged)"]  # docker save IMAGE_ID
    return names


def check_repositories(files: ArchiveFiles, found: Findings) -> None:
    """``repositories`` (read by Docker 28 and older when manifest.json is missing) must name
    layers the archive holds."""
    entry = files.get("repositories")
    if entry is None:
        return
    document = found.json(entry.data, "repositories")
    if document is None:
        return
    if not isinstance(document, dict) or not all(
        isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())
        for tags in document.values()
    ):
        found.problems.append("repositories: not a map of names to tags to layer IDs")
        return
    for name, tags in document.items():
        for tag, layer_id in tags.items():
            places = (f"{layer_id}/layer.tar", f"{layer_id}/json", f"blobs/sha256/{layer_id}")
            if not any(files.get(place) for place in places):
                found.problems.append(
                    f"repositories: {name}:{tag} names layer {layer_id}, which is not here"
                )


def _check_item(files: ArchiveFiles, item: dict[str, object], where: str, found: Findings) -> None:
    diff_ids = _diff_ids(files, item.get("Config"), where, found)
    layers = item.get("Layers")
    if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
        found.problems.append(f"{where}: Layers is not a list of file names")
        return
    if diff_ids is not None and len(diff_ids) != len(layers):
        found.problems.append(f"{where}: {len(layers)} layers but {len(diff_ids)} rootfs.diff_ids")
        diff_ids = None
    for position, name in enumerate(layers):
        layer = files.get(name)
        if layer is None:
            found.problems.append(f"{where}: layer {name} is missing")
        elif diff_ids and not layer.compressed and str(layer.digest) != diff_ids[position]:
            found.problems.append(
                f"{where}: layer {name} hashes to {layer.digest}, but rootfs.diff_ids"
                f"[{position}] is {diff_ids[position]}"
            )


def _diff_ids(
    files: ArchiveFiles, name: object, where: str, found: Findings
) -> tuple[str, ...] | None:
    """The config's ``rootfs.diff_ids``, or None with the problem noted."""
    if not isinstance(name, str):
        found.problems.append(f"{where}: Config is not a file name")
        return None
    config = files.get(name)
    if config is None:
        found.problems.append(f"{where}: config {name} is missing")
        return None
    stem = posixpath.basename(name).removesuffix(".json")
    # Under blobs/ the name was checked with every blob; elsewhere it is the image ID.
    if not name.startswith("blobs/") and _HEX.fullmatch(stem) and stem != config.sha256:
        found.problems.append(f"{where}: config {name} hashes to {config.digest}")
        return None
    if config.data is None:
        found.problems.append(f"{where}: config {name}: not JSON, or too large to check")
        return None
    try:
        return parse_config(config.data, f"{where}: config {name}").diff_ids
    except BulkpullError as exc:
        found.problems.append(str(exc))
        return None


def _check_repo_tags(tags: object, where: str, found: Findings) -> list[str]:
    if not isinstance(tags, list):
        found.problems.append(f"{where}: RepoTags is not a list")
        return []
    for tag in tags:
        problem = _repo_tag_problem(str(tag))
        if problem:
            found.problems.append(f"{where}: RepoTags entry {tag!r}: {problem}")
    return [str(tag) for tag in tags]


def _repo_tag_problem(tag: str) -> str | None:
    """Why ``docker load`` would refuse ``tag`` as a name, or None."""
    try:
        parsed = parse_reference(tag)
    except InvalidReferenceError as exc:
        return str(exc)
    if parsed.digest is not None or ":" not in tag.rpartition("/")[2]:
        return "docker load needs NAME:TAG"
    return None
