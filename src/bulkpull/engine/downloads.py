"""The blob downloads of one run: each blob is fetched once, whichever images and outputs need
it, and lands where it belongs the first time.

A blob lands in the run's blob store when there is one (``--cache``, or an OCI layout's
``blobs``), else straight into the slot of the first archive that needs it (``output.filling``),
or in memory when it is a config. Every later need copies it from where it landed: in the kernel
(``copy_file_range``) between files, without hashing again, since it was verified as it arrived.
A blob an archive already in the output holds (the archive a moved tag replaces) is taken from
there, hashed as it is copied, before the registry is asked.

The first image to need a blob starts its download, which every later one waits for; one
semaphore bounds downloads across the run. A download is started for a claim (the size, type and
source one image's descriptor names) and its failure fails only the images making that claim: an
image that named the blob otherwise (another size, another registry) starts its own once that
one has failed, and an image whose descriptor is wrong fails alone, even when the blob had
already landed. Each download is retried, and resumed where it broke off, by the run's retry
policy. Progress events go to the run's callback. Imports ``registry``, ``store``, ``output``,
``retry``, ``report``, ``landing`` and the value modules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.engine.landing import Landing, Target, file_opener
from bulkpull.errors import BulkpullError, DigestMismatchError
from bulkpull.files import shielded
from bulkpull.imagelist import ImageSpec
from bulkpull.manifest import Descriptor
from bulkpull.output import ArchiveFile, BlobPlace, Slot
from bulkpull.ranges import close, duplicate
from bulkpull.reference import Reference
from bulkpull.registry import RegistryClient
from bulkpull.report import (
    BlobDone,
    BlobNeeded,
    BytesReceived,
    Event,
    image_worked_for,
    working_for,
)
from bulkpull.retry import RetryListener, RetryPolicy, retrying
from bulkpull.store import BlobOpener, BlobStore, receive
from bulkpull.tasks import cause

log = logging.getLogger("bulkpull")
# Where a config lands: it is small, read at once, and written into archives from memory.
MEMORY = Target()


class Downloads:
    """Every blob download of a run, each a task of the run's own group: entered with
    ``async with``, which on the way out cancels the downloads no image waits for any more
    (what they wrote stays for resume). ``downloaded`` and ``reused`` are its byte totals.

    A download's :class:`BulkpullError` is its result, handed to the images that wait for it;
    anything else it raises is a bug, which ends the group and so the run.
    """

    def __init__(
        self,
        registry: RegistryClient,
        store: BlobStore | None,
        max_downloads: int,
        emit: Callable[[Event], None],
        retry: RetryPolicy,
        on_retry: RetryListener | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._slots = asyncio.Semaphore(max_downloads)
        self._emit = emit
        self._retry = retry
        self._on_retry = on_retry
        self._group = asyncio.TaskGroup()
        # The download of each blob under way or done, and the claim it was started for.
        self._blobs: dict[Digest, tuple[_Claim, asyncio.Task[Landing | BulkpullError]]] = {}
        # Claims whose download failed: an image making the same claim fails the same way.
        self._refused: dict[tuple[Digest, _Claim], BulkpullError] = {}
        # Blobs in files of earlier runs (old archives), to be verified as they are copied.
        self._found: dict[Digest, Landing] = {}
        self.downloaded = 0
        self.reused = 0

    async def __aenter__(self) -> Downloads:
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for _, task in self._blobs.values():
            task.cancel()  # nothing once done; else a download no image waits for
        failure: BaseException | None = None
        try:
            await self._group.__aexit__(exc_type, exc, traceback)
        except BaseExceptionGroup as failed:
            failure = cause(failed)
        if failure is not None and failure is not exc:
            raise failure

    def offer(self, held: Mapping[Digest, BlobPlace]) -> None:
        """Blobs that archives of earlier runs hold: taken from there, verified, before the
        registry is asked for them."""
        for digest, spread in held.items():
            place = spread.in_one_file()  # one of two volumes' is fetched instead
            if place is not None:
                landing = Landing(place.size, path=place.path, offset=place.offset)
                self._found.setdefault(digest, landing)

    async def fill(
        self, reference: Reference, blob: Descriptor, archive: ArchiveFile, slot: Slot
    ) -> None:
        """Put ``blob`` into its slot of ``archive``: downloaded there if it is the first to
        need it, else copied from where it landed. A slot that a resumed partial archive already
        holds whole is left as it is, and is where others copy it from."""
        target = Target(archive, slot)
        if archive.complete(slot):
            await self._landed(reference, blob, target)
            return
        try:
            await _copy(await self._landed(reference, blob, target), archive, slot)
        except FileNotFoundError:  # the archive it landed in was given up: fetch it anew
            self._blobs.pop(blob.digest, None)
            await _copy(await self._landed(reference, blob, target), archive, slot)

    async def store_in(self, store: BlobStore, reference: Reference, blob: Descriptor) -> None:
        """Put ``blob`` into ``store`` (an OCI layout's), unless it is there already."""
        if await store.has(blob.digest):
            return
        landing = await self._landed(reference, blob, Target(store=store))
        if landing.path != store.path(blob.digest):
            await store.put_copy(blob.digest, landing.copy_into)

    async def small(self, reference: Reference, blob: Descriptor) -> bytes:
        """A small blob's bytes (a config), fetched once for the run."""
        landing = await self._landed(reference, blob, MEMORY)
        return landing.data if landing.data is not None else await asyncio.to_thread(landing.read)

    async def _landed(self, reference: Reference, blob: Descriptor, target: Target) -> Landing:
        """Where ``blob`` landed, after this image's descriptor was checked against it: the
        download is shared, but the image that started it vouches for nothing."""
        landing = await self._single(reference, blob, target)
        if landing.size != blob.size:
            what = f"blob {blob.digest} of {reference.name}"
            raise DigestMismatchError(
                what, f"{blob.digest} ({blob.size} bytes)", str(blob.digest), landing.size
            )
        return landing

    async def _single(self, reference: Reference, blob: Descriptor, target: Target) -> Landing:
        """The single download of ``blob`` for the whole run, whoever asks first.

        A download fails only the images that made the claim it was started for (same size,
        type and source); an image that claimed the blob otherwise, say from another registry,
        starts its own download once that one has failed.
        """
        claim = _Claim.of(reference, blob)
        while True:
            refused = self._refused.get((blob.digest, claim))
            if refused is not None:
                raise refused
            started = self._blobs.get(blob.digest)
            if started is None or (blob.digest, started[0]) in self._refused:
                started = claim, self._start(reference, blob, target)
                self._blobs[blob.digest] = started
            owner, task = started
            # Shielded: one image giving up must not cancel a download others wait for.
            outcome = await asyncio.shield(task)
            if isinstance(outcome, Landing):
                return outcome
            self._refused.setdefault((blob.digest, owner), outcome)
            if owner == claim:
                raise outcome

    def _start(
        self, reference: Reference, blob: Descriptor, target: Target
    ) -> asyncio.Task[Landing | BulkpullError]:
        first = blob.digest not in self._blobs
        # Started in the task of the image that needs it first: its download.
        needed_by = image_worked_for()
        held = target.opened()
        download = self._settled(reference, blob, held, first, needed_by)
        try:
            return self._group.create_task(download)
        except RuntimeError:  # the group is ending: a bug has stopped the run
            download.close()
            held.close()
            raise

    async def _settled(
        self,
        reference: Reference,
        blob: Descriptor,
        target: Target,
        first: bool,
        needed_by: ImageSpec | None,
    ) -> Landing | BulkpullError:
        """Where the download landed, or the error that refused it."""
        try:
            landing = await self._download(reference, blob, target, first, needed_by)
        except BulkpullError as exc:
            return exc
        finally:
            target.close()
        self._emit(BlobDone(blob.digest))
        return landing

    def _received(self, digest: Digest, count: int) -> None:
        self.downloaded += count
        self._emit(BytesReceived(digest, count))

    async def _download(
        self,
        reference: Reference,
        blob: Descriptor,
        target: Target,
        first: bool,
        needed_by: ImageSpec | None,
    ) -> Landing:
        """``first``: whether this is the run's first download of the blob, which says whether
        it was there already; ``needed_by``: the image whose need started it."""
        working_for(blob.digest)  # its own task: retries are the blob's, not one image's
        store = target.store or self._store
        present = target.complete or (store is not None and await store.has(blob.digest))
        if first:
            self._emit(BlobNeeded(blob.digest, blob.size, present, needed_by))
            self.reused += blob.size if present else 0
        if target.complete:
            return target.landing()
        if present and store is not None:
            return Landing(blob.size, path=store.path(blob.digest))
        found = self._found.pop(blob.digest, None)
        if found is not None:
            landed = await self._from_file(reference, blob, target, found)
            if landed is not None:
                return landed
        kept = _Kept()

        def count(size: int) -> None:
            kept.received(size)
            self._received(blob.digest, size)

        @asynccontextmanager
        async def open_body(offset: int) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
            async with self._registry.open_blob(reference, blob, offset) as (start, chunks):
                kept.body_starts(offset, start)
                yield start, chunks

        async def attempt() -> Landing:
            # The slot is held per attempt, never while a retry waits out its backoff.
            async with self._slots:
                return await self._land(reference, blob, target, open_body, count)

        return await retrying(attempt, self._retry, progress=kept.beyond, on_retry=self._on_retry)

    async def _from_file(
        self, reference: Reference, blob: Descriptor, target: Target, found: Landing
    ) -> Landing | None:
        """The blob taken from a file of an earlier run, verified; None when it is not there
        as it should be (the registry is asked then)."""
        assert found.path is not None
        try:
            landing = await self._land(reference, blob, target, file_opener(found), None)
        except (BulkpullError, OSError) as exc:
            log.info("%s: not taken from %s: %s", blob.digest, found.path, exc)
            await asyncio.to_thread(target.restart)
            return None
        self.reused += blob.size
        return landing

    async def _land(
        self,
        reference: Reference,
        blob: Descriptor,
        target: Target,
        opener: BlobOpener,
        count: Callable[[int], None] | None,
    ) -> Landing:
        """One attempt at bringing the blob from ``opener`` to where the target says."""
        what = f"blob {blob.digest} of {reference.name}"
        store = target.store or self._store
        if store is not None:
            path = await store.ingest(blob.digest, blob.size, opener, what, on_bytes=count)
            return Landing(blob.size, path=path)
        if target.archive is None:
            return Landing(blob.size, data=await _into_memory(blob, opener, what, count))
        verifier = target.verifier
        slot, archive, region = target.slot, target.archive, target.region
        assert verifier is not None
        assert slot is not None
        assert region is not None
        await receive(region, verifier, opener, count, lambda n: archive.record(slot, n))
        try:
            verifier.verify(what)
        except DigestMismatchError:
            await asyncio.to_thread(target.restart)
            raise
        return target.landing()


async def _copy(landing: Landing, archive: ArchiveFile, slot: Slot) -> None:
    """Copy a blob from where it landed into its slot of ``archive`` (unless it landed there),
    in a worker thread with a descriptor of its own: the copy ends before a cancellation of
    the image goes on, and never writes into a file the image has closed."""
    if landing.archive is archive and landing.offset == slot.offset:
        return
    fd = duplicate(archive.fd)

    def copy() -> None:
        try:
            landing.copy_into(fd, slot.offset)
            archive.record(slot, slot.size)
        finally:
            close(fd)

    await shielded(asyncio.to_thread(copy))


async def _into_memory(
    blob: Descriptor, opener: BlobOpener, what: str, count: Callable[[int], None] | None
) -> bytes:
    """A small blob read whole into memory (never more than its descriptor says), verified."""
    verifier = DigestVerifier(blob.digest, blob.size)
    data = bytearray()
    async with opener(0) as (_, chunks):
        async for chunk in chunks:
            data += chunk
            if count is not None:
                count(len(chunk))
            if len(data) > blob.size:
                break
    verifier.update(data)
    verifier.verify(what)
    return bytes(data)


@dataclass(frozen=True, slots=True)
class _Claim:
    """What one image says of a blob and where it comes from; a download started for one claim
    is never taken as the answer to another."""

    registry: str
    repository: str
    size: int
    media_type: str
    urls: tuple[str, ...]

    @classmethod
    def of(cls, reference: Reference, blob: Descriptor) -> _Claim:
        return cls(reference.registry_host, reference.path, blob.size, blob.media_type, blob.urls)


class _Kept:
    """How far one download got: where its body stands, and how far beyond what the partial
    file held when the download began it has ever reached. Only the latter is progress: a server
    that ignores ``Range`` and breaks off sends the same bytes again, and they are not new."""

    def __init__(self) -> None:
        self._held: int | None = None
        self._position = 0
        self._furthest = 0

    def body_starts(self, offset: int, start: int) -> None:
        """A body arrived for a request from ``offset``; it starts at ``start``."""
        if self._held is None:
            self._held = offset
        self._position = start

    def received(self, count: int) -> None:
        self._position += count
        self._furthest = max(self._furthest, self._position - (self._held or 0))

    def beyond(self) -> int:
        """New bytes kept: how far past what the partial file first held the download got."""
        return self._furthest
