"""What the far side already holds (``--have FILE``), as the blobs a delta leaves out.

A ``--have`` file is one of three things, told apart by what it holds:

- a pull's ``--report``: each image written (``pulled`` or ``up-to-date``) lists its config and
  layers, which are used as they are;
- an inventory that ``bulkpull verify --lock FILE --registry R --inventory OUT`` wrote on the
  far side: each image found there, with its blobs;
- a lock file (or any image list pinned by digest): each pinned image is resolved as a pull of
  the lock would resolve it, by digest, from the store or the registry (manifests only: no blob
  is downloaded). A line left unpinned (an image that failed when the lock was written) never
  reached the far side and is passed over.

Files are read before any request; a file that is none of these is an
:class:`InvalidOptionError` naming it. Imports ``options``, ``registry``, ``output`` and the
value modules.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.engine.options import PullOptions
from bulkpull.errors import BulkpullError, InvalidOptionError
from bulkpull.imagelist import ImageSpec, parse_image_list
from bulkpull.jsondoc import load_object
from bulkpull.output import ExpectedBlob, HeldImage
from bulkpull.registry import RegistryClient
from bulkpull.resolved import ResolvedImage
from bulkpull.tasks import all_of

log = logging.getLogger("bulkpull")

# A report of ten thousand images is a few tens of MiB.
MAX_HAVE_BYTES = 256 * 1024 * 1024
# The statuses of a pull report whose image is in the output (and so went to the far side).
_WRITTEN = frozenset({"pulled", "up-to-date"})


@dataclass(frozen=True, slots=True)
class HaveFile:
    """One ``--have`` file read: the images it lists with their blobs (``held``), and those
    pinned by a lock, whose blobs the registry's manifests tell (``pinned``)."""

    path: Path
    held: tuple[HeldImage, ...] = ()
    pinned: tuple[ImageSpec, ...] = ()


def read_have(path: str | os.PathLike[str]) -> HaveFile:
    """Read a ``--have`` file (see the module); :class:`InvalidOptionError` when it cannot
    be read or is none of a report, an inventory and a lock."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidOptionError(f"--have {path}: cannot read it: {exc.strerror or exc}") from None
    if raw.lstrip()[:1] == b"{":
        return HaveFile(path, held=_held_in_document(raw, path))
    try:
        specs = parse_image_list(raw.decode("utf-8").splitlines(), str(path))
    except (UnicodeDecodeError, BulkpullError) as exc:
        raise InvalidOptionError(
            f"--have {path}: not a lock file, report or inventory: {exc}"
        ) from None
    pinned = tuple(spec for spec in specs if spec.source.digest is not None)
    for spec in specs:
        if spec.source.digest is None:
            log.warning("--have %s: %s is not pinned to a digest; passed over", spec.origin, spec)
    return HaveFile(path, pinned=pinned)


def _held_in_document(raw: bytes, path: Path) -> tuple[HeldImage, ...]:
    """The images of a pull report or an inventory, each with its configs and layers; the
    platforms of one image (several report records) as one."""
    where = f"--have {path}"
    try:
        document = load_object(raw, MAX_HAVE_BYTES, where)
        records = document.get("images")
        if not isinstance(records, list) or "target" in document:
            raise InvalidOptionError(
                f"{where}: not a pull report or an inventory (a push report lists no blobs)"
            )
        found: dict[tuple[str, Digest], set[Digest]] = {}
        for record in records:
            held = _record(record)
            if held is not None:
                found.setdefault((held.name, held.digest), set()).update(held.blobs)
    except (BulkpullError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, InvalidOptionError):
            raise
        raise InvalidOptionError(f"{where}: not a pull report or an inventory: {exc}") from None
    return tuple(HeldImage(n, d, frozenset(blobs)) for (n, d), blobs in found.items())


def _record(record: Mapping[str, object]) -> HeldImage | None:
    """An inventory's image (``blobs``), or a report record of an image written (``layers``
    and ``config_digest``); None for a report record of an image not written."""
    name = str(record["name"])
    if "blobs" in record:
        blobs = record["blobs"]
        if not isinstance(blobs, list):
            raise ValueError(f"{name}: blobs is not a list")
        return HeldImage(name, Digest.parse(str(record["digest"])), _digests(blobs))
    if record.get("status") not in _WRITTEN or record.get("written_digest") is None:
        return None
    layers = record.get("layers") or []
    if not isinstance(layers, list):
        raise ValueError(f"{name}: layers is not a list")
    digests = [str(layer["digest"]) for layer in layers]
    if record.get("config_digest"):
        digests.append(str(record["config_digest"]))
    return HeldImage(name, Digest.parse(str(record["written_digest"])), _digests(digests))


def _digests(items: Sequence[object]) -> frozenset[Digest]:
    return frozenset(Digest.parse(str(item)) for item in items)


class HaveSet:
    """Every blob the far side holds, and the images there that hold each."""

    def __init__(self, images: Sequence[HeldImage]) -> None:
        self.images = tuple(images)
        self._holders: dict[Digest, list[str]] = {}
        for image in images:
            for digest in sorted(image.blobs):
                self._holders.setdefault(digest, []).append(image.name)

    def __contains__(self, digest: object) -> bool:
        return digest in self._holders

    def expected(self, resolved: Sequence[ResolvedImage]) -> tuple[ExpectedBlob, ...]:
        """The configs and layers of ``resolved`` that the far side holds, each once."""
        found: dict[Digest, ExpectedBlob] = {}
        for item in resolved:
            for blob in item.blobs:
                holders = self._holders.get(blob.digest)
                if holders is not None:
                    found.setdefault(
                        blob.digest, ExpectedBlob(blob.digest, blob.size, tuple(holders))
                    )
        return tuple(found.values())


async def have_set(
    files: Sequence[HaveFile], registry: RegistryClient, options: PullOptions
) -> HaveSet:
    """What the far side holds, by every file: the locks' images resolved as a pull with
    ``options`` would resolve them (manifests from the store or the registry, by digest, no
    blob; ``jobs`` at a time). An image of a lock that cannot be resolved raises its error,
    naming the lock's line: without its blobs known, the delta could not say what it leaves
    out."""
    jobs = asyncio.Semaphore(options.jobs)
    pinned = [spec for file in files for spec in file.pinned]
    resolved = await all_of(_resolve(registry, spec, options, jobs) for spec in pinned)
    return HaveSet([*(held for file in files for held in file.held), *resolved])


async def _resolve(
    registry: RegistryClient, spec: ImageSpec, options: PullOptions, jobs: asyncio.Semaphore
) -> HeldImage:
    wanted = spec.choosing(options.platforms, options.all_platforms)
    try:
        async with jobs:
            resolved = await registry.resolve(
                spec.source, wanted.platforms, every=wanted.all_platforms
            )
    except BulkpullError as exc:
        raise BulkpullError(f"--have {spec.origin}: {spec.source}: {exc}") from exc
    blobs = frozenset(blob.digest for item in resolved for blob in item.blobs)
    assert spec.source.digest is not None  # only pinned lines are resolved
    return HeldImage(str(spec.target), spec.source.digest, blobs)
