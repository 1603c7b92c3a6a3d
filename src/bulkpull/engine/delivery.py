"""Images placed in one registry: the writing half of a push, whatever the images come from.

An image arrives as its manifests (children before the index listing them) and the blobs they
name, each with where its bytes are (an archive, a layout, the blob store). Its blobs are placed
in its repository (``uploads``: skipped, mounted or uploaded, each once per repository), then its
manifests are stored byte for byte under their own media types, children by digest, and the tag
last, so that no tag ever names an image the registry cannot serve whole. ``bulkpull push``
delivers what it reads out of archives and layouts, a copy (``bulkpull LIST --to``) what it has
fetched into the store. Every write goes through one :class:`PushClient`, bound to the target
registry. Imports ``registry``, ``store``, ``uploads``, ``pushplan`` (what an image consists
of) and the value modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from bulkpull.digest import Digest
from bulkpull.engine.pushoptions import PushOptions
from bulkpull.engine.pushplan import PushContent
from bulkpull.engine.uploads import Uploads
from bulkpull.manifest import Descriptor
from bulkpull.pushreport import BlobCounts, PushEvent, PushEventCallback, PushResult, PushStatus
from bulkpull.reference import Reference
from bulkpull.registry import PushClient
from bulkpull.report import ImageStage, Stage, retry_events
from bulkpull.store import UploadState
from bulkpull.targets import digest_tag


class Delivery:
    """The target side of one run: its client, its uploads (``options`` says how many at
    once, in what chunks, and where unfinished ones are kept), and what it tells the caller."""

    def __init__(
        self,
        client: PushClient,
        options: PushOptions,
        on_event: PushEventCallback | None,
    ) -> None:
        self.client = client
        self._on_event = on_event
        self.uploads = Uploads(
            client,
            UploadState(options.state_directory()),
            max_uploads=options.max_uploads,
            chunk_size=options.chunk_size,
            retry=options.retry,
            emit=self.emit,
            on_retry=retry_events(on_event) if on_event else None,
        )

    def emit(self, event: PushEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def current(self, target: Reference) -> Digest | None:
        """What the target's tag names now (``HEAD``), None when nothing."""
        assert target.registry_host == self.client.registry, "a push writes to one registry"
        return await self.client.manifest_digest(target.path, _tag(target))

    def held(self, target: Reference, blobs: Sequence[Descriptor]) -> None:
        """The image is up to date at ``target``: its repository holds these blobs to mount."""
        self.uploads.held(target.path, [blob.digest for blob in blobs])

    async def missing(
        self, target: Reference, blobs: Sequence[Descriptor], result: PushResult
    ) -> PushResult:
        """A dry run's answer: what the target lacks of the image (blobs by ``HEAD``)."""
        present = await asyncio.gather(
            *(self.client.has_blob(target.path, blob.digest) for blob in blobs)
        )
        lacking = [blob for blob, has in zip(blobs, present, strict=True) if not has]
        counts = BlobCounts(skipped=len(blobs) - len(lacking))
        missing = sum(blob.size for blob in lacking)
        return replace(result, status=PushStatus.MISSING, blobs=counts, missing=missing)

    async def deliver(
        self, target: Reference, by_digest: bool, content: PushContent, result: PushResult
    ) -> PushResult:
        """Place the blobs, then store the manifests and the tag; ``by_digest``: the image is
        known by its digest only, so it is stored by digest before it gets its tag."""
        repository = target.path
        self.emit(
            ImageStage(result.spec, Stage.UPLOADING, tuple(b.digest for b, _ in content.blobs))
        )
        placed = await asyncio.gather(
            *(self.uploads.place(repository, blob, where) for blob, where in content.blobs)
        )
        counts = sum((one.counts for one in placed), BlobCounts())
        self.emit(ImageStage(result.spec, Stage.WRITING))
        for kind, child, raw in content.manifests[:-1]:
            await self.client.put_manifest(repository, str(child), raw, kind)
        media_type, digest, raw = content.manifests[-1]
        if by_digest:
            await self.client.put_manifest(repository, str(digest), raw, media_type)
        await self.client.put_manifest(repository, _tag(target), raw, media_type)
        return replace(result, blobs=counts)

    async def close(self) -> None:
        await self.uploads.close()


def _tag(target: Reference) -> str:
    return target.tag or digest_tag(target.digest)
