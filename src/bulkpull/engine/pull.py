"""The pull as the library offers it: :func:`pull_images`, :func:`pull_image` and the dry run,
:func:`resolve_images`.

A run is one group of tasks, an image each (see ``images``), inside the run's downloads (each
blob once for the whole run however many images need it, see ``downloads``) and its registry
connection. An image's :class:`BulkpullError` is its own result; a bug in any task cancels the
others and propagates from the call, with no task left running (see ``tasks``). Per-image
archives are written as images arrive; a bundle or a layout once every image is in. Imports
``destination``, ``registry``, ``store``, ``output`` and the rest of the engine.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

from bulkpull.destination import Destination
from bulkpull.digest import Digest
from bulkpull.engine.downloads import Downloads
from bulkpull.engine.have import HaveFile, HaveSet, have_set, read_have
from bulkpull.engine.images import ImagePipeline
from bulkpull.engine.options import PullOptions, registry_transport
from bulkpull.engine.outputs import RunOutput, landing_store, make_outputs
from bulkpull.engine.referrers import ImageReferrers
from bulkpull.engine.results import result
from bulkpull.errors import BulkpullError, DestinationError, InvalidOptionError
from bulkpull.imagelist import ImageSpec, check_archive_names, distinct_targets, image_spec
from bulkpull.manifest import MAX_MANIFEST_BYTES
from bulkpull.output import Bundle, HeldBlobs, Layout
from bulkpull.registry import RegistryClient, Transport
from bulkpull.report import (
    DeltaTotals,
    Event,
    EventCallback,
    ImageDone,
    ImageResult,
    ImageStage,
    PullReport,
    ReplacedImage,
    Stage,
    Status,
    retry_events,
    working_for,
)
from bulkpull.retry import RetryListener
from bulkpull.store import BlobStore
from bulkpull.tasks import all_of

DestinationLike = Destination | str | os.PathLike[str]
"""A :class:`Destination`, or the path of a directory to write one archive per image into."""
Destinations = DestinationLike | Sequence[Destination]
"""One destination, or several written in one run (each blob fetched once for all)."""


async def pull_images(
    images: Iterable[ImageSpec | str],
    destination: Destinations,
    options: PullOptions | None = None,
    *,
    on_event: EventCallback | None = None,
    have: Sequence[HaveFile | str | os.PathLike[str]] = (),
) -> PullReport:
    """Pull every image into ``destination`` and report on each.

    ``destination`` is a :class:`Destination` (archives in a directory, one bundle, an OCI
    layout), a directory path for one archive per image (and platform), or a list of
    destinations, all written in one run from one download of each blob; the first decides
    each image's result. Strings are parsed as references first; an image listed twice is
    pulled once, and two images under one name are refused (:class:`ImageListError`), as are,
    into archives, two that would write the same archive, all before any network I/O; so is
    a destination that cannot be one (:class:`DestinationError`). ``on_event`` hears progress
    as it happens, including an :class:`ImageDone` per result. ``have``: files of images the
    far side holds (:func:`read_have`), whose blobs a delta leaves out, never downloaded.
    """
    specs, options = specs_of(images), options or PullOptions()
    destinations = _destinations(destination)
    have_files = _have_files(have, destinations)
    if any(one.kind == "archives" for one in destinations):
        check_archive_names(specs, options.platforms, options.all_platforms)
    specs = distinct_targets(specs)
    started, clock = _now(), time.monotonic()
    cache = BlobStore(options.cache_dir) if options.cache_dir is not None else None
    outputs, held = await _prepared(destinations, specs, options)
    on_retry = _retry_listener(on_event)
    emit = functools.partial(_emit, on_event)
    landing = landing_store(outputs, cache)
    async with (
        connect(options, landing, held, on_retry) as registry,
        Downloads(
            registry, landing, options.max_downloads, emit, options.retry, on_retry
        ) as downloads,
    ):
        downloads.offer(held.found)
        holding = await _holding(have_files, registry, outputs, options)
        pipeline = ImagePipeline(registry, outputs, cache, downloads, options, on_event, holding)
        per_image = await all_of(pipeline.image(spec) for spec in specs)
        results = [item for results in per_image for item in results]
        for run in outputs:
            results = await run.output.finish(results)
        registries = registry.transport.usage()
    if on_event and not pipeline.final_on_add:
        for done in results:
            on_event(ImageDone(done))
    return PullReport(
        tuple(results),
        downloads.downloaded,
        downloads.reused,
        time.monotonic() - clock,
        started,
        registries,
        delta=_delta_totals(holding, pipeline.left_out, results),
        **_written(outputs),
    )


def _have_files(
    have: Sequence[HaveFile | str | os.PathLike[str]], destinations: Sequence[Destination]
) -> list[HaveFile]:
    """The ``have`` files read; refused with per-image archives, which ``docker load`` reads
    and which a delta could not be."""
    files = [one if isinstance(one, HaveFile) else read_have(one) for one in have]
    if files and any(one.kind == "archives" for one in destinations):
        raise DestinationError(
            "--have makes a delta, which only a bundle or an OCI layout can be (per-image "
            "archives are for docker load, which cannot use one): use --bundle or --oci-layout"
        )
    return files


async def _holding(
    files: Sequence[HaveFile],
    registry: RegistryClient,
    outputs: Sequence[RunOutput],
    options: PullOptions,
) -> HaveSet | None:
    """What the far side holds, told to the outputs (which then write a delta); None when
    nothing was said to be there."""
    if not files:
        return None
    holding = await have_set(files, registry, options)
    for run in outputs:
        if isinstance(run.output, Bundle | Layout):
            run.output.have = holding.images
    return holding


def _delta_totals(
    holding: HaveSet | None, left_out: dict[str, dict[Digest, int]], results: list[ImageResult]
) -> DeltaTotals | None:
    """What the delta left out of the images it holds, each blob once."""
    if holding is None:
        return None
    written = {str(result.spec.target) for result in results if result.ok}
    blobs = {d: size for name, of in left_out.items() if name in written for d, size in of.items()}
    return DeltaTotals(len(holding.images), len(blobs), sum(blobs.values()))


async def _prepared(
    destinations: Sequence[Destination], specs: Sequence[ImageSpec], options: PullOptions
) -> tuple[list[RunOutput], HeldBlobs]:
    """The outputs of ``destinations``, their names checked (all of them before any is
    created) and their directories made; and what the archives already in them hold."""
    outputs = make_outputs(destinations)
    for run in outputs:
        run.output.check_names(specs, options.platforms, options.all_platforms)
    for run in outputs:
        await run.output.prepare()
    return outputs, await _held(outputs)


async def _held(outputs: Sequence[RunOutput]) -> HeldBlobs:
    """What the archives already in the outputs hold."""
    held = HeldBlobs()

    def scan() -> None:  # in a worker thread: it lists directories and reads tar headers
        held.scan([archive for run in outputs for archive in run.output.archives()])

    await asyncio.to_thread(scan)
    return held


def _destinations(given: Destinations) -> list[Destination]:
    if isinstance(given, Destination | str | os.PathLike):
        return [Destination.of(given)]
    destinations = [Destination.of(one) for one in given]
    if not destinations:
        raise InvalidOptionError("no destination to pull into")
    return destinations


async def pull_image(
    reference: str | ImageSpec, destination: DestinationLike, options: PullOptions | None = None
) -> ImageResult:
    """Pull one image into ``destination``; the single-image form of :func:`pull_images`."""
    report = await pull_images([reference], destination, options)
    return report.results[0]


async def resolve_images(
    images: Iterable[ImageSpec | str],
    options: PullOptions | None = None,
    *,
    destination: Destinations | None = None,
    on_event: EventCallback | None = None,
) -> PullReport:
    """Resolve every image to its digests and sizes without downloading a blob (a dry run);
    with ``options.verify_key``, check each image's cosign signature as a pull would (its
    ``.sig`` manifest and payloads are the only things fetched), so an image that would fail
    fails here.

    The blob store a pull into ``destination`` would use (``options.cache_dir``, else an OCI
    layout's ``blobs``) is consulted: when it already holds manifests, tags are asked for with
    ``HEAD`` first (which Docker Hub does not count as a pull) and manifests found there are
    read from disk.
    """
    specs = specs_of(images)
    options = options or PullOptions()
    started, clock = _now(), time.monotonic()
    destinations = _destinations(destination) if destination is not None else []
    store_dir = options.cache_dir
    for one in destinations:
        store_dir = store_dir or one.store_path()
    store = BlobStore(store_dir) if store_dir is not None else None
    held = await _held(make_outputs(destinations))
    jobs = asyncio.Semaphore(options.jobs)
    on_retry, emit = _retry_listener(on_event), functools.partial(_emit, on_event)
    async with (
        connect(options, store, held, on_retry) as registry,
        Downloads(registry, None, options.max_downloads, emit, options.retry, on_retry) as fetch,
    ):
        # No referrer is looked for; with a key, each image's signature is checked.
        signed = ImageReferrers(
            registry, fetch, carry=False, types=frozenset(), key=options.verify_key
        )
        resolving = functools.partial(_resolve, registry, signed, jobs, options, on_event)
        per_image = await all_of(resolving(spec) for spec in specs)
        registries = registry.transport.usage()
    results = tuple(item for results in per_image for item in results)
    return PullReport(
        results, seconds=time.monotonic() - clock, started=started, registries=registries
    )


async def _resolve(
    registry: RegistryClient,
    signed: ImageReferrers,
    jobs: asyncio.Semaphore,
    options: PullOptions,
    on_event: EventCallback | None,
    spec: ImageSpec,
) -> list[ImageResult]:
    """One image of a dry run: its results, resolved (and its signature checked, with a key)
    or failed."""
    working_for(spec)
    wanted = spec.choosing(options.platforms, options.all_platforms)
    try:
        async with jobs:
            _emit(on_event, ImageStage(spec, Stage.RESOLVING))
            resolved = await registry.resolve(
                spec.source, wanted.platforms, every=wanted.all_platforms
            )
            checked = await signed.find(spec.source, resolved)
        results = [
            result(spec, item, Status.RESOLVED, wanted, companions=checked) for item in resolved
        ]
    except BulkpullError as exc:
        results = [ImageResult(spec, Status.FAILED, error=exc)]
    for done in results:
        _emit(on_event, ImageDone(done))
    return results


def specs_of(images: Iterable[ImageSpec | str]) -> list[ImageSpec]:
    """The images of a run as specs, strings parsed as references."""
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
async def connect(
    options: PullOptions,
    store: BlobStore | None,
    held: HeldBlobs,
    on_retry: RetryListener | None,
) -> AsyncIterator[RegistryClient]:
    """The run's transport, and a registry client that knows the manifests on disk: in the
    store (the cache, a layout's blobs) and in the archives already in the outputs.

    Only a store or an output that already holds something is worth a ``HEAD`` before each
    tag's ``GET``: on a first run it would cost every image one more round trip and save
    nothing.
    """

    async def known(digest: Digest) -> bytes | None:
        raw = await store.read_small(digest, MAX_MANIFEST_BYTES) if store else None
        return raw if raw is not None else await held.read_small(digest, MAX_MANIFEST_BYTES)

    async with _transport(options, on_retry) as transport:
        worth_asking = bool(held.found) or (store is not None and await store.holds_anything())
        yield RegistryClient(transport, known if worth_asking else None)


def _transport(options: PullOptions, on_retry: RetryListener | None) -> Transport:
    """The transport a pull with ``options`` needs: a connection for every download and every
    image resolving at once."""
    connections = options.max_downloads + options.jobs
    return registry_transport(
        options, connections=connections, on_retry=on_retry, mirrors=options.mirrors
    )


class _Written(TypedDict):
    replaced: tuple[ReplacedImage, ...]
    volumes: tuple[Path, ...]


def _written(outputs: Sequence[RunOutput]) -> _Written:
    """What the outputs say they wrote, as :class:`PullReport` fields: the images they held
    before and hold no longer, and the volumes of a split bundle."""
    return _Written(
        replaced=tuple(replaced for run in outputs for replaced in run.output.replaced),
        volumes=tuple(volume for run in outputs for volume in run.output.volumes),
    )
