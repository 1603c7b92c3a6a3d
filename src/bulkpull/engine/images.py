"""One image through the run: resolve, check what each output holds, fetch its config, hand it
to each output (which fills its archive from the run's downloads), and its results.

Resolving takes one of ``jobs`` slots. The platforms of an image that get an entry each
(per-image archives) are fetched and written one after the other; within one, the first blob
to fail stops the others, and the image fails with that error. A :class:`BulkpullError`
(or an ``OSError`` of one of its files) ends only its own image; anything else is a bug, which
propagates and ends the run. Imports ``registry``, ``store``, ``output``, ``downloads``,
``configs``, ``entries``, ``outputs``, ``referrers``, ``results`` and the value modules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from bulkpull.digest import Digest
from bulkpull.engine.configs import ImageBlobs
from bulkpull.engine.downloads import Downloads
from bulkpull.engine.entries import Entry, archive_entry
from bulkpull.engine.have import HaveSet
from bulkpull.engine.options import PullOptions
from bulkpull.engine.outputs import RunOutput
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
from bulkpull.tasks import EXPECTED

log = logging.getLogger("bulkpull")


class ImagePipeline:
    """The images of one pull, each through the same registry client, outputs and downloads.

    The first output decides an image's results; every other output must take the image too,
    or the image fails. Archives are filled as their blobs arrive, at most ``_writing`` of
    them open at once (each holds a file)."""

    def __init__(
        self,
        registry: RegistryClient,
        outputs: Sequence[RunOutput],
        cache: BlobStore | None,
        downloads: Downloads,
        options: PullOptions,
        on_event: EventCallback | None,
        have: HaveSet | None = None,
    ) -> None:
        self._registry = registry
        self._have = have
        # What a delta left out of each image written (by name): digests and sizes.
        self.left_out: dict[str, dict[Digest, int]] = {}
        self._outputs = outputs
        self._cache = cache
        self._blobs = ImageBlobs(downloads)
        self._referrers = ImageReferrers(
            registry,
            downloads,
            carry=options.referrers and any(run.output.carries_referrers for run in outputs),
            types=options.referrer_types,
            key=options.verify_key,
        )
        self._options = options
        self._on_event = on_event
        self._jobs = asyncio.Semaphore(options.jobs)
        self._writing = asyncio.Semaphore(2 * max(options.jobs, options.max_downloads))
        self.final_on_add = all(run.output.final_on_add for run in outputs)

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
        if self.final_on_add:  # else pull_images reports them once the outputs are written
            for done in results:
                self._emit(ImageDone(done))
        return results

    def _file_error(self, exc: OSError) -> OutputError:
        return output_error(exc, self._outputs[0].output.directory, "use")

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
        first, *others = self._outputs
        results = []
        for group in first.output.split(resolved, wanted.all_platforms):
            results += await self._archive(first, spec, wanted, group, companions, shown=True)
        for run in others:
            for group in run.output.split(resolved, wanted.all_platforms):
                await self._archive(run, spec, wanted, group, companions, shown=False)
        return results

    async def _archive(
        self,
        run: RunOutput,
        spec: ImageSpec,
        wanted: ImageSpec,
        resolved: list[ResolvedImage],
        companions: Companions,
        *,
        shown: bool,
    ) -> list[ImageResult]:
        output = run.output
        entry = await self._entry(output, spec, wanted, resolved, companions)
        # A per-image archive is named after its platform whenever several platforms were asked
        # for: on the list line, or for the whole run (--platform given more than once).
        path = output.target(wanted, resolved)
        written = (path, entry)
        # Asked even with --force: something other than a regular file there fails the image.
        current = await output.is_current(path, entry.image)
        if current and not self._options.force:
            status = Status.UP_TO_DATE
            return [
                result(spec, item, status, wanted, written=written, companions=companions)
                for item in resolved
            ]
        # The blobs it waits for: not manifests (in hand, never BlobDone), nor a delta's left out.
        carried = companions.blobs if entry.image.referrers else ()
        skip = {blob.digest for blob in entry.image.expected}
        self.left_out[entry.image.name] = {blob.digest: blob.size for blob in entry.image.expected}
        needed = [blob.digest for item in resolved for blob in (*item.blobs, *carried)]
        blobs = tuple(digest for digest in dict.fromkeys(needed) if digest not in skip)
        platforms = tuple(item.platform.normalized() for item in resolved if item.platform)
        if shown:
            self._emit(ImageStage(spec, Stage.DOWNLOADING, blobs, platforms))
        if resolved[0].index is None and not wanted.all_platforms:
            # Only for an archive to write: one already there was checked when it was.
            await self._blobs.require_platform(resolved[0], wanted.platforms, skip)
        configs = await self._blobs.configs(resolved, skip)
        supply = self._blobs.supply(resolved, entry, configs)
        if entry.image.referrers:
            supply = supply.carrying(spec.source, companions.manifests, companions.blobs)
        if run.store is not None:
            await self._blobs.store_in(run.store, supply)
        if shown and not output.final_on_add:  # an archive of its own downloads as it writes
            self._emit(ImageStage(spec, Stage.WRITING, platforms=platforms))
        async with self._writing:
            added = await output.add(path, entry.image, supply, rewrite=self._options.force)
        status = Status.PULLED if added else Status.UP_TO_DATE
        return [
            result(
                spec,
                item,
                status,
                wanted,
                platform=item.platform or (config[0].platform if config else None),
                written=written,
                companions=companions,
            )
            for item, config in zip(resolved, configs, strict=True)
        ]

    async def _entry(
        self,
        output: Output,
        spec: ImageSpec,
        wanted: ImageSpec,
        resolved: list[ResolvedImage],
        companions: Companions,
    ) -> Entry:
        """The archive entry, with the referrers the output carries and the blobs a delta
        leaves out; with a cache, every manifest it needs goes there, so a rerun asks for tags
        with ``HEAD`` and reads the manifests from disk."""
        entry = archive_entry(
            str(spec.target),
            output.ref_name(spec),
            resolved,
            every=wanted.all_platforms,
            docker_platform=wanted.platforms[0],
        )
        if companions.contents and output.carries_referrers:
            entry = replace(entry, image=replace(entry.image, referrers=companions.contents))
        if self._have is not None:
            expected = self._have.expected(resolved)
            entry = replace(entry, image=replace(entry.image, expected=expected))
        if self._cache is not None:
            for manifest in entry.manifests:
                await self._cache.put_bytes(manifest.digest, manifest.raw)
        return entry


def _warn_about_layer_types(spec: ImageSpec, resolved: list[ResolvedImage]) -> None:
    if any("zstd" in layer.media_type for item in resolved for layer in item.content.layers):
        log.warning("%s has zstd layers: Docker before 23.0 cannot load it", spec.source)
