"""Where pulled images go: one archive per image, one bundle, or an OCI layout directory.

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
index written, in a worker thread through ``files.run_stoppable``: a cancellation stops the
work before it installs anything, or lets an install already under way finish so that it is
reported. What a final name holds is read in a worker thread too, and anything there that is
not a regular file (a FIFO would hang the run) is an error for the image. Imports ``archive``,
``filling``, ``contents``, ``layout``, ``readback``, ``files``, ``imagelist``, ``report`` and
the other value modules.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, DestinationError, OutputError
from bulkpull.files import NAME_MAX, kind_of, output_error, run_stoppable, shielded
from bulkpull.imagelist import ImageSpec, archive_name, archive_names
from bulkpull.output.archive import ArchivePlan, Slot, plan_archive
from bulkpull.output.contents import (
    CONTAINERD_NAME,
    OCI_REF_NAME,
    REFERRER_OF,
    ArchiveImage,
    referrer_key,
)
from bulkpull.output.filling import ArchiveFile
from bulkpull.output.layout import read_layout_index, update_layout
from bulkpull.output.readback import held_images
from bulkpull.platform import Platform
from bulkpull.report import ImageResult, ReplacedImage, Status
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
    # Whether the images' referrers go in too. Not into a per-image archive: skopeo's and
    # podman's oci-archive:FILE (no ref name) takes an index.json of exactly one entry.
    carries_referrers = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.replaced: list[ReplacedImage] = []

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
        await asyncio.to_thread(_make_directory, self.directory, "output directory")

    def check_names(
        self, specs: Sequence[ImageSpec], platforms: tuple[Platform, ...], every: bool
    ) -> None:
        """Refuse, before any request, an archive name longer than a file name may be."""
        for spec in specs:
            wanted = spec.choosing(platforms, every)
            for name in sorted(archive_names(wanted)):
                _check_length(name, spec.origin or str(spec.source))

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
    ) -> bool:
        """Lay the archive out, fill its slots, and install it once every one is verified.

        A partial that cannot be written (a full disk) is removed; one stopped otherwise is kept
        for the next run to resume."""
        plan = plan_archive(images, supply.sizes, supply.inline)
        held = await asyncio.to_thread(held_images, path)
        archive = await self._open(path, plan, images, rewrite)
        if archive is None:
            return False
        try:
            await all_of(supply.fill(archive, slot) for slot in plan.slots)
            await run_stoppable(lambda stop: _install(archive))
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
        done = None if rewrite else functools.partial(_holds, path, images)
        while True:
            try:
                archive = await run_stoppable(
                    functools.partial(ArchiveFile.open, path, plan, done=done)
                )
            except OSError as exc:
                raise output_error(exc, path) from exc
            if archive is not None:
                return archive
            if await asyncio.to_thread(_holds, path, images):
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
    """Every image in one archive: one index.json and one manifest.json entry per image."""

    def __init__(self, path: Path) -> None:
        super().__init__(path.parent)
        self.path = path

    def target(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        return self.path

    def archives(self) -> list[Path]:
        return [self.path]

    async def prepare(self) -> None:
        """Refuse a bundle name that is not, or cannot be, a regular file; make its directory."""
        await asyncio.to_thread(_check_bundle, self.path)
        await asyncio.to_thread(_make_directory, self.path.parent, "output directory")

    async def is_current(self, path: Path, image: ArchiveImage) -> bool:
        return False  # decided for the whole bundle in finish()

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        images = sorted(self.images, key=lambda image: image.name)
        if not images:
            return results
        try:
            held = await asyncio.to_thread(held_images, self.path)
            if held == {key: d for image in images for key, d in image.held.items()}:
                return [replace(r, status=Status.UP_TO_DATE) if r.ok else r for r in results]
            failed = await self._fill(images)
        except OutputError as exc:
            return _failed(results, exc)
        return [
            _failed_one(r, failed[str(r.spec.target)]) if str(r.spec.target) in failed else r
            for r in results
        ]

    async def _fill(self, images: list[ArchiveImage]) -> dict[str, BulkpullError]:
        """Write the bundle; an image whose blob cannot be had is left out (it fails alone)
        and the bundle is laid out again without it, its blobs copied from the first try."""
        failed: dict[str, BulkpullError] = {}
        while images:
            supply = _Merged([self.supplies[image.name] for image in images])
            try:
                await self._write(self.path, images, supply)
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
        await asyncio.to_thread(_make_directory, self.directory, "OCI layout")

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
                functools.partial(update_layout, self.directory, self.images)
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


def _holds(path: Path, images: Sequence[ArchiveImage]) -> bool:
    """Whether the archive at ``path`` holds every one of ``images``, and the referrers they
    carry (in a worker thread)."""
    found = held_images(path)
    return all(found.get(key) == d for image in images for key, d in image.held.items())


def _install(archive: ArchiveFile) -> None:
    try:
        archive.install()
    except OSError as exc:
        raise output_error(exc, archive.final) from exc


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


def _check_length(name: str, what: str) -> None:
    length = len(os.fsencode(name))
    if length > NAME_MAX:
        raise DestinationError(
            f"{what}: the archive name {name[:60]}… is {length} bytes long; a file name may "
            f"have at most {NAME_MAX} (rename the image on its list line)"
        )


def _make_directory(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DestinationError(f"{what} {path}: a file is in the way of the directory") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise DestinationError(f"{what} {path}: name too long") from None
        raise output_error(exc, path, "create") from exc


def _check_bundle(path: Path) -> None:
    _check_length(path.name, f"bundle {path}")
    try:
        found = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise DestinationError(f"bundle {path}: a file is in the way of its directory") from None
    kind = kind_of(found.st_mode)
    if kind is not None:
        raise DestinationError(f"bundle {path} is {kind}; name the archive file to write")
