"""Orchestration: resolve every image, download the union of their blobs once, write archives.

Each image is a task: resolve (bounded by ``jobs``), then wait for its blobs, then hand the image
to the output (see ``outputs``: one archive per image, written at once and bounded by ``jobs``;
or one bundle, or an OCI layout directory, written when every image is in). Blobs are downloaded
once for the whole run however many images need them (see ``downloads``), yet each image checks
them against its own descriptor. A :class:`BulkpullError` ends only its own image;
anything else is a bug and propagates. Imports everything below it, never ``cli``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from bulkpull.engine.downloads import Downloads
from bulkpull.engine.entries import Entry, archive_entry
from bulkpull.engine.options import PullOptions
from bulkpull.engine.outputs import make_output
from bulkpull.errors import BulkpullError, ContentError, OutputError, PlatformNotFoundError
from bulkpull.files import output_error
from bulkpull.imagelist import ImageSpec, check_archive_names, image_spec
from bulkpull.manifest import MAX_MANIFEST_BYTES, ImageConfig, parse_config
from bulkpull.output import Output
from bulkpull.platform import Platform
from bulkpull.registry import RegistryClient, SecurityPolicy, Transport
from bulkpull.report import (
    Event,
    EventCallback,
    ImageDone,
    ImageResult,
    ImageStage,
    PullReport,
    Stage,
    Status,
    retry_events,
    working_for,
)
from bulkpull.resolved import ResolvedImage
from bulkpull.retry import RetryListener
from bulkpull.store import BlobStore

log = logging.getLogger("bulkpull")


async def pull_images(
    images: Iterable[ImageSpec | str],
    out_dir: Path | str,
    options: PullOptions | None = None,
    *,
    bundle: Path | str | None = None,
    oci_layout: Path | str | None = None,
    on_event: EventCallback | None = None,
) -> PullReport:
    """Pull every image and report on each.

    By default each image (and platform) gets its own archive in ``out_dir``. With ``bundle``
    every image goes into that one archive instead; with ``oci_layout`` into that OCI image
    layout directory (created, or added to). Strings are parsed as references first, and two
    images that would write the same archive are refused (:class:`ImageListError`), both before
    any network I/O. ``on_event`` hears progress as it happens, including an
    :class:`ImageDone` per result.
    """
    specs = _specs(images)
    options = options or PullOptions()
    check_archive_names(specs, options.platforms, options.all_platforms)
    started, clock = _now(), time.monotonic()
    output, store = make_output(Path(out_dir), bundle, oci_layout, options.store_dir)
    output.check_names(specs, options.platforms, options.all_platforms)
    await output.prepare()
    on_retry = _retry_listener(on_event)
    async with _connect(options, store, on_retry) as registry:
        run = _Run(registry, output, store, options, on_event, on_retry)
        try:
            per_image = await asyncio.gather(*(run.image(spec) for spec in specs))
        finally:
            await run.downloads.close()
        registries = registry.transport.usage()
    results = await output.finish([result for results in per_image for result in results])
    if on_event and not output.final_on_add:
        for result in results:
            on_event(ImageDone(result))
    return PullReport(
        tuple(results),
        run.downloads.downloaded,
        run.downloads.reused,
        time.monotonic() - clock,
        started,
        registries,
        tuple(output.replaced),
    )


async def pull_image(
    reference: str | ImageSpec, out_dir: Path | str, options: PullOptions | None = None
) -> ImageResult:
    """Pull one image into ``out_dir``; the single-image form of :func:`pull_images`."""
    report = await pull_images([reference], out_dir, options)
    return report.results[0]


async def resolve_images(
    images: Iterable[ImageSpec | str],
    options: PullOptions | None = None,
    *,
    store_dir: Path | str | None = None,
    on_event: EventCallback | None = None,
) -> PullReport:
    """Resolve every image to its digests and sizes without downloading a blob (a dry run).

    When ``store_dir`` already holds manifests, tags are asked for with ``HEAD`` first (which
    Docker Hub does not count as a pull) and manifests found there are read from disk.
    """
    specs = _specs(images)
    options = options or PullOptions()
    started, clock = _now(), time.monotonic()
    store = BlobStore(Path(store_dir)) if store_dir is not None else None
    jobs = asyncio.Semaphore(options.jobs)

    async def resolve(spec: ImageSpec) -> list[ImageResult]:
        working_for(spec)
        wanted = spec.choosing(options.platforms, options.all_platforms)
        try:
            async with jobs:
                _emit(on_event, ImageStage(spec, Stage.RESOLVING))
                resolved = await registry.resolve(
                    spec.source, wanted.platforms, every=wanted.all_platforms
                )
            results = [_result(spec, item, Status.RESOLVED, wanted) for item in resolved]
        except BulkpullError as exc:
            results = [ImageResult(spec, Status.FAILED, error=exc)]
        for result in results:
            _emit(on_event, ImageDone(result))
        return results

    async with _connect(options, store, _retry_listener(on_event)) as registry:
        per_image = await asyncio.gather(*(resolve(spec) for spec in specs))
        registries = registry.transport.usage()
    results = tuple(result for results in per_image for result in results)
    return PullReport(
        results, seconds=time.monotonic() - clock, started=started, registries=registries
    )


def _specs(images: Iterable[ImageSpec | str]) -> list[ImageSpec]:
    if isinstance(images, str | bytes):
        # A string is iterable too: "busybox" would be pulled as seven one-letter images.
        raise TypeError(f"images must be a list of references, not one string: [{images!r}]")
    return [image if isinstance(image, ImageSpec) else image_spec(image) for image in images]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _emit(on_event: EventCallback | None, event: Event) -> None:
    if on_event is not None:
        on_event(event)


def _retry_listener(on_event: EventCallback | None) -> RetryListener | None:
    """Retries, told to ``on_event`` as :class:`Retrying` events."""
    return retry_events(on_event) if on_event else None


@asynccontextmanager
async def _connect(
    options: PullOptions, store: BlobStore | None, on_retry: RetryListener | None
) -> AsyncIterator[RegistryClient]:
    """The run's transport, and a registry client that knows the store.

    Only a store that already holds something is worth a ``HEAD`` before each tag's ``GET``:
    on a first run it would cost every image one more round trip and save nothing.
    """
    async with _transport(options, on_retry) as transport:
        worth_asking = store is not None and await store.holds_anything()
        known = functools.partial(store.read_small, limit=MAX_MANIFEST_BYTES) if store else None
        yield RegistryClient(transport, known if worth_asking else None)


def _transport(options: PullOptions, on_retry: RetryListener | None) -> Transport:
    """The transport a pull with ``options`` needs: a connection for every download and every
    image resolving at once."""
    return Transport(
        retry=options.retry,
        on_retry=on_retry,
        timeout=options.timeout,
        connections=options.max_downloads + options.jobs,
        keychain=options.keychain,
        security=SecurityPolicy(
            plain_http=options.plain_http,
            skip_tls_verify=options.skip_tls_verify,
            insecure_registries=options.insecure_registries,
        ),
        ca_cert=options.ca_cert,
        proxies=options.proxies,
        mirrors=options.mirrors,
    )


def _result(
    spec: ImageSpec,
    item: ResolvedImage,
    status: Status,
    wanted: ImageSpec,
    *,
    platform: Platform | None = None,
    written: tuple[Path, Entry] | None = None,
) -> ImageResult:
    """One platform's result; ``wanted`` is the spec with the run's platform choice applied,
    ``written`` where the image went and the entry it got there."""
    chosen = platform or item.platform
    path, entry = written or (None, None)
    return ImageResult(
        spec,
        status,
        manifest_digest=item.manifest.digest,
        source_digest=(item.index or item.manifest).digest,
        config_digest=item.content.config.digest,
        # Normalized, so an index's "arm64/v8" reads as the "arm64" it means.
        platform=chosen.normalized() if chosen else None,
        size=item.size,
        layers=item.content.layers,
        archive=path,
        written_digest=entry.image.digest if entry else None,
        narrowed=entry.narrowed if entry else None,
        all_platforms=wanted.all_platforms,
    )


class _Run:
    """The shared state of one pull: registry client, output, limits and in-flight blobs."""

    def __init__(
        self,
        registry: RegistryClient,
        output: Output,
        store: BlobStore,
        options: PullOptions,
        on_event: EventCallback | None,
        on_retry: RetryListener | None,
    ) -> None:
        self._registry = registry
        self._output = output
        self._store = store
        self._options = options
        self._on_event = on_event
        self._jobs = asyncio.Semaphore(options.jobs)
        self.downloads = Downloads(
            registry, store, options.max_downloads, self._emit, options.retry, on_retry
        )

    def _emit(self, event: Event) -> None:
        _emit(self._on_event, event)

    async def image(self, spec: ImageSpec) -> list[ImageResult]:
        working_for(spec)
        try:
            results = await self._pull(spec)
        except (BulkpullError, OSError) as exc:
            # An OSError is a file of this image's that could not be used: its own failure.
            error = exc if isinstance(exc, BulkpullError) else _file_error(exc, self._output)
            log.info("%s: %s", spec.source, error)
            results = [ImageResult(spec, Status.FAILED, error=error)]
        if self._output.final_on_add:  # else pull_images reports them once the output is written
            for result in results:
                self._emit(ImageDone(result))
        return results

    async def _pull(self, spec: ImageSpec) -> list[ImageResult]:
        wanted = spec.choosing(self._options.platforms, self._options.all_platforms)
        async with self._jobs:
            # Only now: an image waiting for a slot is queued, not resolving.
            self._emit(ImageStage(spec, Stage.RESOLVING))
            resolved = await self._registry.resolve(
                spec.source, wanted.platforms, every=wanted.all_platforms
            )
        _warn_about_layer_types(spec, resolved)
        if resolved[0].index is None and not wanted.all_platforms:
            await self._require_platform(resolved[0], wanted.platforms)
        results = []
        for group in self._output.split(resolved, wanted.all_platforms):
            results += await self._archive(spec, wanted, group)
        return results

    async def _require_platform(self, item: ResolvedImage, wanted: tuple[Platform, ...]) -> None:
        """Docker's rule for an image that is no index: its config must name a platform that
        was asked for, or the image would reach hosts that cannot run it. Only the (small)
        config is downloaded to tell."""
        config = await self._config(item)
        if not config.architecture:
            return  # the config names no platform to hold against the request
        if all(platform.match_rank(config.platform) is None for platform in wanted):
            shown = str(config.platform.normalized())
            raise PlatformNotFoundError.only(
                str(item.reference), shown, [str(platform) for platform in wanted]
            )

    async def _archive(
        self, spec: ImageSpec, wanted: ImageSpec, resolved: list[ResolvedImage]
    ) -> list[ImageResult]:
        entry = await self._entry(spec, wanted, resolved)
        # A per-image archive is named after its platform whenever several platforms were asked
        # for: on the list line, or for the whole run (--platform given more than once).
        path = self._output.destination(wanted, resolved)
        written = (path, entry)
        # Asked even with --force: something other than a regular file there fails the image.
        current = await self._output.is_current(path, entry.image)
        if current and not self._options.force:
            status = Status.UP_TO_DATE
            return [_result(spec, item, status, wanted, written=written) for item in resolved]
        # The blobs it waits for: manifests are already in hand, and never BlobDone.
        blobs = tuple(dict.fromkeys(blob.digest for item in resolved for blob in item.blobs))
        platforms = tuple(item.platform.normalized() for item in resolved if item.platform)
        self._emit(ImageStage(spec, Stage.DOWNLOADING, blobs, platforms))
        configs = await asyncio.gather(*(self._download_image(item) for item in resolved))
        self._emit(ImageStage(spec, Stage.WRITING, platforms=platforms))
        async with self._jobs:
            await self._output.add(path, entry.image)
        return [
            _result(
                spec,
                item,
                Status.PULLED,
                wanted,
                platform=item.platform or (config.platform if config else None),
                written=written,
            )
            for item, config in zip(resolved, configs, strict=True)
        ]

    async def _entry(
        self, spec: ImageSpec, wanted: ImageSpec, resolved: list[ResolvedImage]
    ) -> Entry:
        """The archive entry; every manifest it needs goes into the store, so a rerun finds
        it there instead of downloading it."""
        entry = archive_entry(
            str(spec.target),
            self._output.ref_name(spec),
            resolved,
            every=wanted.all_platforms,
            docker_platform=wanted.platforms[0],
        )
        for manifest in entry.manifests:
            await self._store.put_bytes(manifest.digest, manifest.raw)
        return entry

    async def _download_image(self, resolved: ResolvedImage) -> ImageConfig | None:
        """The config first: it is small, and it decides whether the layers are of any use."""
        config = await self._config(resolved) if resolved.is_image else None
        reference = resolved.reference
        await asyncio.gather(*(self.downloads.fetch(reference, blob) for blob in resolved.blobs))
        return config

    async def _config(self, resolved: ResolvedImage) -> ImageConfig:
        """Download, read and check the config against the manifest: docker load refuses an
        image whose layer count differs from ``rootfs.diff_ids``."""
        _check_config_size(resolved)
        await self.downloads.fetch(resolved.reference, resolved.content.config)
        what = f"config of {resolved.reference}"
        raw = await self._store.read_small(resolved.content.config.digest, MAX_MANIFEST_BYTES)
        if raw is None:
            raise ContentError(f"{what}: not in the store, or larger than a config may be")
        config = parse_config(raw, what)
        if len(config.diff_ids) != len(resolved.content.layers):
            raise ContentError(
                f"{what}: {len(config.diff_ids)} diff_ids for {len(resolved.content.layers)} layers"
            )
        return config


def _file_error(exc: OSError, output: Output) -> OutputError:
    return output_error(exc, output.out_dir, "use")


def _check_config_size(resolved: ResolvedImage) -> None:
    """Refuse an oversized config before downloading it: it is read into memory, and no real
    config comes near the manifest cap (containers/image applies the same limit)."""
    size = resolved.content.config.size
    if size > MAX_MANIFEST_BYTES:
        raise ContentError(f"config of {resolved.reference}: {size} bytes is too large")


def _warn_about_layer_types(spec: ImageSpec, resolved: list[ResolvedImage]) -> None:
    if any("zstd" in layer.media_type for item in resolved for layer in item.content.layers):
        log.warning("%s has zstd layers: Docker before 23.0 cannot load it", spec.source)
