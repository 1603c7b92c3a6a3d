"""Images placed in one registry: the writing half of a push, whatever the images come from.

An image arrives as its manifests (children before the index listing them) and the blobs they
name, each with where its bytes are (an archive, a layout, the blob store). Its blobs are placed
in its repository (``uploads``: skipped, mounted or uploaded, each once per repository), then its
manifests are stored byte for byte under their own media types, children by digest, and the tag
last, so that no tag ever names an image the registry cannot serve whole. ``bulkpull push``
delivers what it reads out of archives and layouts, a copy (``bulkpull LIST --to``) what it has
fetched into the store. Every write goes through one :class:`PushClient`, bound to the target
registry.

After its image come the image's signatures, SBOMs and attestations (each after what it refers
to, its blobs placed as an image's are), byte for byte: a cosign one under its tag
(``sha256-<hex>.sig``), left alone when the tag already names it; an OCI referrer by digest.
A registry with the Referrers API answers that ``PUT`` with ``OCI-Subject: <subject>`` and lists
the referrer itself; on any other the referrers tag schema index of the subject (tag
``sha256-<hex>``) is read, the referrer merged in (``referrers.merge_referrer``: what others
listed stays, no entry twice, ordered by digest) and written back, one merge at a time per tag
in a run. A tag that holds anything but a referrers index is refused, never overwritten.
Imports ``registry``, ``store``, ``uploads``, ``pushplan`` (what an image consists of),
``referrers`` (what a pull found) and the value modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from bulkpull.digest import Digest
from bulkpull.engine.pushoptions import PushOptions
from bulkpull.engine.pushplan import BlobSource, PushContent, ReferrerPush
from bulkpull.engine.referrers import Companions
from bulkpull.engine.uploads import Uploads
from bulkpull.errors import ContentError
from bulkpull.manifest import OCI_INDEX, Descriptor, ImageIndex
from bulkpull.pushreport import (
    BlobCounts,
    PushedReferrer,
    PushEvent,
    PushEventCallback,
    PushResult,
    PushStatus,
    ReferrerListing,
)
from bulkpull.reference import Reference
from bulkpull.referrers import (
    merge_referrer,
    referrer_entry,
    referrer_kind,
    referrers_tag,
    subject_indexed,
)
from bulkpull.registry import PushClient
from bulkpull.report import ImageStage, Stage, retry_events
from bulkpull.store import UploadState
from bulkpull.targets import digest_tag


class Delivery:
    """The target side of one run: its client, its uploads (``options`` says how many at
    once, in what chunks, and where unfinished ones are kept), and what it tells the caller.
    ``guesses`` name, per repository, another where other processes likely put its blobs."""

    def __init__(
        self,
        client: PushClient,
        options: PushOptions,
        on_event: PushEventCallback | None,
        guesses: Mapping[str, str] | None = None,
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
            guesses=guesses,
        )
        self._referrers = _Referrers(client, self.uploads)

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

    async def deliver_referrers(
        self, target: Reference, referrers: Sequence[ReferrerPush], result: PushResult
    ) -> PushResult:
        """Push the image's referrers after it (see the module): the result lists them; one
        that cannot be pushed fails the image."""
        if not referrers:
            return result
        self.emit(ImageStage(result.spec, Stage.WRITING))
        pushed = [await self._referrers.push(target.path, r) for r in _subjects_first(referrers)]
        return replace(result, referrers=tuple(pushed))

    async def missing_referrers(
        self, target: Reference, referrers: Sequence[ReferrerPush], result: PushResult
    ) -> PushResult:
        """A dry run's answer for the image's referrers: which the target has, and what it
        lacks of the others' blobs (by ``HEAD``); nothing is written."""
        looked = [await self._referrers.look(target.path, r) for r in _subjects_first(referrers)]
        return replace(result, referrers=tuple(looked)) if looked else result

    async def close(self) -> None:
        await self.uploads.close()


class _Referrers:
    """Referrers into the target's repositories; the lock per tag-schema index keeps two
    referrers of one subject from overwriting each other's merge."""

    def __init__(self, client: PushClient, uploads: Uploads) -> None:
        self._client = client
        self._uploads = uploads
        self._merging: dict[tuple[str, str], asyncio.Lock] = {}

    async def look(self, repository: str, referrer: ReferrerPush) -> PushedReferrer:
        """What a push of the referrer would find: there already (its tag or digest names
        it), or how many bytes of its blobs the target lacks."""
        content = referrer.content
        digest = content.manifests[-1][1]
        present = await self._client.manifest_digest(repository, referrer.tag or str(digest))
        missing = 0
        if present != digest:
            blobs = [blob for blob, _ in content.blobs]
            held = await asyncio.gather(
                *(self._client.has_blob(repository, blob.digest) for blob in blobs)
            )
            missing = sum(blob.size for blob, has in zip(blobs, held, strict=True) if not has)
        return PushedReferrer(
            referrer.subject,
            digest,
            referrer.kind,
            content.size,
            referrer.tag,
            present=present == digest,
            missing=None if present == digest else missing,
        )

    async def push(self, repository: str, referrer: ReferrerPush) -> PushedReferrer:
        """One referrer: its blobs and manifests unless its tag or digest names it already,
        then, for an OCI referrer, its listing; a referrer already there is only looked at."""
        content = referrer.content
        media_type, digest, raw = content.manifests[-1]
        reference = referrer.tag or str(digest)
        present = await self._client.manifest_digest(repository, reference) == digest
        said = None
        if not present:
            await asyncio.gather(
                *(self._uploads.place(repository, blob, where) for blob, where in content.blobs)
            )
            for kind, child, body in content.manifests[:-1]:
                await self._client.put_manifest(repository, str(child), body, kind)
            said = await self._client.put_manifest(repository, reference, raw, media_type)
        listed = None
        if referrer.indexed:
            subject = referrer.subject
            if present:  # how it was listed then: the registry's API says whether it has one
                api = await self._client.has_referrers_api(repository, subject)
            else:
                api = subject_indexed(said, subject)
            listed = await self._list(repository, subject, api, raw, media_type)
        return PushedReferrer(
            referrer.subject, digest, referrer.kind, content.size, referrer.tag, listed, present
        )

    async def _list(
        self, repository: str, subject: Digest, api: bool, raw: bytes, media_type: str
    ) -> ReferrerListing:
        """Make the subject's referrers list show the referrer ``raw``: the registry's own
        (``api``), else the tag-schema index, merged and written when it lacks the referrer."""
        if api:
            return ReferrerListing.REFERRERS_API
        tag = referrers_tag(subject)
        what = f"{self._client.registry}/{repository}:{tag}"
        entry = referrer_entry(raw, media_type, what)
        async with self._merging.setdefault((repository, tag), asyncio.Lock()):
            found = await self._client.fetch_manifest(repository, tag)
            try:
                merged = merge_referrer(found[0] if found else None, entry, what)
            except ContentError as exc:
                raise ContentError(f"{exc}; the tag is left as it is") from exc
            if merged is not None:
                await self._client.put_manifest(repository, tag, merged, OCI_INDEX)
        return ReferrerListing.TAG_SCHEMA


def _subjects_first(referrers: Sequence[ReferrerPush]) -> list[ReferrerPush]:
    """The referrers in an order that pushes each after the referrer it refers to (a
    signature on an SBOM after the SBOM); otherwise as given."""
    by_digest = {referrer.digest: referrer for referrer in referrers}

    def depth(referrer: ReferrerPush) -> int:
        levels = 0
        while referrer.subject in by_digest and levels < len(by_digest):
            referrer, levels = by_digest[referrer.subject], levels + 1
        return levels

    return sorted(referrers, key=depth)


def fetched_referrers(
    companions: Companions, fetcher: Callable[[Descriptor], BlobSource]
) -> tuple[ReferrerPush, ...]:
    """The referrers a copy found at the source, as they are pushed: manifests as fetched,
    each blob through ``fetcher`` (into the store, when it must be uploaded)."""
    pushes = []
    for referrer, children, blobs in companions.carried:
        manifest = referrer.manifest
        subject = manifest.subject.digest if manifest.subject else referrer.subject
        # An index referrer's children go under the types its index gives them.
        listed = manifest.manifests if isinstance(manifest, ImageIndex) else ()
        types = {child.digest: child.media_type for child in listed}
        own = (manifest.media_type, referrer.digest, referrer.raw)
        manifests = (*((types.get(c.digest, c.media_type), c.digest, c.raw) for c in children), own)
        content = PushContent(manifests, tuple((blob, fetcher(blob)) for blob in blobs))
        kind = referrer_kind(manifest, referrer.entry.artifact_type)
        indexed = manifest.subject is not None
        pushes.append(ReferrerPush(content, subject, kind, referrer.tag, indexed))
    return tuple(pushes)


def _tag(target: Reference) -> str:
    return target.tag or digest_tag(target.digest)
