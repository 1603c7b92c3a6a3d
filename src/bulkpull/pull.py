"""Orchestration: resolve every image, download the union of their blobs once, write archives.

Each image is a task: resolve (bounded by ``jobs``), then wait for its blobs, then write its
archive (bounded by ``jobs`` again). Blobs are shared tasks keyed by digest, so a layer that ten
images need is downloaded once even when all ten ask at the same moment; one semaphore bounds
downloads across the whole run. A :class:`BulkpullError` ends only its own image; anything else is
a bug and propagates. Imports everything below it, never ``cli``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bulkpull.archive import ArchiveImage, write_archive
from bulkpull.blobstore import BlobStore
from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, ContentError, DigestMismatchError
from bulkpull.imagelist import ImageSpec, image_spec
from bulkpull.manifest import MAX_MANIFEST_BYTES, Descriptor, ImageConfig, parse_config
from bulkpull.options import PullOptions
from bulkpull.platform import Platform
from bulkpull.reference import Reference
from bulkpull.registry import RegistryClient, ResolvedImage
from bulkpull.transport import Transport, open_session

log = logging.getLogger("bulkpull")

STORE_DIRNAME = ".bulkpull-store"


@dataclass(frozen=True, slots=True)
class ImageResult:
    """The outcome for one image: what was written, or why not."""

    spec: ImageSpec
    manifest_digest: Digest | None = None
    platform: Platform | None = None
    size: int = 0
    archive: Path | None = None
    error: BulkpullError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class PullReport:
    """Every image's result, in the order of the list."""

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
    on_result: ResultCallback | None = None,
) -> PullReport:
    """Pull every image into ``out_dir`` (one archive each) and report on each.

    Strings are parsed as references first, so a bad one raises before any network I/O.
    ``on_result`` is called as each image finishes, in completion order.
    """
    specs = [image if isinstance(image, ImageSpec) else image_spec(image) for image in images]
    options = options or PullOptions()
    out = Path(out_dir)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    store = BlobStore(options.store_dir or out / STORE_DIRNAME)
    connections = options.max_downloads + options.jobs
    async with open_session(timeout=options.timeout, connections=connections) as session:
        transport = Transport(
            session,
            retry=options.retry,
            credentials=options.credentials,
            plain_http=options.plain_http,
            skip_tls_verify=options.skip_tls_verify,
        )
        run = _Run(RegistryClient(transport), store, options, out, on_result)
        try:
            results = await asyncio.gather(*(run.image(spec) for spec in specs))
        finally:
            await run.close()
    return PullReport(tuple(results))


async def pull_image(
    reference: str | ImageSpec, out_dir: Path | str, options: PullOptions | None = None
) -> ImageResult:
    """Pull one image into ``out_dir``; the single-image form of :func:`pull_images`."""
    report = await pull_images([reference], out_dir, options)
    return report.results[0]


class _Run:
    """The shared state of one pull: registry client, store, limits and in-flight blobs."""

    def __init__(
        self,
        registry: RegistryClient,
        store: BlobStore,
        options: PullOptions,
        out_dir: Path,
        on_result: ResultCallback | None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._options = options
        self._out_dir = out_dir
        self._on_result = on_result
        self._jobs = asyncio.Semaphore(options.jobs)
        self._downloads = asyncio.Semaphore(options.max_downloads)
        self._blobs: dict[Digest, asyncio.Task[Path]] = {}

    async def image(self, spec: ImageSpec) -> ImageResult:
        try:
            result = await self._pull(spec)
        except BulkpullError as exc:
            log.info("%s: %s", spec.source, exc)
            result = ImageResult(spec, error=exc)
        if self._on_result:
            self._on_result(result)
        return result

    async def close(self) -> None:
        """Stop downloads no image waits for any more (their partial files stay for resume)."""
        pending = [task for task in self._blobs.values() if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _pull(self, spec: ImageSpec) -> ImageResult:
        async with self._jobs:
            resolved = await self._registry.resolve(spec.source, self._options.platform)
        manifest = resolved.manifest
        _check_config_size(resolved)
        await self._store.put_bytes(manifest.digest, manifest.raw)
        await asyncio.gather(*(self._blob(spec.source, blob) for blob in resolved.blobs))
        config = await self._config(resolved)
        path = self._out_dir / spec.archive_filename
        image = ArchiveImage(
            name=str(spec.target),
            ref_name=spec.target.tag or "",
            manifest=manifest.digest,
            manifest_media_type=resolved.content.media_type,
            manifest_size=manifest.size,
            config=resolved.content.config.digest,
            layers=tuple(layer.digest for layer in resolved.content.layers),
        )
        async with self._jobs:
            await asyncio.to_thread(write_archive, path, [image], self._store.path)
        platform = resolved.platform or config.platform
        return ImageResult(spec, manifest.digest, platform, resolved.size, path)

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
        descriptor = resolved.content.config
        what = f"config of {resolved.reference}"
        config = parse_config(await self._store.read_small(descriptor.digest), what)
        if len(config.diff_ids) != len(resolved.content.layers):
            raise ContentError(
                f"{what}: {len(config.diff_ids)} diff_ids for {len(resolved.content.layers)} layers"
            )
        return config


def _check_config_size(resolved: ResolvedImage) -> None:
    """Refuse an oversized config before downloading it: it is read into memory, and no real
    config comes near the manifest cap (containers/image applies the same limit)."""
    size = resolved.content.config.size
    if size > MAX_MANIFEST_BYTES:
        raise ContentError(f"config of {resolved.reference}: {size} bytes is too large")
