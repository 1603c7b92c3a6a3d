"""The blob uploads of one push: each blob placed once per repository, sent once per run.

A blob the target's repository already has (``HEAD``) is skipped. The first image to need a
blob anywhere in the run uploads it; every other repository that needs it waits for that upload
and then cross-mounts it from there, as it does from a repository found holding it (an image
already up to date). A registry that declines a mount opens an ordinary upload instead, which
is used. One semaphore bounds the uploads of the whole run.

Other processes pushing into the same registry (the shards of one list, ``--shard K/N``) are
met in two ways, both free of extra requests. Processes that share a state directory (shards
on one machine) place each blob's first copy under the blob's lock there, and record the
repository it went to (``store.uploadstate``): a second process needing the blob waits for the
lock, finds the blob in its own repository (``HEAD``: skipped) or mounts it from the one
recorded. Processes that share nothing but the registry (pods of a Kubernetes Job) cannot know
where another put a blob, so the ``POST`` that opens the first upload of a blob into a
repository names a guess as its ``from`` (``guesses``: for a copy, the repository of a nearby
image of the list that another shard copies, see ``engine.peers``). A mount needs ``from``:
the distribution spec lets a registry mount without it, but distribution (the Debian
``docker-registry`` included) only mounts when both ``mount`` and ``from`` are given, and Quay
fails such a request; a registry that cannot mount from the guess opens an ordinary upload,
which is used, so a wrong guess costs nothing but, with token auth, the token for its scope.
Shards that start at once reach their first copy of a shared layer at about the same time, so
across machines a layer may go up once per shard; never twice into one repository by one run.

An upload goes as one ``PUT`` when the blob is small, else in ``PATCH`` chunks, each read from
the archive or layout where the blob sits as it is sent. Every chunk the registry accepts moves
the upload's location on, and the newest is kept in the state directory (``store.uploadstate``):
an upload cut off resumes where the registry says it stands (``GET`` of the location), in this
run by the retry policy or in the next run after a kill. An upload the registry dropped or
refuses to go on with starts over. Imports ``registry``, ``store``, ``output``, ``files``,
``retry``, ``report``, ``pushreport``, ``pushplan`` (where a blob's bytes are) and the value
modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.engine.pushplan import BlobSource
from bulkpull.errors import BulkpullError, DigestMismatchError, RegistryError, is_temporary
from bulkpull.imagelist import ImageSpec
from bulkpull.manifest import Descriptor
from bulkpull.output import BlobPlace, read_place
from bulkpull.pushreport import BlobCounts, BytesSent, PushEvent
from bulkpull.registry import PushClient, UploadSession
from bulkpull.report import BlobDone, BlobNeeded, image_worked_for, working_for
from bulkpull.retry import RetryListener, RetryPolicy, retrying
from bulkpull.store import SavedUpload, UploadState

# Registry answers that mean the upload itself is gone or unusable: start it over at once.
_LOST_STATUSES = frozenset({404, 416})
_LOST_CODES = frozenset(
    {
        "BLOB_UPLOAD_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "DIGEST_INVALID",
        "RANGE_INVALID",
        "SIZE_INVALID",
    }
)


class Outcome(StrEnum):
    UPLOADED = "uploaded"
    MOUNTED = "mounted"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Placed:
    """How a blob came to be in a repository, and the bytes its upload sent."""

    outcome: Outcome
    sent: int = 0

    @property
    def counts(self) -> BlobCounts:
        return BlobCounts(
            uploaded=self.outcome is Outcome.UPLOADED,
            mounted=self.outcome is Outcome.MOUNTED,
            skipped=self.outcome is Outcome.SKIPPED,
            bytes=self.sent,
        )


class Uploads:
    """Every blob placed in the target in one run; ``totals`` and ``sent`` sum them up."""

    def __init__(
        self,
        client: PushClient,
        state: UploadState,
        *,
        max_uploads: int,
        chunk_size: int,
        retry: RetryPolicy,
        emit: Callable[[PushEvent], None],
        on_retry: RetryListener | None = None,
        guesses: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        # Per repository, one where another process likely put the blobs it shares with it.
        self._guesses = guesses or {}
        self._state = state
        self._slots = asyncio.Semaphore(max_uploads)
        self._chunk_size = chunk_size
        self._retry = retry
        self._emit = emit
        self._on_retry = on_retry
        self._placing: dict[tuple[str, Digest], asyncio.Task[Placed]] = {}
        # The first placement of each blob in the run, which later ones wait for and mount.
        self._first: dict[Digest, asyncio.Task[Placed]] = {}
        # Repositories of the target that hold each blob, or should (mount candidates).
        self._holders: dict[Digest, list[str]] = {}
        self.totals = BlobCounts()
        self.sent = 0

    def holders(self, digest: Digest) -> list[str]:
        """The repositories of the target known to hold ``digest`` (or to get it this run)."""
        return list(self._holders.get(digest, []))

    def held(self, repository: str, digests: list[Digest]) -> None:
        """``repository`` holds these blobs (an image there is up to date): mount from it."""
        for digest in digests:
            self._hold(digest, repository)

    async def close(self) -> None:
        """Stop placements no image waits for any more (their state stays for resume), and
        let the state directory drop what is a week old."""
        pending = [task for task in self._placing.values() if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._state.prune()

    async def place(self, repository: str, blob: Descriptor, where: BlobSource) -> Placed:
        """Make sure ``repository`` holds ``blob``; the work is shared by every image that
        needs the blob there, and a failure fails each of them. ``where`` is asked for the
        bytes only when they must be sent."""
        key = (repository, blob.digest)
        task = self._placing.get(key)
        if task is None:
            needed_by = image_worked_for()
            task = asyncio.create_task(self._place(repository, blob, where, needed_by))
            self._placing[key] = task
            self._first.setdefault(blob.digest, task)
        return await asyncio.shield(task)

    async def _place(
        self, repository: str, blob: Descriptor, where: BlobSource, needed_by: ImageSpec | None
    ) -> Placed:
        working_for(blob.digest)  # its own task: retries are the blob's, not one image's
        first = self._first[blob.digest]
        if first is not asyncio.current_task():
            if await self._client.has_blob(repository, blob.digest):
                return self._placed(repository, blob.digest, Placed(Outcome.SKIPPED))
            await asyncio.wait({first})  # its outcome is its images'; this one tries anyway
            return await self._put(repository, blob, where, None)
        registry = self._client.registry
        # Another process sharing the state directory may be placing it: wait, then use that.
        async with self._state.claim(registry, blob.digest):
            if await self._client.has_blob(repository, blob.digest):
                self._needed(blob, True, needed_by, True)
                placed = self._placed(repository, blob.digest, Placed(Outcome.SKIPPED))
            else:
                recorded = await self._state.holder(registry, blob.digest)
                placed = await self._put(repository, blob, where, recorded, needed_by, first=True)
            await self._state.hold(registry, blob.digest, repository)
        return placed

    async def _put(
        self,
        repository: str,
        blob: Descriptor,
        where: BlobSource,
        recorded: str | None,
        needed_by: ImageSpec | None = None,
        *,
        first: bool = False,
    ) -> Placed:
        """Mount the blob into ``repository`` from where it likely is (this run's holders,
        else the one ``recorded`` by another process, else the guess), else upload it. The
        run's ``first`` placement of the blob (for the image ``needed_by``) tells the display."""
        declined: UploadSession | None = None
        source = self._mount_source(repository, blob.digest, recorded)
        if source is not None:
            declined = await self._client.mount(repository, blob.digest, source)
            if declined is None:
                self._needed(blob, True, needed_by, first)
                return self._placed(repository, blob.digest, Placed(Outcome.MOUNTED))
        self._needed(blob, False, needed_by, first)
        place = where if isinstance(where, BlobPlace) else await where()
        sent = await self._upload(repository, blob, place, declined)
        if first:
            self._emit(BlobDone(blob.digest))
        return self._placed(repository, blob.digest, Placed(Outcome.UPLOADED, sent))

    def _mount_source(self, repository: str, digest: Digest, recorded: str | None) -> str | None:
        """The one repository a mount is tried from: one mount per blob, since a declined
        mount opens the upload that is then used."""
        candidates = [*self._holders.get(digest, []), recorded, self._guesses.get(repository)]
        return next((c for c in candidates if c is not None and c != repository), None)

    def _needed(
        self, blob: Descriptor, present: bool, needed_by: ImageSpec | None, is_first: bool
    ) -> None:
        """Tell the display of the blob once per run, when its first placement knows whether
        bytes must go (present: the target has it, or will by a mount)."""
        if is_first:
            self._emit(BlobNeeded(blob.digest, blob.size, present, needed_by))

    def _placed(self, repository: str, digest: Digest, placed: Placed) -> Placed:
        self._hold(digest, repository)
        self.totals += placed.counts
        return placed

    def _hold(self, digest: Digest, repository: str) -> None:
        holders = self._holders.setdefault(digest, [])
        if repository not in holders:
            holders.append(repository)

    async def _upload(
        self,
        repository: str,
        blob: Descriptor,
        where: BlobPlace,
        declined: UploadSession | None,
    ) -> int:
        """Upload the blob, retried by the run's policy; returns the bytes sent for it."""
        progress = _Progress()
        opened = [declined] if declined is not None else []
        if declined is not None:
            await self._save(declined, blob.digest)

        async def attempt() -> None:
            # The slot is held per attempt, never while a retry waits out its backoff.
            async with self._slots:
                upload = opened.pop() if opened else await self._resume(repository, blob.digest)
                try:
                    await self._send(upload, blob, where, progress)
                except BulkpullError as exc:
                    if not _lost(exc):
                        raise
                    if isinstance(exc, RegistryError) and "DIGEST_INVALID" in exc.codes:
                        await _check_source(blob, where)
                    await self._forget(repository, blob.digest)
                    restarted = await self._start(repository, blob.digest)
                    await self._send(restarted, blob, where, progress)
            await self._forget(repository, blob.digest)

        await retrying(attempt, self._retry, progress=progress.furthest, on_retry=self._on_retry)
        return progress.sent

    async def _resume(self, repository: str, digest: Digest) -> UploadSession:
        """The upload an earlier attempt or run left, where the registry says it stands; or a
        new one when there is none, or the registry dropped it."""
        registry = self._client.registry
        saved = await self._state.load(registry, repository, digest)
        if saved is not None:
            try:
                return await self._client.status(
                    UploadSession(repository, saved.location, saved.offset)
                )
            except BulkpullError as exc:
                if not _lost(exc):
                    raise
            await self._forget(repository, digest)
        return await self._start(repository, digest)

    async def _start(self, repository: str, digest: Digest) -> UploadSession:
        upload = await self._client.start(repository)
        await self._save(upload, digest)
        return upload

    async def _send(
        self, upload: UploadSession, blob: Descriptor, where: BlobPlace, progress: _Progress
    ) -> None:
        """Send what the registry lacks of the blob and close the upload: in one ``PUT`` when
        the whole blob fits in a chunk, else chunk by chunk, each kept for a resume."""
        chunk = max(self._chunk_size, upload.min_chunk)
        progress.reached(upload.offset)
        if upload.offset == 0 and blob.size <= chunk:
            body = self._body(where, blob.digest, 0, blob.size, progress)
            await self._client.finish(upload, blob.digest, body, blob.size)
            return
        while upload.offset < blob.size:
            length = min(chunk, blob.size - upload.offset)
            body = self._body(where, blob.digest, upload.offset, length, progress)
            upload = await self._client.append(upload, body, length)
            progress.reached(upload.offset)
            await self._save(upload, blob.digest)
        await self._client.finish(upload, blob.digest)

    def _body(
        self, where: BlobPlace, digest: Digest, start: int, length: int, progress: _Progress
    ) -> Callable[[], AsyncIterator[bytes]]:
        """``length`` bytes of the blob from ``start``, read as they are sent; a request
        sent again reads them again."""

        async def chunks() -> AsyncIterator[bytes]:
            async for data in read_place(where, start, length):
                self.sent += len(data)
                progress.sent += len(data)
                self._emit(BytesSent(digest, len(data)))
                yield data

        return chunks

    async def _save(self, upload: UploadSession, digest: Digest) -> None:
        saved = SavedUpload(upload.location, upload.offset)
        await self._state.save(self._client.registry, upload.repository, digest, saved)

    async def _forget(self, repository: str, digest: Digest) -> None:
        await self._state.forget(self._client.registry, repository, digest)


class _Progress:
    """How far one blob's upload got: the most the registry ever confirmed (progress, for the
    retry policy), and every byte sent for it."""

    def __init__(self) -> None:
        self._furthest = 0
        self.sent = 0

    def reached(self, offset: int) -> None:
        self._furthest = max(self._furthest, offset)

    def furthest(self) -> int:
        return self._furthest


async def _check_source(blob: Descriptor, where: BlobPlace) -> None:
    """Raise :class:`DigestMismatchError` if the source's bytes of ``blob`` do not hash to its
    digest. A registry answers ``DIGEST_INVALID`` to bytes that differ from the digest they
    were sent under: after a flipped bit on the medium that carried a bundle, sending them again
    would only be refused again, and the registry's words would blame the upload, not the file.
    Costs one read of the blob, only after such an answer."""
    verifier = DigestVerifier(blob.digest, blob.size)
    async for chunk in read_place(where, 0, blob.size):
        verifier.update(chunk)
    try:
        verifier.verify(f"blob {blob.digest} as read from {where.path}")
    except DigestMismatchError as damaged:
        damaged.final = True  # the same bytes again would be refused again
        raise


def _lost(exc: BulkpullError) -> bool:
    """Whether the registry dropped the upload or will not go on with it: then it starts
    over. A throttle or a server error is waited out instead; a refused login stands, and so
    does a registry that says it stored other bytes (the retry policy tries that once more)."""
    if not isinstance(exc, RegistryError) or is_temporary(exc) or exc.status in (401, 403):
        return False
    return exc.status in _LOST_STATUSES or bool(exc.codes & _LOST_CODES)
