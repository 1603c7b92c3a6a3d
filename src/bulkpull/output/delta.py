"""The record a delta carries: ``bulkpull-delta.json``, beside ``index.json`` in a bundle or an
OCI layout made with ``--have``.

A delta leaves out the configs and layers of the images the far side already holds; its
manifests and indexes stay in. So that a push can tell, before it writes a manifest, whether
the target holds everything the images need, the record names per image each blob left out
(with its size, and the ``--have`` images that hold it, whose repositories a push may mount it
from), and the images the delta was made against. Parsing is strict: a record that is not one
is an error, never a full bundle. Imports ``digest``, ``errors``, ``jsondoc``, ``files``,
``contents`` and ``volumes`` (a bundle split into volumes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, ContentError, OutputError
from bulkpull.files import Temporary, open_regular
from bulkpull.jsondoc import load_object
from bulkpull.output.archive import write_all
from bulkpull.output.contents import DELTA_MEMBER, ArchiveImage, ExpectedBlob, json_bytes
from bulkpull.output.verify_tar import READ_ERRORS, read_member
from bulkpull.output.volumes import whole_set

DELTA_VERSION = 1
# A delta of thousands of images names a few hundred thousand digests at most.
MAX_DELTA_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class HeldImage:
    """An image the far side holds (one of ``--have``): its name as it was written, the
    digest it was written under, and the configs and layers it consists of."""

    name: str
    digest: Digest
    blobs: frozenset[Digest] = frozenset()


@dataclass(frozen=True, slots=True)
class Delta:
    """A delta's record: per image name, its digest and the blobs it expects at the target;
    and the images it was made against."""

    images: Mapping[str, tuple[Digest, tuple[ExpectedBlob, ...]]]
    have: tuple[HeldImage, ...] = ()

    def expected(self, name: str, digest: Digest) -> tuple[ExpectedBlob, ...]:
        """What the image ``name`` (written as ``digest``) expects; nothing for an image the
        delta carries whole, or one of that name written since under another digest."""
        found = self.images.get(name)
        return found[1] if found is not None and found[0] == digest else ()

    @property
    def left_out(self) -> dict[Digest, ExpectedBlob]:
        """Every blob left out, once."""
        return {blob.digest: blob for _, blobs in self.images.values() for blob in blobs}

    def to_bytes(self) -> bytes:
        return json_bytes(
            {
                "version": DELTA_VERSION,
                "have": [{"name": held.name, "digest": str(held.digest)} for held in self.have],
                "images": [
                    {"name": name, "digest": str(digest), "expected": [_blob(b) for b in blobs]}
                    for name, (digest, blobs) in sorted(self.images.items())
                ],
            }
        )


def delta_of(images: Sequence[ArchiveImage], have: Sequence[HeldImage]) -> Delta:
    """The record of an output holding ``images``, made against ``have``."""
    expecting = {image.name: (image.digest, image.expected) for image in images if image.expected}
    return Delta(expecting, tuple(have))


def merged(
    earlier: Delta | None, images: Sequence[ArchiveImage], have: Sequence[HeldImage]
) -> Delta:
    """An OCI layout's record after ``images`` were added to it: what they expect replaces
    what images of their names expected; the other images' records stay."""
    now = delta_of(images, have)
    if earlier is None:
        return now
    written = {image.name for image in images}
    kept = {name: item for name, item in earlier.images.items() if name not in written}
    held = {(h.name, h.digest): h for h in (*earlier.have, *now.have)}
    return Delta({**kept, **now.images}, tuple(held.values()))


def parse_delta(raw: bytes, where: str) -> Delta:
    """The record in ``raw``; :class:`ContentError` naming ``where`` when it is not one."""
    document = load_object(raw, MAX_DELTA_BYTES, where)
    if document.get("version") != DELTA_VERSION:
        raise ContentError(f"{where}: version {document.get('version')!r}, not {DELTA_VERSION}")
    try:
        images = {
            _text(item, "name"): (Digest.parse(_text(item, "digest")), _expected(item))
            for item in _list(document, "images")
        }
        have = tuple(
            HeldImage(_text(item, "name"), Digest.parse(_text(item, "digest")))
            for item in _list(document, "have")
        )
    except (BulkpullError, TypeError, ValueError) as exc:
        raise ContentError(f"{where}: not a delta record: {exc}") from None
    return Delta(images, have)


def held_delta(path: Path, volume: int | None = None) -> bytes | None:
    """The record the bundle at ``path`` (its volumes of ``volume``) carries, as it is; None
    when it carries none (or nothing readable is there). Never follows a link (in a worker
    thread)."""
    try:
        if volume is None:
            opened: BinaryIO | None = os.fdopen(open_regular(path), "rb")
        else:
            opened = whole_set(path, volume)
        if opened is None:
            return None
        with opened as archive:
            return read_member(archive, DELTA_MEMBER)
    except READ_ERRORS:
        return None


def update_layout_delta(
    directory: Path, images: Sequence[ArchiveImage], have: Sequence[HeldImage] | None
) -> None:
    """Rewrite the record of the OCI layout in ``directory`` for ``images`` added to it: when
    they were pulled as a delta (against ``have``), or the layout is one already. Called under
    the layout's lock."""
    try:
        earlier = read_layout_delta(directory)
    except ContentError as exc:  # the layout's images fail with it; the file is left as it is
        raise OutputError(f"{exc}; remove it, or write the delta into another layout") from None
    if have is None and earlier is None:
        return
    record = merged(earlier, images, have or ())
    with Temporary(directory / DELTA_MEMBER) as temporary:
        write_all(temporary.file, record.to_bytes())
        temporary.install()


def read_layout_delta(directory: Path) -> Delta | None:
    """The record of the OCI layout in ``directory``; None when it is no delta."""
    path = directory / DELTA_MEMBER
    try:
        raw = _read(path)
    except FileNotFoundError:
        return None
    return parse_delta(raw, str(path))


def _read(path: Path) -> bytes:
    with os.fdopen(open_regular(path), "rb") as handle:
        raw = handle.read(MAX_DELTA_BYTES + 1)
    if len(raw) > MAX_DELTA_BYTES:
        raise ContentError(f"{path}: larger than {MAX_DELTA_BYTES} bytes")
    return raw


def _blob(blob: ExpectedBlob) -> dict[str, object]:
    return {"digest": str(blob.digest), "size": blob.size, "in": list(blob.holders)}


def _expected(item: Mapping[str, object]) -> tuple[ExpectedBlob, ...]:
    found = []
    for blob in _list(item, "expected"):
        size = blob.get("size")
        holders = blob.get("in", [])
        if not isinstance(size, int) or size < 0 or not isinstance(holders, list):
            raise ValueError(f"expected blob {json.dumps(blob)[:200]}: bad size or in")
        names = tuple(str(name) for name in holders if isinstance(name, str))
        found.append(ExpectedBlob(Digest.parse(_text(blob, "digest")), size, names))
    return tuple(found)


def _list(document: Mapping[str, object], key: str) -> list[dict[str, object]]:
    items = document.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f'"{key}" is not a list of objects')
    return items


def _text(item: Mapping[str, object], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ValueError(f'"{key}" is not a string')
    return value
