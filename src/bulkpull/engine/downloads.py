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


class Downloads:
    """Every blob download of a run; ``downloaded`` and ``reused`` are its byte totals."""

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
        # The download of each blob under way or done, and the claim it was started for.
        self._blobs: dict[Digest, tuple[_Claim, asyncio.Task[Path]]] = {}
        # Claims whose download failed: an image making the same claim fails the same way.
        self._refused: dict[tuple[Digest, _Claim], BulkpullError] = {}
        self.downloaded = 0
        self.reused = 0

    async def close(self) -> None:
        """Stop downloads no image waits for any more (their partial files stay for resume)."""
        pending = [task for _, task in self._blobs.values() if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

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
            try:
                # Shielded: one image giving up must not cancel a download others wait for.
                return await asyncio.shield(task)
            except BulkpullError as exc:
                self._refused.setdefault((blob.digest, owner), exc)
                if owner == claim:
                    raise

    def _start(self, reference: Reference, blob: Descriptor) -> asyncio.Task[Path]:
        first = blob.digest not in self._blobs
        # Started in the task of the image that needs it first: its download.
        needed_by = image_worked_for()
        task = asyncio.create_task(self._download(reference, blob, first, needed_by))
        task.add_done_callback(lambda done: self._blob_finished(blob.digest, done))
        return task

    def _blob_finished(self, digest: Digest, task: asyncio.Task[Path]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._emit(BlobDone(digest))

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
