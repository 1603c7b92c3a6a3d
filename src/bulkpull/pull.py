"""Orchestration: resolve every image, download the union of their blobs once, write archives.

Each image is a task: resolve (bounded by ``jobs``), then wait for its blobs, then hand the image
to the output: one archive per image (written at once, bounded by ``jobs``), one bundle for all,
or an OCI layout directory (both written when every image is in). Blobs are shared tasks keyed by
digest, so a layer that ten images need is downloaded once even when all ten ask at the same
moment; one semaphore bounds downloads across the whole run. A :class:`BulkpullError` ends only its
own image; anything else is a bug and propagates. Imports everything below it, never ``cli``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bulkpull.archive import ArchiveImage, ImageContent, update_layout, write_archive
from bulkpull.blobstore import BlobStore
from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, ContentError, DigestMismatchError, OutputError
from bulkpull.imagelist import ImageSpec, image_spec
from bulkpull.manifest import MAX_MANIFEST_BYTES, Descriptor, ImageConfig, parse_config
from bulkpull.options import PullOptions
from bulkpull.platform import Platform
from bulkpull.reference import Reference
from bulkpull.registry import RegistryClient, ResolvedImage
from bulkpull.transport import Transport, open_session
from bulkpull.verify import archive_digests

log = logging.getLogger("bulkpull")

STORE_DIRNAME = ".bulkpull-store"


@dataclass(frozen=True, slots=True)
class ImageResult:
    """The outcome for one image and platform: what was written, or why not.

    ``archive`` is the image's own archive, the bundle, or the OCI layout directory.
    ``up_to_date`` means the archive already held this exact image and was left alone.
    """

    spec: ImageSpec
    manifest_digest: Digest | None = None
    platform: Platform | None = None
    size: int = 0
    archive: Path | None = None
    error: BulkpullError | None = None
    up_to_date: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class PullReport:
    """Every result, in the order of the list (platforms in the order asked for)."""

    results: tuple[ImageResult, ...]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def failed(self) -> tuple[ImageResult, ...]:
        return tuple(result for result in self.results if not result.ok)


ResultCallback = Callable[[ImageResult], None]


async def pull_images(
    images: Iterable[ImageSpec | str],
    out_dir: Path | str,
    options: PullOptions | None = None,
    *,
    bundle: Path | str | None = None,
    oci_layout: Path | str | None = None,
    on_result: ResultCallback | None = None,
) -> PullReport:
    """Pull every image and report on each.

    By default each image (and platform) gets its own archive in ``out_dir``. With ``bundle``
    every image goes into that one archive instead; with ``oci_layout`` into that OCI image
    layout directory (created, or added to). Strings are parsed as references first, so a bad
    one raises before any network I/O. ``on_result`` is called as each image finishes.
    """
    specs = [image if isinstance(image, ImageSpec) else image_spec(image) for image in images]
    options = options or PullOptions()
    output = await _make_output(Path(out_dir), bundle, oci_layout, options)
    connections = options.max_downloads + options.jobs
    async with open_session(timeout=options.timeout, connections=connections) as session:
        transport = Transport(
            session,
            retry=options.retry,
            credentials=options.credentials,
            plain_http=options.plain_http,
            skip_tls_verify=options.skip_tls_verify,
        )
        early = on_result if output.final_on_add else None
        run = _Run(RegistryClient(transport), output, options, early)
        try:
            per_image = await asyncio.gather(*(run.image(spec) for spec in specs))
        finally:
            await run.close()
    results = await output.finish([result for results in per_image for result in results])
    if on_result and not early:
        for result in results:
            on_result(result)
    return PullReport(tuple(results))


async def pull_image(
    reference: str | ImageSpec, out_dir: Path | str, options: PullOptions | None = None
) -> ImageResult:
    """Pull one image into ``out_dir``; the single-image form of :func:`pull_images`."""
    report = await pull_images([reference], out_dir, options)
    return report.results[0]


class _Output:
    """Where pulled images go. Per-image archives are written as images arrive; a bundle or
    layout collects them and is written by :meth:`finish`.

    ``keeps_indexes``: whether a multi-platform image goes in as its index (narrowed to the
    platforms pulled) or, for per-image archives, as one platform's manifest per archive.
    """

    keeps_indexes = False
    final_on_add = True

    def __init__(self, store: BlobStore, out_dir: Path) -> None:
        self.store = store
        self.out_dir = out_dir

    def split(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> list[list[ResolvedImage]]:
        """Which resolved platforms share one archive: each its own, for per-image archives."""
        return [[item] for item in resolved]

    def destination(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        suffix = ""
        if len(resolved) == 1 and resolved[0].platform and _platform_count(spec) > 1:
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


class _Bundle(_Output):
    """Every image in one archive: one index.json and one manifest.json entry per image."""

    keeps_indexes = True
    final_on_add = False

    def __init__(self, store: BlobStore, out_dir: Path, path: Path) -> None:
        super().__init__(store, out_dir)
        self.path = path
        self.images: list[ArchiveImage] = []

    def split(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> list[list[ResolvedImage]]:
        return [resolved]

    def destination(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        return self.path

    def ref_name(self, spec: ImageSpec) -> str:
        return str(spec.target)  # tags alone collide between images

    def is_current(self, path: Path, image: ArchiveImage) -> bool:
        return False  # decided for the whole bundle in finish()

    async def add(self, path: Path, image: ArchiveImage) -> None:
        self.images.append(image)

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        images = sorted(self.images, key=lambda image: image.name)
        wanted = {image.name: image.digest for image in images}
        if images and archive_digests(self.path) == wanted:
            return [replace(r, up_to_date=True) if r.ok else r for r in results]
        if images:
            try:
                await asyncio.to_thread(_write, self.path, images, self.store)
            except OutputError as exc:
                return [replace(r, error=exc) if r.ok else r for r in results]
        return results


class _Layout(_Output):
    """An OCI image layout directory; its ``blobs`` directory is the blob store itself."""

    keeps_indexes = True
    final_on_add = False

    def __init__(self, directory: Path) -> None:
        super().__init__(BlobStore(directory / "blobs"), directory)
        self.directory = directory
        self.images: list[ArchiveImage] = []

    split = _Bundle.split
    ref_name = _Bundle.ref_name

    def destination(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> Path:
        return self.directory

    def is_current(self, path: Path, image: ArchiveImage) -> bool:
        index = self.directory / "index.json"
        if not index.exists() or not all(self.store.has(d) for d in image.blobs):
            return False
        return image.descriptor in json.loads(index.read_bytes()).get("manifests", [])

    async def add(self, path: Path, image: ArchiveImage) -> None:
        self.images.append(image)

    async def finish(self, results: list[ImageResult]) -> list[ImageResult]:
        if self.images:
            await asyncio.to_thread(update_layout, self.directory, self.images)
        return results


async def _make_output(
    out_dir: Path, bundle: Path | str | None, oci_layout: Path | str | None, options: PullOptions
) -> _Output:
    if bundle is not None and oci_layout is not None:
        raise ValueError("choose a bundle or an OCI layout, not both")
    if oci_layout is not None:
        await asyncio.to_thread(Path(oci_layout).mkdir, parents=True, exist_ok=True)
        return _Layout(Path(oci_layout))
    target = Path(bundle).parent if bundle is not None else out_dir
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    store = BlobStore(options.store_dir or target / STORE_DIRNAME)
    if bundle is not None:
        return _Bundle(store, out_dir, Path(bundle))
    return _Output(store, out_dir)


def _write(path: Path, images: Sequence[ArchiveImage], store: BlobStore) -> None:
    try:
        write_archive(path, images, store.path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc


def _platform_count(spec: ImageSpec) -> int:
    return len(spec.platforms) if spec.platforms else 0


class _Run:
    """The shared state of one pull: registry client, output, limits and in-flight blobs."""

    def __init__(
        self,
        registry: RegistryClient,
        output: _Output,
        options: PullOptions,
        on_result: ResultCallback | None,
    ) -> None:
        self._registry = registry
        self._on_result = on_result
        self._output = output
        self._store = output.store
        self._options = options
        self._jobs = asyncio.Semaphore(options.jobs)
        self._downloads = asyncio.Semaphore(options.max_downloads)
        self._blobs: dict[Digest, asyncio.Task[Path]] = {}

    async def image(self, spec: ImageSpec) -> list[ImageResult]:
        try:
            results = await self._pull(spec)
        except BulkpullError as exc:
            log.info("%s: %s", spec.source, exc)
            results = [ImageResult(spec, error=exc)]
        if self._on_result:
            for result in results:
                self._on_result(result)
        return results

    async def close(self) -> None:
        """Stop downloads no image waits for any more (their partial files stay for resume)."""
        pending = [task for task in self._blobs.values() if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _pull(self, spec: ImageSpec) -> list[ImageResult]:
        platforms = spec.platforms or self._options.platforms
        async with self._jobs:
            resolved = await self._registry.resolve(spec.source, platforms)
        _warn_about_layer_types(spec, resolved)
        results = []
        for group in self._output.split(spec, resolved):
            results += await self._archive(spec, group)
        return results

    async def _archive(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> list[ImageResult]:
        image = await self._archive_image(spec, resolved)
        path = self._output.destination(spec, resolved)
        platforms = [item.platform for item in resolved]
        current = not self._options.force and self._output.is_current(path, image)
        if not current:
            configs = await asyncio.gather(*(self._download_image(item) for item in resolved))
            platforms = [p or config.platform for p, config in zip(platforms, configs, strict=True)]
            async with self._jobs:
                await self._output.add(path, image)
        return [
            ImageResult(spec, item.manifest.digest, platform, item.size, path, up_to_date=current)
            for item, platform in zip(resolved, platforms, strict=True)
        ]

    async def _archive_image(self, spec: ImageSpec, resolved: list[ResolvedImage]) -> ArchiveImage:
        """Describe the archive entry: a manifest, or an index narrowed to what was pulled."""
        contents = tuple(
            ImageContent(
                item.manifest.digest,
                item.content.config.digest,
                tuple(layer.digest for layer in item.content.layers),
            )
            for item in resolved
        )
        top, media_type = resolved[0].manifest, resolved[0].content.media_type
        index = resolved[0].index
        if index is not None and self._output.keeps_indexes:
            raw = _narrowed_index(index.raw, [item.manifest.digest for item in resolved])
            top, media_type = replace(index, raw=raw, digest=Digest.of(raw)), index.media_type
        for manifest in {top, *(item.manifest for item in resolved)}:
            await self._store.put_bytes(manifest.digest, manifest.raw)
        return ArchiveImage(
            name=str(spec.target),
            ref_name=self._output.ref_name(spec),
            media_type=media_type,
            digest=top.digest,
            size=top.size,
            contents=contents,
        )

    async def _download_image(self, resolved: ResolvedImage) -> ImageConfig:
        _check_config_size(resolved)
        reference = resolved.reference
        await asyncio.gather(*(self._blob(reference, blob) for blob in resolved.blobs))
        return await self._config(resolved)

    def _blob(self, reference: Reference, blob: Descriptor) -> asyncio.Future[Path]:
        """The single download of ``blob`` for the whole run, whoever asks first."""
        task = self._blobs.get(blob.digest)
        if task is None:
            task = asyncio.create_task(self._download(reference, blob))
            self._blobs[blob.digest] = task
        # Shielded: one image giving up must not cancel a download other images wait for.
        return asyncio.shield(task)

    async def _download(self, reference: Reference, blob: Descriptor) -> Path:
        what = f"blob {blob.digest} of {reference.name}"

        def attempt() -> Awaitable[Path]:
            return self._store.ingest(
                blob.digest,
                blob.size,
                lambda offset: self._registry.open_blob(reference, blob.digest, offset),
                what,
            )

        if self._store.has(blob.digest):
            return self._store.path(blob.digest)
        async with self._downloads:
            try:
                return await self._registry.transport.retrying(attempt)
            except DigestMismatchError as first:
                # The store dropped the bad bytes; one more try from zero, then give up.
                log.info("%s; downloading again", first)
                try:
                    return await self._registry.transport.retrying(attempt)
                except BulkpullError as second:
                    second.tries += first.tries
                    raise

    async def _config(self, resolved: ResolvedImage) -> ImageConfig:
        """Read the config and check it against the manifest: docker load refuses an image
        whose layer count differs from ``rootfs.diff_ids``."""
        what = f"config of {resolved.reference}"
        raw = await self._store.read_small(resolved.content.config.digest)
        config = parse_config(raw, what)
        if len(config.diff_ids) != len(resolved.content.layers):
            raise ContentError(
                f"{what}: {len(config.diff_ids)} diff_ids for {len(resolved.content.layers)} layers"
            )
        return config


def _narrowed_index(raw: bytes, keep: list[Digest]) -> bytes:
    """The index as the registry sent it when every entry was pulled; otherwise the same
    index holding only the pulled entries, so no archive names a blob it does not carry."""
    document = json.loads(raw)
    entries = document.get("manifests", [])
    kept = [entry for entry in entries if entry.get("digest") in {str(d) for d in keep}]
    if len(kept) == len(entries):
        return raw
    return json.dumps({**document, "manifests": kept}, separators=(",", ":")).encode()


def _check_config_size(resolved: ResolvedImage) -> None:
    """Refuse an oversized config before downloading it: it is read into memory, and no real
    config comes near the manifest cap (containers/image applies the same limit)."""
    size = resolved.content.config.size
    if size > MAX_MANIFEST_BYTES:
        raise ContentError(f"config of {resolved.reference}: {size} bytes is too large")


def _warn_about_layer_types(spec: ImageSpec, resolved: list[ResolvedImage]) -> None:
    if any("zstd" in layer.media_type for item in resolved for layer in item.content.layers):
        log.warning("%s has zstd layers: Docker before 23.0 cannot load it", spec.source)
