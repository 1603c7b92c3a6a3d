"""OCI image layout directories: images added to ``index.json``, which is read back checked.

A layout is the form to carry to a site that pushes into its own registry, and what ``skopeo
copy oci:DIR`` reads. Its ``blobs`` directory is filled by the blob store; this module only
keeps the index. Imports ``errors``, ``files``, ``contents`` and ``archive``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from bulkpull.errors import OutputError
from bulkpull.files import Temporary, check, locked_directory, open_regular
from bulkpull.output.archive import write_all
from bulkpull.output.contents import (
    OCI_LAYOUT,
    OCI_REF_NAME,
    REFERRER_OF,
    REFERRER_TAG,
    ArchiveImage,
    index_of,
    json_bytes,
)
from bulkpull.output.delta import HeldImage, update_layout_delta

# An index.json beyond this is not one bulkpull wrote or could rewrite (containerd's limit).
MAX_INDEX_BYTES = 20 * 1024 * 1024


def update_layout(
    directory: Path,
    images: Sequence[ArchiveImage],
    stop: threading.Event | None = None,
    *,
    have: Sequence[HeldImage] | None = None,
) -> list[dict[str, object]]:
    """Add ``images`` to the OCI image layout in ``directory``, whose blobs are in place; returns
    the entries they displaced (same ref name, another digest).

    Entries already there keep their place unless an image of the same ref name replaces
    them, and the index's other fields are kept. ``index.json`` is replaced atomically, so a
    reader sees the old or the new one, and under a lock on the directory, so two runs adding
    to one layout at once both find their images in it afterwards. An ``index.json`` that is
    not an OCI index is an :class:`OutputError`, and is left as it is. A delta (made against
    ``have``), or a layout that is one already, gets its record rewritten first.
    """
    with locked_directory(directory, stop):
        _ensure_oci_layout(directory)
        document, entries = read_layout_index(directory)
        update_layout_delta(directory, images, have)
        new = [image.descriptor for image in images]
        new += [entry for image in images for entry in image.referrer_descriptors]
        names = {_slot(entry) for entry in new} - {None}
        # An OCI referrer has no name: the same entry again is the same referrer.
        kept = [entry for entry in entries if _slot(entry) not in names and entry not in new]
        replaced = [entry for entry in entries if entry not in kept and entry not in new]
        with Temporary(directory / "index.json") as temporary:
            write_all(temporary.file, json_bytes({**document, "manifests": kept + new}))
            check(stop)
            temporary.install()
    return replaced


def _ensure_oci_layout(directory: Path) -> None:
    path = directory / "oci-layout"
    try:
        found = _read_regular(path, 4096)
    except FileNotFoundError:
        with Temporary(path) as temporary:
            write_all(temporary.file, OCI_LAYOUT)
            temporary.install()
        return
    if _loads(found, path) != json.loads(OCI_LAYOUT):
        raise OutputError(f"{path}: not an OCI image layout 1.0.0 (it says {found[:80]!r})")


def read_layout_index(directory: Path) -> tuple[dict[str, object], list[dict[str, object]]]:
    """A layout's ``index.json`` and its entries, checked to be an OCI index whose
    ``manifests`` is a list of descriptors (an empty index when there is none yet);
    :class:`OutputError` otherwise."""
    path = directory / "index.json"
    try:
        raw = _read_regular(path, MAX_INDEX_BYTES)
    except FileNotFoundError:
        return index_of([]), []
    document = _loads(raw, path)
    if not isinstance(document, dict):
        raise OutputError(f"{path}: not an OCI image index (a JSON {_json_type(document)})")
    manifests = document.get("manifests")
    if not isinstance(manifests, list) or not all(isinstance(e, dict) for e in manifests):
        found = _json_type(manifests) if manifests is not None else "nothing"
        raise OutputError(f'{path}: "manifests" must be a list of descriptors, not {found}')
    return {**index_of([]), **document}, manifests


def _read_regular(path: Path, limit: int) -> bytes:
    with os.fdopen(open_regular(path), "rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise OutputError(f"{path}: larger than {limit} bytes")
    return raw


def _loads(raw: bytes, path: Path) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise OutputError(f"{path}: not JSON: {str(exc)[:200]}") from None


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _slot(entry: object) -> str | None:
    """What an entry of that name replaces: its ref name, or for a referrer kept under a
    cosign tag, that tag of its image (a new signature replaces the old)."""
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    if not isinstance(annotations, dict):
        return None
    tag = annotations.get(REFERRER_TAG)
    if tag is not None:
        return f"{annotations.get(REFERRER_OF)} {tag}"
    name = annotations.get(OCI_REF_NAME)
    return name if isinstance(name, str) else None
