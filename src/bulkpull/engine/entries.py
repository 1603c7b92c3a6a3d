"""What one pulled image becomes in an output: its ``index.json`` entry and what that carries.

People pin images by digest, so an entry points at what the registry serves wherever it can:
the manifest when the image is one manifest or one platform was chosen from an index, the
registry's index byte for byte when every platform was kept. Only several (not all) platforms
kept under one name (a bundle or layout) need an index the registry never served: the same
index holding only the pulled entries, the one digest bulkpull makes, and the result says so.
Pure: no I/O. Imports ``digest``, ``errors``, ``manifest``, ``platform``, ``resolved`` and
``archive``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bulkpull.digest import Digest
from bulkpull.errors import PlatformNotFoundError
from bulkpull.manifest import ImageIndex, choose_platform, parse_manifest
from bulkpull.output import ArchiveImage, ImageContent
from bulkpull.platform import Platform
from bulkpull.resolved import FetchedManifest, ResolvedImage


@dataclass(frozen=True, slots=True)
class Entry:
    """An image's archive entry, the manifests the store must hold for it, and, when bulkpull
    narrowed an index, how many of the registry's entries it kept out of how many."""

    image: ArchiveImage
    manifests: tuple[FetchedManifest, ...]
    narrowed: tuple[int, int] | None = None


def archive_entry(
    name: str,
    ref_name: str,
    resolved: Sequence[ResolvedImage],
    *,
    every: bool,
    docker_platform: Platform,
) -> Entry:
    """The entry for ``resolved`` (the platforms that share one name), named ``name``.

    With ``every`` the whole index is kept and ``docker load``, which tags one image per name,
    gets the entry that serves ``docker_platform`` best; otherwise the first platform asked for.
    """
    ordered = _docker_first(resolved, docker_platform) if every else list(resolved)
    top, narrowed = _top(resolved, every)
    index = resolved[0].index
    manifests = {item.manifest.digest: item.manifest for item in resolved}
    manifests[top.digest] = top
    if index is not None:
        manifests[index.digest] = index
    image = ArchiveImage(
        name=name,
        ref_name=ref_name,
        media_type=top.media_type,
        digest=top.digest,
        size=top.size,
        contents=tuple(_content(item) for item in ordered),
        source=index.digest if index is not None and index.digest != top.digest else None,
    )
    return Entry(image, tuple(manifests.values()), narrowed)


def _content(item: ResolvedImage) -> ImageContent:
    layers = tuple(layer.digest for layer in item.content.layers)
    return ImageContent(item.manifest.digest, item.content.config.digest, layers)


def _top(
    resolved: Sequence[ResolvedImage], every: bool
) -> tuple[FetchedManifest, tuple[int, int] | None]:
    """What the entry points at, and (kept, listed) when that is a narrowed index."""
    index = resolved[0].index
    if index is None or (len(resolved) == 1 and not every):
        return resolved[0].manifest, None
    if every:
        return index, None
    raw, kept, listed = _narrowed_index(index.raw, [item.manifest.digest for item in resolved])
    if raw == index.raw:
        return index, None
    return replace(index, raw=raw, digest=Digest.of(raw)), (kept, listed)


def _narrowed_index(raw: bytes, keep: list[Digest]) -> tuple[bytes, int, int]:
    """The index as the registry sent it when every entry was pulled; otherwise the same
    index holding only the pulled entries, so no archive names a blob it does not carry.
    Returns the bytes, the entries kept and the entries the registry's index lists."""
    document = json.loads(raw)  # parsed once already: it is a valid index
    entries = document["manifests"]
    wanted = {str(digest) for digest in keep}
    kept = [entry for entry in entries if entry["digest"] in wanted]
    if len(kept) == len(entries):
        return raw, len(kept), len(entries)
    narrowed = json.dumps({**document, "manifests": kept}, separators=(",", ":")).encode()
    return narrowed, len(kept), len(entries)


def _docker_first(resolved: Sequence[ResolvedImage], preferred: Platform) -> list[ResolvedImage]:
    """Every entry, the one ``docker load`` gets first: the one containerd would pick for
    ``preferred``, else the first that is not an attestation (index order otherwise)."""
    index = resolved[0].index
    if index is None:
        return list(resolved)
    parsed = parse_manifest(index.raw, index.media_type, str(resolved[0].reference))
    assert isinstance(parsed, ImageIndex)
    runnable = [item.manifest.digest for item in resolved if not item.attestation]
    try:
        pick = choose_platform(parsed, preferred, "").digest
    except PlatformNotFoundError:
        pick = (runnable or [resolved[0].manifest.digest])[0]
    return sorted(resolved, key=lambda item: item.manifest.digest != pick)
