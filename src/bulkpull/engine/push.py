"""Orchestration of a push: archives and layouts into one registry, every digest kept.

The plan (``pushplan``) names every image before any request. Then each image is a task, ``jobs``
at a time: its manifests are read from its source; if the target's tag already names its
digest it is ``up-to-date`` and nothing is sent; otherwise its blobs are placed in its
repository (``uploads``: skipped, mounted or uploaded, each once per repository), then its
manifests are stored byte for byte under their own media types, children by digest before the
index that lists them, and the tag last. Every write goes through one :class:`PushClient`,
bound to the target registry. A dry run asks the target what it lacks (``HEAD`` only) and
writes nothing. A :class:`BulkpullError` (or a file that cannot be read) ends only its own
image. Imports ``registry``, ``store``, ``uploads``, ``pushplan``, ``pushoptions`` and
the value modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bulkpull.engine.pushoptions import PushOptions, transport_for
from bulkpull.engine.pushplan import (
    PlannedImage,
    PushContent,
    PushPlan,
    plan_push,
    planned_images,
    read_content,
)
from bulkpull.engine.uploads import Uploads
from bulkpull.errors import BulkpullError, OutputError
from bulkpull.files import output_error
from bulkpull.pushreport import (
    BlobCounts,
    PushDone,
    PushEvent,
    PushEventCallback,
    PushReport,
    PushResult,
    PushStatus,
)
from bulkpull.registry import PushClient
from bulkpull.report import ImageStage, Stage, retry_events, working_for
from bulkpull.store import UploadState
from bulkpull.targets import PushTarget, digest_tag

log = logging.getLogger("bulkpull")


async def push_images(
    sources: Iterable[Path | str],
    to: PushTarget | str,
    options: PushOptions | None = None,
    *,
    dry_run: bool = False,
    on_event: PushEventCallback | None = None,
) -> PushReport:
    """Push every image of ``sources`` (archives, bundles, OCI layouts) to the registry
    ``to`` (``REGISTRY[/NAMESPACE]``) and report on each.

    Images keep their digests: manifests go byte for byte, and the registry must confirm each
    digest. Names follow :class:`PushTarget`'s rule. A source that cannot be pushed, or two
    images claiming one name, raise :class:`SourceError` before any request. With ``dry_run``
    the target is only asked what it lacks. ``on_event`` hears progress as it happens,
    including a :class:`PushDone` per image.
    """
    plan = await asyncio.to_thread(plan_push, sources, to)
    options = options or PushOptions()
    started, clock = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()
    on_retry = retry_events(on_event) if on_event else None
    async with transport_for(options, on_retry) as transport:
        client = PushClient(transport, plan.target.registry_host)
        run = _Push(client, plan, options, dry_run, on_event)
        try:
            images = planned_images(plan)
            results = await asyncio.gather(*(run.image(image) for image in images))
        finally:
            await run.uploads.close()
    return PushReport(
        str(plan.target),
        tuple(results),
        run.uploads.totals,
        run.uploads.sent,
        time.monotonic() - clock,
        started,
        dry_run,
    )


class _Push:
    """The shared state of one push: the client, the uploads, the limit on images at work."""

    def __init__(
        self,
        client: PushClient,
        plan: PushPlan,
        options: PushOptions,
        dry_run: bool,
        on_event: PushEventCallback | None,
    ) -> None:
        self._client = client
        self._plan = plan
        self._dry_run = dry_run
        self._on_event = on_event
        self._jobs = asyncio.Semaphore(options.jobs)
        self.uploads = Uploads(
            client,
            UploadState(options.state_directory()),
            max_uploads=options.max_uploads,
            chunk_size=options.chunk_size,
            retry=options.retry,
            emit=self._emit,
            on_retry=retry_events(on_event) if on_event else None,
        )

    def _emit(self, event: PushEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def image(self, image: PlannedImage) -> PushResult:
        working_for(image.spec)
        result = PushResult(image.spec, PushStatus.PUSHED, image.source.path)
        try:
            async with self._jobs:
                result = await self._push(image, result)
        except (BulkpullError, OSError) as exc:
            # An OSError is a file of this image's source that could not be read.
            error = exc if isinstance(exc, BulkpullError) else _read_error(exc, image)
            log.info("%s: %s", image.spec.source, error)
            result = result.as_failed(error)
        self._emit(PushDone(result))
        return result

    async def _push(self, image: PlannedImage, result: PushResult) -> PushResult:
        spec = image.spec
        target = spec.target
        # The one registry this push writes to; every name was mapped onto it.
        assert target.registry_host == self._client.registry, "a push writes to one registry"
        self._emit(ImageStage(spec, Stage.CHECKING))
        content = await asyncio.to_thread(read_content, image, self._plan)
        media_type, digest, _ = content.manifests[-1]
        result = replace(result, digest=digest, media_type=media_type, size=content.size)
        repository, tag = target.path, target.tag or digest_tag(digest)
        if await self._client.manifest_digest(repository, tag) == digest:
            self.uploads.held(repository, [blob.digest for blob, _ in content.blobs])
            return replace(result, status=PushStatus.UP_TO_DATE)
        if self._dry_run:
            return await self._missing(repository, content, result)
        blobs = tuple(blob.digest for blob, _ in content.blobs)
        self._emit(ImageStage(spec, Stage.UPLOADING, blobs))
        counts = await self._place_blobs(repository, content)
        self._emit(ImageStage(spec, Stage.WRITING))
        for kind, child, raw in content.manifests[:-1]:
            await self._client.put_manifest(repository, str(child), raw, kind)
        _, _, raw = content.manifests[-1]
        if spec.source.tag is None:  # known by digest only: pushed by digest, then tagged
            await self._client.put_manifest(repository, str(digest), raw, media_type)
        await self._client.put_manifest(repository, tag, raw, media_type)
        return replace(result, blobs=counts)

    async def _place_blobs(self, repository: str, content: PushContent) -> BlobCounts:
        placed = await asyncio.gather(
            *(self.uploads.place(repository, blob, where) for blob, where in content.blobs)
        )
        return sum((one.counts for one in placed), BlobCounts())

    async def _missing(
        self, repository: str, content: PushContent, result: PushResult
    ) -> PushResult:
        """A dry run's answer: what the target lacks of the image (blobs by ``HEAD``)."""
        blobs = [blob for blob, _ in content.blobs]
        present = await asyncio.gather(
            *(self._client.has_blob(repository, blob.digest) for blob in blobs)
        )
        lacking = [blob for blob, has in zip(blobs, present, strict=True) if not has]
        counts = BlobCounts(skipped=len(content.blobs) - len(lacking))
        missing = sum(blob.size for blob in lacking)
        return replace(result, status=PushStatus.MISSING, blobs=counts, missing=missing)


def _read_error(exc: OSError, image: PlannedImage) -> OutputError:
    return output_error(exc, image.source.path, "read")
