"""Where pulled images go: one archive per image, one bundle, or an OCI layout directory.

Each output says which platforms of an image share an entry, where it is written, what its
OCI ref name is, and whether what is there already holds the image (a rerun then leaves it
alone). Per-image archives are written as images arrive; a bundle or a layout collects images
and is written once, by :meth:`Output.finish`. Imports ``archive``, ``blobstore``, ``verify``,
``imagelist``, ``registry`` and ``report``.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bulkpull.archive import ArchiveImage, update_layout, write_archive
from bulkpull.blobstore import BlobStore
from bulkpull.errors import OutputError
from bulkpull.imagelist import ImageSpec
from bulkpull.registry import ResolvedImage
from bulkpull.report import ImageResult, Status
from bulkpull.verify import archive_digests

STORE_DIRNAME = ".bulkpull-store"


class Output:
    """Where pulled images go. Per-image archives are written as images arrive; a bundle or
    layout collects them and is written by :meth:`finish`.

    ``final_on_add``: whether a result is final once the image is added (else after finish).
    """

    final_on_add = True

    def __init__(self, store: BlobStore, out_dir: Path) -> None:
        self.store = store
        self.out_dir = out_dir

    def split(self, resolved: list[ResolvedImage], whole: bool) -> list[list[ResolvedImage]]:
        """Which resolved platforms share one archive entry: for per-image archives each its
        own, unless the ``whole`` index is kept (every platform, in one archive)."""
        return [resolved] if whole else [[item] for item in resolved]

    def destination(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        suffix = ""
        several = len(spec.platforms) > 1 and not spec.all_platforms
        if len(resolved) == 1 and resolved[0].platform and several:
            suffix = "_" + str(resolved[0].platform.normalized()).replace("/", "_")
        return self.out_dir / spec.archive_filename.replace(".tar", f"{suffix}.tar")

    def ref_name(self, spec: ImageSpec) -> str:
        return spec.target.tag or ""

    def is_current(self, path: Path, image: ArchiveImage) -> bool:
        return archive_digests(path).get(image.name) == image.digest

    async def add(self, path: Path, image: ArchiveImage) -> None:
        await asyncio.to_thread(_write, path, [image], self.store)

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        return results


class _Collecting(Output):
    """An output that holds every image of the run under one name each, written at the end:
    all platforms of an image share one entry, named by its full reference (tags alone
    collide between images)."""

    final_on_add = False

    def __init__(self, store: BlobStore, out_dir: Path) -> None:
        super().__init__(store, out_dir)
        self.images: list[ArchiveImage] = []

    def split(self, resolved: list[ResolvedImage], whole: bool) -> list[list[ResolvedImage]]:
        return [resolved]

    def ref_name(self, spec: ImageSpec) -> str:
        return str(spec.target)

    async def add(self, path: Path, image: ArchiveImage) -> None:
        self.images.append(image)


class Bundle(_Collecting):
    """Every image in one archive: one index.json and one manifest.json entry per image."""

    def __init__(self, store: BlobStore, out_dir: Path, path: Path) -> None:
        super().__init__(store, out_dir)
        self.path = path

    def destination(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        return self.path

    def is_current(self, path: Path, image: ArchiveImage) -> bool:
        return False  # decided for the whole bundle in finish()

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        images = sorted(self.images, key=lambda image: image.name)
        if not images:
            return results
        if archive_digests(self.path) == {image.name: image.digest for image in images}:
            return [replace(r, status=Status.UP_TO_DATE) if r.ok else r for r in results]
        try:
            await asyncio.to_thread(_write, self.path, images, self.store)
        except OutputError as exc:
            return [r.as_failed(exc) if r.ok else r for r in results]
        return results


class Layout(_Collecting):
    """An OCI image layout directory; its ``blobs`` directory is the blob store itself."""

    def __init__(self, directory: Path) -> None:
        super().__init__(BlobStore(store_location(directory, oci_layout=directory)), directory)
        self.directory = directory

    def destination(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        return self.directory

    @functools.cached_property
    def _existing_entries(self) -> list[object]:
        """The layout's index entries as the run found them; read once, not once per image
        (the index is rewritten only by :meth:`finish`)."""
        index = self.directory / "index.json"
        if not index.exists():
            return []
        entries = json.loads(index.read_bytes()).get("manifests", [])
        return entries if isinstance(entries, list) else []

    def is_current(self, path: Path, image: ArchiveImage) -> bool:
        if image.descriptor not in self._existing_entries:
            return False
        return all(self.store.has(digest) for digest in image.blobs)

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        if self.images:
            try:
                await asyncio.to_thread(update_layout, self.directory, self.images)
            except OSError as exc:
                error = OutputError(f"cannot write {self.directory / 'index.json'}: {exc}")
                return [r.as_failed(error) for r in results]
        return results


async def make_output(
    out_dir: Path, bundle: Path | str | None, oci_layout: Path | str | None, store_dir: Path | None
) -> Output:
    """The output a pull asked for; the blob store sits next to it unless ``store_dir``."""
    if bundle is not None and oci_layout is not None:
        raise ValueError("choose a bundle or an OCI layout, not both")
    if oci_layout is not None:
        await asyncio.to_thread(Path(oci_layout).mkdir, parents=True, exist_ok=True)
        return Layout(Path(oci_layout))
    target = Path(bundle).parent if bundle is not None else out_dir
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    store = BlobStore(store_location(out_dir, bundle=bundle, store_dir=store_dir))
    if bundle is not None:
        return Bundle(store, out_dir, Path(bundle))
    return Output(store, out_dir)


def store_location(
    out_dir: Path | str,
    *,
    bundle: Path | str | None = None,
    oci_layout: Path | str | None = None,
    store_dir: Path | str | None = None,
) -> Path:
    """The blob store a pull into these outputs uses, so that a dry run (or any other tool)
    finds what earlier pulls verified there.

    An OCI layout's own ``blobs`` directory; otherwise ``store_dir`` when given, else
    ``.bulkpull-store`` next to the bundle or the archives.
    """
    if oci_layout is not None:
        return Path(oci_layout) / "blobs"
    if store_dir is not None:
        return Path(store_dir)
    return (Path(bundle).parent if bundle is not None else Path(out_dir)) / STORE_DIRNAME


def _write(path: Path, images: Sequence[ArchiveImage], store: BlobStore) -> None:
    try:
        write_archive(path, images, store.path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
