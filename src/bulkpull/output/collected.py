"""Outputs that collect every image of a run and are written once at its end: one bundle, or
an OCI layout directory.

All platforms of an image share one entry, named by the image's full reference (tags alone
collide between images), and the images' referrers are carried beside them. A bundle is laid
out and filled like any archive (``writers``), once, in :meth:`Bundle.finish`; an image whose
blob cannot be had is left out and the bundle laid out again without it; with a volume size
(``--split``) it is written as volumes (``volumes``) and current when the whole set is. A
layout's blobs are already in place (its ``blobs`` directory is the run's store), so finishing
it is rewriting ``index.json``, in a worker thread through ``files.run_stoppable``. Imports
``writers``, ``layout``, ``readback``, ``contents``, ``filling``, ``archive``, ``volumes``,
``files`` and the value modules.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, DestinationError, OutputError
from bulkpull.files import kind_of, output_error, run_stoppable
from bulkpull.imagelist import ImageSpec
from bulkpull.output.archive import Slot
from bulkpull.output.contents import (
    CONTAINERD_NAME,
    OCI_REF_NAME,
    REFERRER_OF,
    ArchiveImage,
    referrer_key,
)
from bulkpull.output.delta import HeldImage, delta_of, held_delta
from bulkpull.output.filling import ArchiveFile
from bulkpull.output.layout import read_layout_index, update_layout
from bulkpull.output.readback import held_images
from bulkpull.output.volumes import LIST_SUFFIX, listed_volumes, remove_other_form
from bulkpull.output.writers import BlobFiles, BlobSupply, Output, check_length, make_directory
from bulkpull.platform import Platform
from bulkpull.report import ImageResult, ReplacedImage, Status
from bulkpull.resolved import ResolvedImage


class _Collecting(Output):
    """An output that holds every image of the run under one name each, written at the end:
    all platforms of an image share one entry, named by its full reference (tags alone
    collide between images)."""

    final_on_add = False
    carries_referrers = True

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.images: list[ArchiveImage] = []
        self.supplies: dict[str, BlobSupply] = {}
        # The images the far side holds when this output is a delta (``--have``), else None.
        self.have: tuple[HeldImage, ...] | None = None

    def split(self, resolved: list[ResolvedImage], whole: bool) -> list[list[ResolvedImage]]:
        return [resolved]

    def check_names(
        self, specs: Sequence[ImageSpec], platforms: tuple[Platform, ...], every: bool
    ) -> None:
        """Nothing to check per image: the one name is checked by :meth:`prepare`."""

    def ref_name(self, spec: ImageSpec) -> str:
        return str(spec.target)

    async def add(
        self, path: Path, image: ArchiveImage, supply: BlobSupply, *, rewrite: bool = False
    ) -> bool:
        self.images.append(image)
        self.supplies[image.name] = supply
        return True


class Bundle(_Collecting):
    """Every image in one archive: one index.json and one manifest.json entry per image;
    with ``volume``, written as volumes of at most that many bytes (``volumes``)."""

    def __init__(self, path: Path, volume: int | None = None) -> None:
        super().__init__(path.parent)
        self.path = path
        self.volume_size = volume

    def target(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        return self.path

    def archives(self) -> list[Path]:
        return [self.path]

    async def prepare(self) -> None:
        """Refuse a bundle name that is not, or cannot be, a regular file; make its directory."""
        await asyncio.to_thread(_check_bundle, self.path, self.volume_size is not None)
        await asyncio.to_thread(make_directory, self.path.parent, "output directory")

    async def is_current(self, path: Path, image: ArchiveImage) -> bool:
        return False  # decided for the whole bundle in finish()

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        images = sorted(self.images, key=lambda image: image.name)
        if not images:
            return results
        try:
            same_images, same_delta = await asyncio.to_thread(self._holds, images)
            if same_images and same_delta:
                split = self.volume_size is not None
                await asyncio.to_thread(remove_other_form, self.path, split=split)
                self.volumes = await asyncio.to_thread(listed_volumes, self.path, self.volume_size)
                return [replace(r, status=Status.UP_TO_DATE) if r.ok else r for r in results]
            # The same images as a delta where a whole bundle is wanted, or the other way
            # round: written anew, though a rerun would take the images as there already.
            failed = await self._fill(images, rewrite=same_images)
        except OutputError as exc:
            return _failed(results, exc)
        return [
            _failed_one(r, failed[str(r.spec.target)]) if str(r.spec.target) in failed else r
            for r in results
        ]

    def _holds(self, images: list[ArchiveImage]) -> tuple[bool, bool]:
        """Whether the bundle there holds these images already, and whether it is a delta
        (with the same record) exactly when this run writes one (in a worker thread)."""
        held = held_images(self.path, self.volume_size)
        same = held == {key: d for image in images for key, d in image.held.items()}
        return same, held_delta(self.path, self.volume_size) == self._delta(images)

    def _delta(self, images: Sequence[ArchiveImage]) -> bytes | None:
        return None if self.have is None else delta_of(images, self.have).to_bytes()

    async def _fill(self, images: list[ArchiveImage], *, rewrite: bool) -> dict[str, BulkpullError]:
        """Write the bundle; an image whose blob cannot be had is left out (it fails alone)
        and the bundle is laid out again without it, its blobs copied from the first try.
        ``rewrite``: even if it holds these images already."""
        failed: dict[str, BulkpullError] = {}
        while images:
            supply = _Merged([self.supplies[image.name] for image in images])
            try:
                delta = self._delta(images)
                await self._write(self.path, images, supply, rewrite=rewrite, delta=delta)
                break
            except BulkpullError as exc:
                if supply.failed is None or isinstance(exc, OutputError):
                    raise
                for image in images:
                    if supply.failed in image.blobs:
                        failed[image.name] = exc
                images = [image for image in images if image.name not in failed]
        return failed


class Layout(_Collecting):
    """An OCI image layout directory; its ``blobs`` directory is the blob store itself."""

    def __init__(self, store: BlobFiles, directory: Path) -> None:
        super().__init__(directory)
        self.store = store
        self._index: asyncio.Future[tuple[dict[str, object], list[dict[str, object]]]] | None
        self._index = None

    def target(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        return self.directory

    def archives(self) -> list[Path]:
        return []  # its blobs are its store's

    async def prepare(self) -> None:
        await asyncio.to_thread(make_directory, self.directory, "OCI layout")

    async def _existing_entries(self) -> list[dict[str, object]]:
        """The layout's index entries as the run found them; read once, not once per image
        (the index is rewritten only by :meth:`finish`). An index that is not one fails every
        image that asks."""
        if self._index is None:
            self._index = asyncio.ensure_future(
                asyncio.to_thread(read_layout_index, self.directory)
            )
        _, entries = await asyncio.shield(self._index)
        return entries

    async def is_current(self, path: Path, image: ArchiveImage) -> bool:
        entries = await self._existing_entries()
        if any(entry not in entries for entry in [image.descriptor, *image.referrer_descriptors]):
            return False
        return all([await self.store.has(digest) for digest in image.blobs])

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        if not self.images:
            return results
        index = self.directory / "index.json"
        try:
            displaced = await run_stoppable(
                functools.partial(update_layout, self.directory, self.images, have=self.have)
            )
        except OutputError as exc:
            return _failed(results, exc)
        except OSError as exc:
            return _failed(results, output_error(exc, index))
        self.replaced += _replaced_entries(displaced, self.directory)
        return results


def _failed(results: list[ImageResult], error: OutputError) -> list[ImageResult]:
    return [r.as_failed(error) if r.ok else r for r in results]


def _failed_one(result: ImageResult, error: BulkpullError) -> ImageResult:
    return result.as_failed(error) if result.ok else result


class _Merged:
    """The supplies of a bundle's images as one: each blob from the first image that has it;
    ``failed`` is the blob that could not be had, if one could not."""

    def __init__(self, supplies: Sequence[BlobSupply]) -> None:
        self._of: dict[Digest, BlobSupply] = {}
        for supply in supplies:
            for digest in [*supply.sizes, *supply.inline]:
                self._of.setdefault(digest, supply)
        self.sizes = {d: size for s in supplies for d, size in s.sizes.items()}
        self.inline = {d: data for s in supplies for d, data in s.inline.items()}
        self.failed: Digest | None = None

    async def fill(self, archive: ArchiveFile, slot: Slot) -> None:
        try:
            await self._of[slot.digest].fill(archive, slot)
        except BulkpullError:
            self.failed = slot.digest
            raise


def _replaced_entries(entries: list[dict[str, object]], directory: Path) -> list[ReplacedImage]:
    replaced = []
    for entry in entries:
        annotations = entry.get("annotations")
        names = annotations if isinstance(annotations, dict) else {}
        name = names.get(CONTAINERD_NAME) or names.get(OCI_REF_NAME)
        try:
            digest = Digest.parse(str(entry.get("digest")))
        except BulkpullError:
            continue  # not an entry bulkpull could name; it is gone all the same
        if name is None and names.get(REFERRER_OF):  # a signature replaced by a newer one
            name = referrer_key(str(names[REFERRER_OF]), digest)
        replaced.append(ReplacedImage(str(name), digest, directory))
    return replaced


def _check_bundle(path: Path, split: bool) -> None:
    check_length(path.name + LIST_SUFFIX if split else path.name, f"bundle {path}")
    try:
        found = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise DestinationError(f"bundle {path}: a file is in the way of its directory") from None
    kind = kind_of(found.st_mode)
    if kind is not None:
        raise DestinationError(f"bundle {path} is {kind}; name the archive file to write")
