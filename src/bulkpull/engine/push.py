"""Orchestration of a push: archives and layouts into one registry, every digest kept.

The plan (``pushplan``) names every image before any request. Then each image is a task,
``jobs`` at a time: its manifests are read from its source; if the target's tag already names
its digest it is ``up-to-date`` and nothing is sent; otherwise its blobs are placed in its
repository (``uploads``: skipped, mounted or uploaded, each once per repository), then its
manifests are stored byte for byte under their own media types, children by digest before the
index that lists them, and the tag last; then the signatures, SBOMs and attestations carried
with it (``delivery``), also when the image was up to date. A delta's image first has what it
expects at the target found there (``expected``), or fails with nothing written. Every write
goes through one :class:`PushClient`, bound to the target registry. A dry run asks the target
what it lacks (``HEAD`` only) and writes nothing. A :class:`BulkpullError` (or a file that
cannot be read) ends only its own image. Imports ``registry``, ``store``, ``uploads``,
``expected``, ``pushplan``, ``pushoptions`` and the value modules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bulkpull.engine.delivery import Delivery
from bulkpull.engine.expected import ExpectedBlobs
from bulkpull.engine.pushoptions import PushOptions, transport_for
from bulkpull.engine.pushplan import (
    PlannedImage,
    PushPlan,
    ReferrerPush,
    plan_push,
    planned_images,
    read_content,
    read_referrers,
)
from bulkpull.errors import BulkpullError, OutputError
from bulkpull.files import output_error
from bulkpull.pushreport import (
    PushDone,
    PushEventCallback,
    PushReport,
    PushResult,
    PushStatus,
)
from bulkpull.referrers import ReferrerFilter
from bulkpull.registry import PushClient
from bulkpull.report import ImageStage, Stage, retry_events, working_for
from bulkpull.targets import PushTarget

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
            await run.delivery.close()
    uploads = run.delivery.uploads
    return PushReport(
        str(plan.target),
        tuple(results),
        uploads.totals,
        uploads.sent,
        time.monotonic() - clock,
        started,
        dry_run,
    )


class _Push:
    """The shared state of one push: the delivery into the target, the limit on images at
    work."""

    def __init__(
        self,
        client: PushClient,
        plan: PushPlan,
        options: PushOptions,
        dry_run: bool,
        on_event: PushEventCallback | None,
    ) -> None:
        self._plan = plan
        self._dry_run = dry_run
        self._keep = ReferrerFilter(options.referrer_types) if options.referrers else None
        self._jobs = asyncio.Semaphore(options.jobs)
        self.delivery = Delivery(client, options, on_event)
        self._expected = ExpectedBlobs(client, plan.target, self.delivery.uploads)

    async def image(self, image: PlannedImage) -> PushResult:
        working_for(image.spec)
        # The digest its source names is known before anything is read: a failed row shows it.
        named = image.descriptor
        result = PushResult(
            image.spec, PushStatus.PUSHED, image.source.path, named.digest, named.media_type
        )
        try:
            async with self._jobs:
                result = await self._push(image, result)
        except (BulkpullError, OSError) as exc:
            # An OSError is a file of this image's source that could not be read.
            error = exc if isinstance(exc, BulkpullError) else _read_error(exc, image)
            log.info("%s: %s", image.spec.source, error)
            result = result.as_failed(error)
        self.delivery.emit(PushDone(result))
        return result

    async def _push(self, image: PlannedImage, result: PushResult) -> PushResult:
        target = image.spec.target
        self.delivery.emit(ImageStage(image.spec, Stage.CHECKING))
        content = await asyncio.to_thread(read_content, image, self._plan)
        referrers = await asyncio.to_thread(self._referrers, image)
        media_type, digest, _ = content.manifests[-1]
        result = replace(result, digest=digest, media_type=media_type, size=content.size)
        blobs = [blob for blob, _ in content.blobs]
        current = await self.delivery.current(target) == digest
        if current:
            self.delivery.held(target, blobs)
            result = replace(result, status=PushStatus.UP_TO_DATE)
        # What a delta left out must be at the target before anything of the image is written.
        expected = () if current else content.expected
        found = await self._expected.find(target, expected) if expected else {}
        if self._dry_run:
            looked = result if current else await self.delivery.missing(target, blobs, result)
            return await self.delivery.missing_referrers(target, referrers, looked)
        if not current:
            mounted = await self._expected.mount(target, found)
            by_digest = image.spec.source.tag is None  # pushed by digest, then tagged
            result = await self.delivery.deliver(target, by_digest, content, result)
            result = replace(result, blobs=result.blobs + mounted)
        return await self.delivery.deliver_referrers(target, referrers, result)

    def _referrers(self, image: PlannedImage) -> tuple[ReferrerPush, ...]:
        """The referrers to push after the image (none with ``--no-referrers``)."""
        if self._keep is None:
            return ()
        return read_referrers(image, self._plan, self._keep)


def _read_error(exc: OSError, image: PlannedImage) -> OutputError:
    return output_error(exc, image.source.path, "read")
