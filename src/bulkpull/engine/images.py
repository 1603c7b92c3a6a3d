"""One image through the run: resolve, check what is there, fetch its blobs, hand it to the
output, and its results.

Resolving and writing each take one of ``jobs`` slots. The platforms of an image that get an
entry each (per-image archives) are fetched and written together, as one group of tasks: the
first to fail stops the others, and the image fails with that error. A :class:`BulkpullError`
(or an ``OSError`` of one of its files) ends only its own image; anything else is a bug, which
propagates and ends the run. Imports ``registry``, ``store``, ``output``, ``downloads``,
``configs``, ``entries``, ``referrers``, ``results`` and the value modules.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from bulkpull.engine.configs import ImageBlobs
from bulkpull.engine.downloads import Downloads
from bulkpull.engine.entries import Entry, archive_entry
from bulkpull.engine.options import PullOptions
from bulkpull.engine.referrers import Companions, ImageReferrers
from bulkpull.engine.results import result
from bulkpull.errors import BulkpullError, OutputError
from bulkpull.files import output_error
from bulkpull.imagelist import ImageSpec
from bulkpull.output import Output
from bulkpull.registry import RegistryClient
from bulkpull.report import (
    Event,
    EventCallback,
    ImageDone,
    ImageResult,
    ImageStage,
    Stage,
    Status,
    working_for,
)
from bulkpull.resolved import ResolvedImage
from bulkpull.store import BlobStore
from bulkpull.tasks import EXPECTED, all_of

log = logging.getLogger("bulkpull")


class ImagePipeline:
    """The images of one pull, each through the same registry client, output and downloads."""

    def __init__(
        self,
        registry: RegistryClient,
        output: Output,
        store: BlobStore,
        downloads: Downloads,
        options: PullOptions,
        on_event: EventCallback | None,
    ) -> None:
        self._registry = registry
        self._output = output
        self._store = store
        self._blobs = ImageBlobs(downloads, store)
        self._referrers = ImageReferrers(
            registry,
            downloads,
            store,
            carry=options.referrers and output.carries_referrers,
            types=options.referrer_types,
            key=options.verify_key,
        )
        self._options = options
        self._on_event = on_event
        self._jobs = asyncio.Semaphore(options.jobs)

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def image(self, spec: ImageSpec) -> list[ImageResult]:
        """The image's results, a failed one when it could not be pulled."""
        working_for(spec)
        try:
            results = await self._pull(spec)
        except EXPECTED as exc:
            # An OSError is a file of this image's that could not be used: its own failure.
            error = exc if isinstance(exc, BulkpullError) else self._file_error(exc)
            log.info("%s: %s", spec.source, error)
            results = [ImageResult(spec, Status.FAILED, error=error)]
        if self._output.final_on_add:  # else pull_images reports them once the output is written
            for done in results:
                self._emit(ImageDone(done))
        return results

    def _file_error(self, exc: OSError) -> OutputError:
        return output_error(exc, self._output.directory, "use")

    async def _pull(self, spec: ImageSpec) -> list[ImageResult]:
        wanted = spec.choosing(self._options.platforms, self._options.all_platforms)
        async with self._jobs:
            # Only now: an image waiting for a slot is queued, not resolving.
            self._emit(ImageStage(spec, Stage.RESOLVING))
            resolved = await self._registry.resolve(
                spec.source, wanted.platforms, every=wanted.all_platforms
            )
            # Before any layer: an image whose signature does not verify is not fetched.
            companions = await self._referrers.find(spec.source, resolved)
        _warn_about_layer_types(spec, resolved)
        if resolved[0].index is None and not wanted.all_platforms:
            await self._blobs.require_platform(resolved[0], wanted.platforms)
        results = []
        for group in self._output.split(resolved, wanted.all_platforms):
            results += await self._archive(spec, wanted, group, companions)
        return results

    async def _archive(
        self,
        spec: ImageSpec,
        wanted: ImageSpec,
        resolved: list[ResolvedImage],
        companions: Companions,
    ) -> list[ImageResult]:
        entry = await self._entry(spec, wanted, resolved, companions)
        # A per-image archive is named after its platform whenever several platforms were asked
        # for: on the list line, or for the whole run (--platform given more than once).
        path = self._output.target(wanted, resolved)
        written = (path, entry)
        # Asked even with --force: something other than a regular file there fails the image.
        current = await self._output.is_current(path, entry.image)
        if current and not self._options.force:
            status = Status.UP_TO_DATE
            return [
                result(spec, item, status, wanted, written=written, companions=companions)
                for item in resolved
            ]
        # The blobs it waits for: manifests are already in hand, and never BlobDone.
        carried = companions.blobs if entry.image.referrers else ()
        needed = [blob.digest for item in resolved for blob in (*item.blobs, *carried)]
        blobs = tuple(dict.fromkeys(needed))
        platforms = tuple(item.platform.normalized() for item in resolved if item.platform)
        self._emit(ImageStage(spec, Stage.DOWNLOADING, blobs, platforms))
        if entry.image.referrers:
            await self._referrers.fetch(spec.source, companions)
        configs = await all_of(self._blobs.fetch(item) for item in resolved)
        self._emit(ImageStage(spec, Stage.WRITING, platforms=platforms))
        async with self._jobs:
            await self._output.add(path, entry.image)
        return [
            result(
                spec,
                item,
                Status.PULLED,
                wanted,
                platform=item.platform or (config.platform if config else None),
                written=written,
                companions=companions,
            )
            for item, config in zip(resolved, configs, strict=True)
        ]

    async def _entry(
        self,
        spec: ImageSpec,
        wanted: ImageSpec,
        resolved: list[ResolvedImage],
        companions: Companions,
    ) -> Entry:
        """The archive entry, with the referrers the output carries; every manifest it needs
        goes into the store, so a rerun finds it there instead of downloading it."""
        entry = archive_entry(
            str(spec.target),
            self._output.ref_name(spec),
            resolved,
            every=wanted.all_platforms,
            docker_platform=wanted.platforms[0],
        )
        if companions.contents:
            entry = replace(entry, image=replace(entry.image, referrers=companions.contents))
        for manifest in entry.manifests:
            await self._store.put_bytes(manifest.digest, manifest.raw)
        return entry


def _warn_about_layer_types(spec: ImageSpec, resolved: list[ResolvedImage]) -> None:
    if any("zstd" in layer.media_type for item in resolved for layer in item.content.layers):
        log.warning("%s has zstd layers: Docker before 23.0 cannot load it", spec.source)
