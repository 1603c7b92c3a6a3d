"""A list copied from its registries into one registry: ``bulkpull LIST --to REGISTRY``.

Each image is first asked for at both ends with ``HEAD``: when the target's tag already names
the digest the source's tag names, the image is ``up-to-date`` and its manifest is never
fetched (Docker Hub counts a ``GET``, not a ``HEAD``). Otherwise it is resolved as a pull
resolves it (by the digest the ``HEAD`` gave, so manifests already in the store are read from
there), and delivered into the target (``delivery``): blobs the target's repository has are
skipped, blobs another repository holds are mounted, and only the rest is fetched into the
store (once for the whole run, ``downloads``; what the store holds from an earlier run is not
fetched again) and uploaded from there; manifests byte for byte, the tag last. Configs are
fetched and checked first, as a pull checks them.

The target gets what a pull would put in a bundle: the manifest of the one platform chosen, the
registry's own index with ``all``, or that index narrowed to the platforms chosen (a new digest,
which the result says). Names follow the push's rule (``targets``), the list line's new name
standing for the image's name. The image's signatures, SBOMs and attestations are found as a
pull finds them (``referrers``) and pushed after it (``delivery``), also when its tag was up to
date once resolved; an image found up to date by its two ``HEAD`` requests is not resolved, so its
referrers are not looked for. Imports ``registry``, ``store``, ``output`` and the engine's
pull and push halves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.engine.configs import ImageBlobs
from bulkpull.engine.delivery import Delivery, fetched_referrers
from bulkpull.engine.downloads import Downloads
from bulkpull.engine.entries import Entry, archive_entry
from bulkpull.engine.footprint import stored_footprint
from bulkpull.engine.options import PullOptions
from bulkpull.engine.peers import mount_guesses
from bulkpull.engine.pull import connect, specs_of
from bulkpull.engine.pushoptions import PushOptions, transport_for
from bulkpull.engine.pushplan import BlobSource, PushContent
from bulkpull.engine.referrers import Companions, ImageReferrers
from bulkpull.errors import BulkpullError, ImageListError, InvalidReferenceError
from bulkpull.files import output_error
from bulkpull.imagelist import ImageSpec, distinct_targets
from bulkpull.manifest import INDEX_TYPES, Descriptor
from bulkpull.output import BlobPlace, HeldBlobs
from bulkpull.pushreport import PushDone, PushEventCallback, PushReport, PushResult, PushStatus
from bulkpull.reference import Reference
from bulkpull.registry import PushClient, RegistryClient
from bulkpull.report import Event, ImageStage, Stage, retry_events, working_for
from bulkpull.resolved import ResolvedImage
from bulkpull.shard import Shard
from bulkpull.store import BlobStore
from bulkpull.targets import PushTarget
from bulkpull.tasks import EXPECTED, all_of

log = logging.getLogger("bulkpull")

# The store of a copy when none is named, below $XDG_CACHE_HOME (~/.cache).
STORE_SUBDIRECTORY = Path("bulkpull", "store")


async def copy_images(
    images: Iterable[ImageSpec | str],
    to: PushTarget | str,
    options: PullOptions | None = None,
    *,
    push: PushOptions | None = None,
    shard: Shard | None = None,
    dry_run: bool = False,
    on_event: PushEventCallback | None = None,
) -> PushReport:
    """Copy every image from its registry into the registry ``to`` (``REGISTRY[/NAMESPACE]``)
    through the blob store, and report on each.

    ``options`` is the pull side (platforms, mirrors, logins, the store: ``cache_dir``, else
    :func:`default_store`), ``push`` the target side (by default the same logins and TLS
    settings). Two images claiming one target name are refused (:class:`ImageListError`)
    before any request. With ``dry_run`` no blob is downloaded and nothing is written: the
    target is asked what it lacks of each image and of its referrers. ``on_event`` hears
    progress, including a :class:`PushDone` per image. With ``shard`` only its part of the
    list is copied, and the rest of the list says where the other shards likely put shared
    blobs (``peers``).
    """
    options = options or PullOptions()
    listed = specs_of(images)
    plan = copy_plan(listed, to)
    specs = plan if shard is None else shard.select(plan)
    target = to if isinstance(to, PushTarget) else PushTarget.parse(to)
    # The first line naming a target is the one the plan keeps (a repeated image is taken once).
    as_listed = {target.name_for(spec.target): spec.target for spec in reversed(listed)}
    push = push or PushOptions.from_pull(options)
    store = BlobStore(options.cache_dir or default_store())
    started, clock = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()
    on_retry = retry_events(on_event) if on_event else None
    emit = functools.partial(_emit, on_event)
    async with (
        connect(options, store, HeldBlobs(), on_retry) as registry,
        transport_for(push, on_retry) as transport,
        Downloads(registry, store, options.max_downloads, emit, options.retry, on_retry) as fetch,
    ):
        client = PushClient(transport, target.registry_host)
        delivery = Delivery(client, push, on_event, mount_guesses(plan, shard))
        run = _Copy(registry, store, fetch, delivery, options, dry_run, as_listed)
        try:
            results = await all_of(run.image(spec) for spec in specs)
        finally:
            await delivery.close()
    uploads = delivery.uploads
    seconds = time.monotonic() - clock
    return PushReport(
        str(target), tuple(results), uploads.totals, uploads.sent, seconds, started, dry_run
    )


def copy_plan(specs: Iterable[ImageSpec], to: PushTarget | str) -> list[ImageSpec]:
    """Each image with the name it gets at ``to`` as its target (the push's rule, applied to
    its new name when its line gives one); the same image listed twice is copied once.
    Raises :class:`ImageListError` at a line whose target another image already takes."""
    target = to if isinstance(to, PushTarget) else PushTarget.parse(to)
    mapped: list[ImageSpec] = []
    for spec in specs:
        try:
            mapped.append(replace(spec, target=target.name_for(spec.target)))
        except InvalidReferenceError as exc:
            raise _line_error(spec, str(exc)) from None
    return distinct_targets(mapped)


def default_store(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/bulkpull/store`` (``~/.cache/bulkpull/store``): where a copy keeps
    the blobs it passes on, so that a rerun or a moved tag fetches only what is new."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home(), ".cache"))
    return Path(base) / STORE_SUBDIRECTORY


def _line_error(spec: ImageSpec, reason: str) -> ImageListError:
    source, _, line = spec.origin.rpartition(":")
    if source and line.isdigit():
        return ImageListError(source, int(line), reason)
    return ImageListError(spec.origin or str(spec.source), None, reason)


class _Copy:
    """The shared state of one copy: the source side (registry client, store, downloads), the
    target side (delivery) and the limit on images resolving at once."""

    def __init__(
        self,
        registry: RegistryClient,
        store: BlobStore,
        downloads: Downloads,
        delivery: Delivery,
        options: PullOptions,
        dry_run: bool,
        as_listed: Mapping[Reference, Reference],
    ) -> None:
        self._registry = registry
        self._store = store
        self._downloads = downloads
        self._blobs = ImageBlobs(downloads)
        key = options.verify_key
        self._referrers = ImageReferrers(
            registry, downloads, carry=options.referrers, types=options.referrer_types, key=key
        )
        self.delivery = delivery
        self._options = options
        self._dry_run = dry_run
        self._as_listed = as_listed
        self._jobs = asyncio.Semaphore(options.jobs)

    def _pinned(self, spec: ImageSpec, digest: Digest | None) -> str:
        """``spec`` as a lock line, pinned to ``digest``, under the name its list line gave
        (``as_listed``: target name -> listed name), not its name at the target: a lock is
        the list again, copying to the same names here, and to other registries, into a
        bundle for the far side or a push there, as the list itself would."""
        return replace(spec, target=self._as_listed[spec.target]).pinned(digest)

    async def image(self, spec: ImageSpec) -> PushResult:
        working_for(spec)
        result = PushResult(
            spec, PushStatus.PUSHED, str(spec.source), pinned=self._pinned(spec, None)
        )
        try:
            result = await self._copy(spec, result)
        except EXPECTED as exc:
            # An OSError is a file of the store that could not be used: this image's failure.
            error = (
                exc
                if isinstance(exc, BulkpullError)
                else output_error(exc, self._store.root, "use")
            )
            log.info("%s: %s", spec.source, error)
            result = result.as_failed(error)
        self.delivery.emit(PushDone(result))
        return result

    async def _copy(self, spec: ImageSpec, result: PushResult) -> PushResult:
        wanted = spec.choosing(self._options.platforms, self._options.all_platforms)
        # Two HEADs, not bounded by jobs: on a rerun they are all there is, and the
        # connection pools bound them.
        self.delivery.emit(ImageStage(spec, Stage.CHECKING))
        current, (source, media_type) = await asyncio.gather(
            self.delivery.current(spec.target), self._source_digest(spec.source)
        )
        if current is not None and current == source:
            pinned = self._pinned(wanted if media_type in INDEX_TYPES else spec, source)
            kind, size = await stored_footprint(self._store, current, media_type)
            up_to_date = replace(result, status=PushStatus.UP_TO_DATE, media_type=kind, size=size)
            return replace(up_to_date, digest=current, pinned=pinned)
        async with self._jobs:
            self.delivery.emit(ImageStage(spec, Stage.RESOLVING))
            at = spec.source if source is None else replace(spec.source, digest=source)
            resolved = await self._registry.resolve(
                at, wanted.platforms, every=wanted.all_platforms
            )
            companions = await self._referrers.find(spec.source, resolved)
        entry = _entry(spec, wanted, resolved)
        top = entry.image
        result = replace(
            result,
            digest=top.digest,
            media_type=top.media_type,
            size=top.size + sum(blob.size for blob in _blobs(resolved)),
            narrowed=entry.narrowed,
            pinned=self._pinned(wanted if resolved[0].index else spec, _source_of(resolved)),
        )
        if current == top.digest:
            self.delivery.held(spec.target, _blobs(resolved))
            result = replace(result, status=PushStatus.UP_TO_DATE)
        elif self._dry_run:
            result = await self.delivery.missing(spec.target, _blobs(resolved), result)
        else:
            content = await self._prepare(wanted, resolved, entry)
            by_digest = spec.source.tag is None
            result = await self.delivery.deliver(spec.target, by_digest, content, result)
        return await self._deliver_referrers(spec, resolved, companions, result)

    async def _deliver_referrers(
        self,
        spec: ImageSpec,
        resolved: list[ResolvedImage],
        companions: Companions,
        result: PushResult,
    ) -> PushResult:
        """The referrers found at the source, after their image; a dry run only looks at
        what the target lacks of them."""
        fetcher = functools.partial(self._fetcher, resolved[0].reference)
        pushes = fetched_referrers(companions, fetcher)
        if self._dry_run:
            return await self.delivery.missing_referrers(spec.target, pushes, result)
        return await self.delivery.deliver_referrers(spec.target, pushes, result)

    async def _source_digest(self, source: Reference) -> tuple[Digest | None, str]:
        """What the source names (and its media type when a ``HEAD`` said): a digest the
        reference pins needs no request."""
        if source.digest is not None:
            return source.digest, ""
        head = await self._registry.head_manifest(source, source.identifier)
        return head if head is not None else (None, "")

    async def _prepare(
        self, wanted: ImageSpec, resolved: list[ResolvedImage], entry: Entry
    ) -> PushContent:
        """The image ready to deliver: its configs fetched and checked as a pull checks them,
        its manifests in the store (a rerun reads them from there), and each layer fetched
        into the store only when the target turns out to lack it."""
        if resolved[0].index is None and not wanted.all_platforms:
            await self._blobs.require_platform(resolved[0], wanted.platforms)
        for item, config in zip(resolved, await self._blobs.configs(resolved), strict=True):
            if config is not None:  # read once for the run: kept for its upload
                await self._store.put_bytes(item.content.config.digest, config[1])
        for manifest in entry.manifests:
            await self._store.put_bytes(manifest.digest, manifest.raw)
        top = next(m for m in entry.manifests if m.digest == entry.image.digest)
        children = {item.manifest.digest: item.manifest for item in resolved}
        children.pop(top.digest, None)
        manifests = tuple((m.media_type, m.digest, m.raw) for m in (*children.values(), top))
        reference = resolved[0].reference
        blobs = tuple((blob, self._fetcher(reference, blob)) for blob in _blobs(resolved))
        return PushContent(manifests, blobs)

    def _fetcher(self, reference: Reference, blob: Descriptor) -> BlobSource:
        """How the blob gets into the store when it must be uploaded: the run's download of
        it (once, whoever needs it), checked against this image's descriptor."""

        async def fetched() -> BlobPlace:
            await self._downloads.store_in(self._store, reference, blob)
            return BlobPlace(self._store.path(blob.digest), 0, blob.size)

        return fetched


def _entry(spec: ImageSpec, wanted: ImageSpec, resolved: list[ResolvedImage]) -> Entry:
    """What the target's tag will name: as in a bundle, so narrowed only when several (not
    all) platforms of an index were chosen."""
    name = str(spec.target)
    every = wanted.all_platforms
    entry = archive_entry(name, name, resolved, every=every, docker_platform=wanted.platforms[0])
    if entry.narrowed is not None:
        kept, listed = entry.narrowed
        log.warning(
            "%s: the index is narrowed to %d of its %d manifests, a new digest %s (copy with "
            "--platform all to keep the registry's)",
            spec.source,
            kept,
            listed,
            entry.image.digest,
        )
    return entry


def _blobs(resolved: Sequence[ResolvedImage]) -> list[Descriptor]:
    """Every blob of the image, each once, config before layers."""
    found = {blob.digest: blob for item in resolved for blob in item.blobs}
    return list(found.values())


def _source_of(resolved: Sequence[ResolvedImage]) -> Digest:
    """The digest the source's reference resolved to: its index, else its manifest."""
    return (resolved[0].index or resolved[0].manifest).digest


def _emit(on_event: PushEventCallback | None, event: Event) -> None:
    if on_event is not None:
        on_event(event)
