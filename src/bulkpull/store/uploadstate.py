"""Uploads left unfinished, kept on disk so that the next push resumes them.

A registry keeps a half-finished upload for a while (distribution: a week by default); what a
client needs to go on with one is its ``Location``. Every chunk a registry accepts moves that
location on, and the newest is written here, one small JSON file per registry, repository and
blob, so that a push killed part-way (SIGKILL, a power cut) resumes each blob where the registry
holds it instead of sending it again. A file is removed once its blob is complete, and one that
leads nowhere any more (the registry dropped the upload) is forgotten and the blob starts over.

The same directory is where processes that share it (shards of one list on one machine) meet
over blobs: each blob's first placement in a run is done under a lock of the blob
(:meth:`UploadState.claim`, an ``flock`` as the store's), and records the repository that then
holds it (:meth:`UploadState.holder`), so that another process needing the blob in another
repository waits for that placement and mounts it from there instead of sending it again. A
record is a hint, never trusted: a mount from a repository that lost the blob is declined by
the registry (an ordinary upload opens instead), and a later placement records where it went.

Records older than a week are removed at the end of a run, at most once a day
(:meth:`UploadState.prune`): distribution drops an unfinished upload after a week by default,
and a holder record that old is a stale hint (the registry may have collected the blob), so the
directory does not grow by a file per blob for ever.

A location is a capability (distribution signs the upload's state into it), so the directory is
made readable by its owner only. Writes are atomic (``files.write_atomically``), so a kill never
leaves half a file; one that cannot be read back is ignored. A state directory that cannot be
used costs the resume and the meeting of processes, never the push. Imports ``digest``,
``reference``, ``errors``, ``files`` and the store's ``locks``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import InvalidReferenceError, OutputError
from bulkpull.files import read_file, remove, write_atomically
from bulkpull.reference import Reference
from bulkpull.store.locks import exclusive

log = logging.getLogger("bulkpull")

_MAX_STATE_BYTES = 64 * 1024
# distribution's default for dropping unfinished uploads (uploadpurging age: 168h).
STALE_AFTER = 7 * 24 * 3600
_PRUNE_EVERY = 24 * 3600
_PRUNED = ".pruned"


@dataclass(frozen=True, slots=True)
class SavedUpload:
    """Where an unfinished upload goes on, and how many bytes the registry had accepted."""

    location: str
    offset: int


class UploadState:
    """Unfinished uploads in ``directory`` (created, owner-only, when first written)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made = False
        self._warned = False

    async def load(self, registry: str, repository: str, digest: Digest) -> SavedUpload | None:
        """The upload of ``digest`` to ``registry/repository`` left by an earlier run."""
        key = _key(registry, repository, digest)
        saved = await self._read(self._path(registry, repository, digest), "upload", key)
        if saved is None:
            return None
        location, offset = saved.get("location"), saved.get("offset")
        if not isinstance(location, str) or not isinstance(offset, int) or offset < 0:
            return None
        return SavedUpload(location, offset)

    async def save(
        self, registry: str, repository: str, digest: Digest, upload: SavedUpload
    ) -> None:
        """Remember where the upload goes on; a state directory that cannot be written only
        costs the resume after a kill, never the push."""
        document = {
            "upload": _key(registry, repository, digest),
            "location": upload.location,
            "offset": upload.offset,
        }
        await self._write(self._path(registry, repository, digest), document)

    async def forget(self, registry: str, repository: str, digest: Digest) -> None:
        try:
            await remove(self._path(registry, repository, digest))
        except OSError:
            return

    @asynccontextmanager
    async def claim(self, registry: str, digest: Digest) -> AsyncIterator[None]:
        """Hold the blob's lock while placing it, so that another process sharing this
        directory waits, and then finds the blob's :meth:`holder`. Without a usable directory
        the placement goes on unlocked."""
        async with AsyncExitStack() as stack:
            with suppress(OSError, OutputError):
                await self._make()
                lock = self.directory / f"{_blob_name(registry, digest)}.lock"
                await stack.enter_async_context(exclusive(lock))
            yield

    async def holder(self, registry: str, digest: Digest) -> str | None:
        """The repository of ``registry`` a process sharing this directory last placed the
        blob in (a hint: the registry may have lost it since)."""
        path = self.directory / f"{_blob_name(registry, digest)}.holder.json"
        held = await self._read(path, "blob", f"{registry}@{digest}")
        repository = held.get("repository") if held is not None else None
        if not isinstance(repository, str):
            return None
        try:
            Reference(registry, repository, "latest")
        except InvalidReferenceError:
            return None
        return repository

    async def hold(self, registry: str, digest: Digest, repository: str) -> None:
        """Record that ``registry/repository`` now holds the blob."""
        path = self.directory / f"{_blob_name(registry, digest)}.holder.json"
        await self._write(path, {"blob": f"{registry}@{digest}", "repository": repository})

    async def prune(self) -> None:
        """Remove the records older than :data:`STALE_AFTER`, when no run sharing this
        directory did so in the last day (its ``.pruned`` file says when); a directory that
        cannot be read or written is left as it is."""
        await asyncio.to_thread(_prune, self.directory, time.time())

    async def _read(self, path: Path, field: str, key: str) -> dict[str, object] | None:
        """The document at ``path`` when it is one and its ``field`` is ``key``."""
        try:
            document = json.loads(await read_file(path, _MAX_STATE_BYTES))
        except (OSError, ValueError):
            return None
        if not isinstance(document, dict) or document.get(field) != key:
            return None
        return document

    async def _write(self, path: Path, document: dict[str, object]) -> None:
        try:
            await self._make()
            await write_atomically(path, json.dumps(document).encode())
        except OSError as exc:
            self._unusable(exc)

    async def _make(self) -> None:
        if not self._made:
            try:
                await asyncio.to_thread(_make_private, self.directory)
            except OSError as exc:
                self._unusable(exc)
                raise
            self._made = True

    def _unusable(self, exc: OSError) -> None:
        """Say once that the directory cannot be used: the push goes on without it, but a
        user who gave ``--state-dir`` expects a kill to resume."""
        if not self._warned:
            self._warned = True
            log.warning(
                "state directory %s cannot be used (%s): an upload cut off starts over, and "
                "processes sharing the directory do not meet over blobs",
                self.directory,
                "a file is there" if isinstance(exc, FileExistsError) else exc.strerror or exc,
            )

    def _path(self, registry: str, repository: str, digest: Digest) -> Path:
        name = hashlib.sha256(_key(registry, repository, digest).encode()).hexdigest()
        return self.directory / f"{name}.json"


def _prune(directory: Path, now: float) -> None:
    marker = directory / _PRUNED
    try:
        if now - os.stat(marker, follow_symlinks=False).st_mtime < _PRUNE_EVERY:
            return
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        with os.scandir(directory) as entries:
            old = [e.path for e in entries if e.name.endswith(".json") and _older(e, now)]
        for path in old:
            with suppress(FileNotFoundError):
                os.unlink(path)
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        os.utime(marker, (now, now), follow_symlinks=False)
    except OSError:
        return


def _older(entry: os.DirEntry[str], now: float) -> bool:
    """Whether the entry is a regular file last written more than a week before ``now``."""
    try:
        found = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and now - found.st_mtime > STALE_AFTER


def _blob_name(registry: str, digest: Digest) -> str:
    return hashlib.sha256(f"blob {registry}@{digest}".encode()).hexdigest()


def _key(registry: str, repository: str, digest: Digest) -> str:
    return f"{registry}/{repository}@{digest}"


def _make_private(directory: Path) -> None:
    """Make the directory for its owner only; one that exists is the user's and is left as
    it is."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
