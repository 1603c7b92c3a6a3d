"""The blob downloads of one run: each blob is one download, whichever images need it, and each
image checks the stored blob against its own descriptor.

The first image to need a blob starts its download, which every later one waits for; one
semaphore bounds downloads across the run. A download is started for a claim (the size, type and
source one image's descriptor names) and its failure fails only the images making that claim: an
image that named the blob otherwise (another size, another registry) starts its own once that
one has failed, and an image whose descriptor is wrong fails alone, even when the blob was
already stored. Each download is retried, and resumed where it broke off, by the run's retry
policy. Progress events go to the run's callback. Imports ``registry``, ``blobstore``, ``retry``,
``report`` and the value modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, DigestMismatchError, OutputError
from bulkpull.imagelist import ImageSpec
from bulkpull.manifest import Descriptor
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
from bulkpull.store import BlobOpener, BlobStore
from bulkpull.tasks import cause


class Downloads:
    """Every blob download of a run, each a task of the run's own group: entered with
    ``async with``, which on the way out cancels the downloads no image waits for any more
    (their partial files stay for resume). ``downloaded`` and ``reused`` are its byte totals.

    A download's :class:`BulkpullError` is its result, handed to the images that wait for it;
    anything else it raises is a bug, which ends the group and so the run.
    """

    def __init__(
        self,
        registry: RegistryClient,
        store: BlobStore,
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
        self._blobs: dict[Digest, tuple[_Claim, asyncio.Task[Path | BulkpullError]]] = {}
        # Claims whose download failed: an image making the same claim fails the same way.
        self._refused: dict[tuple[Digest, _Claim], BulkpullError] = {}
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

    async def fetch(self, reference: Reference, blob: Descriptor) -> None:
        """Wait until ``blob`` is in the store, then check it against this image's descriptor:
        the download is shared, but the image that started it vouches for nothing."""
        path = await self._stored(reference, blob)
        what = f"blob {blob.digest} of {reference.name}"
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except OSError as exc:
            raise OutputError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc
        if size != blob.size:
            raise DigestMismatchError(
                what, f"{blob.digest} ({blob.size} bytes)", str(blob.digest), size
            )

    async def _stored(self, reference: Reference, blob: Descriptor) -> Path:
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
                started = claim, self._start(reference, blob)
                self._blobs[blob.digest] = started
            owner, task = started
            # Shielded: one image giving up must not cancel a download others wait for.
            outcome = await asyncio.shield(task)
            if isinstance(outcome, Path):
                return outcome
            self._refused.setdefault((blob.digest, owner), outcome)
            if owner == claim:
                raise outcome

    def _start(self, reference: Reference, blob: Descriptor) -> asyncio.Task[Path | BulkpullError]:
        first = blob.digest not in self._blobs
        # Started in the task of the image that needs it first: its download.
        needed_by = image_worked_for()
        download = self._settled(reference, blob, first, needed_by)
        try:
            return self._group.create_task(download)
        except RuntimeError:  # the group is ending: a bug has stopped the run
            download.close()
            raise

    async def _settled(
        self, reference: Reference, blob: Descriptor, first: bool, needed_by: ImageSpec | None
    ) -> Path | BulkpullError:
        """The download's stored blob, or the error that refused it."""
        try:
            path = await self._download(reference, blob, first, needed_by)
        except BulkpullError as exc:
            return exc
        self._emit(BlobDone(blob.digest))
        return path

    def _received(self, digest: Digest, count: int) -> None:
        self.downloaded += count
        self._emit(BytesReceived(digest, count))

    async def _download(
        self, reference: Reference, blob: Descriptor, first: bool, needed_by: ImageSpec | None
    ) -> Path:
        """``first``: whether this is the run's first download of the blob, which says whether
        the store had it; ``needed_by``: the image whose need started it."""
        working_for(blob.digest)  # its own task: retries are the blob's, not one image's
        present = await self._store.has(blob.digest)
        if first:
            self._emit(BlobNeeded(blob.digest, blob.size, present, needed_by))
            self.reused += blob.size if present else 0
        if present:
            return self._store.path(blob.digest)
        what = f"blob {blob.digest} of {reference.name}"
        kept = _Kept()

        def count(size: int) -> None:
            kept.received(size)
            self._received(blob.digest, size)

        @asynccontextmanager
        async def open_body(offset: int) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
            async with self._registry.open_blob(reference, blob, offset) as (start, chunks):
                kept.body_starts(offset, start)
                yield start, chunks

        opener: BlobOpener = open_body

        async def attempt() -> Path:
            # The slot is held per attempt, never while a retry waits out its backoff.
            async with self._slots:
                return await self._store.ingest(
                    blob.digest, blob.size, opener, what, on_bytes=count
                )

        return await retrying(attempt, self._retry, progress=kept.beyond, on_retry=self._on_retry)


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
