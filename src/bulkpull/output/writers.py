"""Where pulled images go: what every output does, and one archive per image (a bundle and an
OCI layout, which collect the run's images, are in ``collected``).

Each output says which platforms of an image share an entry, where it is written, what its
OCI ref name is, and whether what is there already holds the image (a rerun then leaves it
alone). Per-image archives are written as images arrive; a bundle or a layout collects images
and is written once, by :meth:`Output.finish`. Outputs that cannot be (a file where the
directory must be, a directory where the bundle must be, names too long for a file system) are
refused by :meth:`Output.check_names` and :meth:`Output.prepare` before any request is made,
and before anything is created.

An archive (or bundle) is laid out first (``archive.plan_archive``) and filled in place
(``filling``): its slots are handed to a :class:`BlobSupply` (the run's downloads, which this
module knows only by what they do), and it is renamed into place once every slot is filled.
What the archives already in the output hold (:meth:`Output.archives`, read by
``readback.HeldBlobs``) is taken from there, so a moved tag downloads only what is new. A
bundle whose image cannot be had is laid out again without that image.

No file work runs on the event loop. Partial archives are opened and installed, and the layout
installed in a worker thread through ``files.run_stoppable``: a cancellation stops the
work before it installs anything, or lets an install already under way finish so that it is
reported. What a final name holds is read in a worker thread too, and anything there that is
not a regular file (a FIFO would hang the run) is an error for the image. Imports ``archive``,
``filling``, ``contents``, ``readback``, ``files``, ``imagelist``, ``report`` and the other
value modules.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from bulkpull.digest import Digest
from bulkpull.errors import DestinationError, OutputError
from bulkpull.files import NAME_MAX, output_error, run_stoppable, shielded
from bulkpull.imagelist import ImageSpec, archive_name, archive_names
from bulkpull.output.archive import ArchivePlan, Slot, plan_archive
from bulkpull.output.contents import (
    ArchiveImage,
)
from bulkpull.output.filling import ArchiveFile
from bulkpull.output.readback import held_images
from bulkpull.output.volumes import list_path
from bulkpull.platform import Platform
from bulkpull.report import ImageResult, ReplacedImage
from bulkpull.resolved import ResolvedImage
from bulkpull.tasks import all_of


class BlobFiles(Protocol):
    """The verified blobs of an OCI layout: its blob store, known here only by what it does."""

    def path(self, digest: Digest) -> Path: ...

    async def has(self, digest: Digest) -> bool: ...


class BlobSupply(Protocol):
    """What an archive is filled from: the size of each blob, the blobs already in hand
    (manifests, configs), and a way to fill a slot (the run's downloads, known here only by
    what they do)."""

    @property
    def sizes(self) -> Mapping[Digest, int]: ...

    @property
    def inline(self) -> Mapping[Digest, bytes]: ...

    async def fill(self, archive: ArchiveFile, slot: Slot) -> None: ...


class Output:
    """Where pulled images go. Per-image archives are written as images arrive; a bundle or
    layout collects them and is written by :meth:`finish`.

    ``final_on_add``: whether a result is final once the image is added (else after finish);
    ``carries_referrers``: whether signatures, SBOMs and attestations go in with the images.
    ``replaced``: what the names written held before and hold no longer, as they are written.
    """

    final_on_add = True
    # The size of the volumes it is written in (a split bundle); None: one file.
    volume_size: int | None = None
    # Whether the images' referrers go in too. Not into a per-image archive: skopeo's and
    # podman's oci-archive:FILE (no ref name) takes an index.json of exactly one entry.
    carries_referrers = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.replaced: list[ReplacedImage] = []
        # The volumes a split bundle is in once written (or found current), its list last.
        self.volumes: list[Path] = []

    def split(self, resolved: list[ResolvedImage], whole: bool) -> list[list[ResolvedImage]]:
        """Which resolved platforms share one archive entry: for per-image archives each its
        own, unless the ``whole`` index is kept (every platform, in one archive)."""
        return [resolved] if whole else [[item] for item in resolved]

    def target(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        """Where the entry of ``resolved`` (platforms of ``spec`` that share one) goes."""
        wanted = resolved[0].wanted if len(resolved) == 1 else None
        return self.directory / archive_name(spec, wanted)

    async def prepare(self) -> None:
        """Make the output directory; :class:`DestinationError` when a file is in the way."""
        await asyncio.to_thread(make_directory, self.directory, "output directory")

    def check_names(
        self, specs: Sequence[ImageSpec], platforms: tuple[Platform, ...], every: bool
    ) -> None:
        """Refuse, before any request, an archive name longer than a file name may be."""
        for spec in specs:
            wanted = spec.choosing(platforms, every)
            for name in sorted(archive_names(wanted)):
                check_length(name, spec.origin or str(spec.source))

    def ref_name(self, spec: ImageSpec) -> str:
        return spec.target.tag or ""

    async def is_current(self, path: Path, image: ArchiveImage) -> bool:
        """Whether ``path`` already holds ``image``; an :class:`OutputError` when something
        other than a regular file is there."""
        held = await asyncio.to_thread(held_images, path)
        return held.get(image.name) == image.digest

    async def add(
        self, path: Path, image: ArchiveImage, supply: BlobSupply, *, rewrite: bool = False
    ) -> bool:
        """Write the image's archive; False when another run installed the same meanwhile
        (unless it is to be written anew, ``rewrite``: ``--force``)."""
        return await self._write(path, [image], supply, rewrite=rewrite)

    async def _write(
        self,
        path: Path,
        images: Sequence[ArchiveImage],
        supply: BlobSupply,
        *,
        rewrite: bool = False,
        delta: bytes | None = None,
    ) -> bool:
        """Lay the archive out, fill its slots, and install it once every one is verified;
        ``delta``: the record of a delta (``delta``), which the archive then carries.

        A partial that cannot be written (a full disk) is removed; one stopped otherwise is kept
        for the next run to resume."""
        plan = plan_archive(images, supply.sizes, supply.inline, delta)
        held = await asyncio.to_thread(held_images, path, self.volume_size)
        archive = await self._open(path, plan, images, rewrite)
        if archive is None:
            return False
        try:
            await all_of(supply.fill(archive, slot) for slot in plan.slots)
            await run_stoppable(functools.partial(_install, archive))
            if self.volume_size is not None:
                self.volumes = [*archive.paths, list_path(path)]
        except BaseException as exc:
            drop = functools.partial(archive.abandon, remove=isinstance(exc, OutputError))
            await shielded(asyncio.to_thread(drop))
            raise
        now = {key: digest for image in images for key, digest in image.held.items()}
        self.replaced += [ReplacedImage(n, d, path) for n, d in held.items() if now.get(n) != d]
        return True

    async def _open(
        self, path: Path, plan: ArchivePlan, images: Sequence[ArchiveImage], rewrite: bool
    ) -> ArchiveFile | None:
        """The partial archive to fill; None once another run has installed these images
        (looked at again under the directory's lock, unless ``rewrite``)."""
        size = self.volume_size
        done = None if rewrite else functools.partial(_holds, path, images, size)
        opening = functools.partial(ArchiveFile.open, path, plan, done=done, volume=size)
        while True:
            try:
                archive = await run_stoppable(opening)
            except OSError as exc:
                raise output_error(exc, path) from exc
            if archive is not None:
                return archive
            if await asyncio.to_thread(_holds, path, images, size):
                return None

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        return results

    def archives(self) -> list[Path]:
        """The archives already in the output, whose blobs a run may take (worker thread)."""
        try:
            with os.scandir(self.directory) as entries:
                return [
                    Path(entry.path)
                    for entry in entries
                    if entry.name.endswith(".tar") and entry.is_file(follow_symlinks=False)
                ]
        except OSError:
            return []


def _holds(path: Path, images: Sequence[ArchiveImage], volume: int | None) -> bool:
    """Whether the archive at ``path`` (its volumes of ``volume``) holds every one of
    ``images``, and the referrers they carry (in a worker thread)."""
    found = held_images(path, volume)
    return all(found.get(key) == d for image in images for key, d in image.held.items())


def _install(archive: ArchiveFile, stop: threading.Event) -> None:
    try:
        archive.install(stop)
    except OSError as exc:
        raise output_error(exc, archive.final) from exc


def check_length(name: str, what: str) -> None:
    length = len(os.fsencode(name))
    if length > NAME_MAX:
        raise DestinationError(
            f"{what}: the archive name {name[:60]}… is {length} bytes long; a file name may "
            f"have at most {NAME_MAX} (rename the image on its list line)"
        )


def make_directory(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DestinationError(f"{what} {path}: a file is in the way of the directory") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise DestinationError(f"{what} {path}: name too long") from None
        raise output_error(exc, path, "create") from exc
