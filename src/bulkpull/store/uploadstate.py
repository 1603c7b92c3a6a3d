"""Uploads left unfinished, kept on disk so that the next push resumes them.

A registry keeps a half-finished upload for a while (distribution: a week by default); what a
client needs to go on with one is its ``Location``. Every chunk a registry accepts moves that
location on, and the newest is written here, one small JSON file per registry, repository and
blob, so that a push killed part-way (SIGKILL, a power cut) resumes each blob where the registry
holds it instead of sending it again. A file is removed once its blob is complete, and one that
leads nowhere any more (the registry dropped the upload) is forgotten and the blob starts over.

A location is a capability (distribution signs the upload's state into it), so the directory is
made readable by its owner only. Writes are atomic (``files.write_atomically``), so a kill never
leaves half a file; one that cannot be read back is ignored. Imports ``digest`` and ``files``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.files import read_file, remove, write_atomically

_MAX_STATE_BYTES = 64 * 1024


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

    async def load(self, registry: str, repository: str, digest: Digest) -> SavedUpload | None:
        """The upload of ``digest`` to ``registry/repository`` left by an earlier run."""
        path = self._path(registry, repository, digest)
        try:
            raw = await read_file(path, _MAX_STATE_BYTES)
            saved = json.loads(raw)
        except (OSError, ValueError):
            return None
        key = saved.get("upload") if isinstance(saved, dict) else None
        if key != _key(registry, repository, digest):
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
        try:
            if not self._made:
                await asyncio.to_thread(_make_private, self.directory)
                self._made = True
            await write_atomically(
                self._path(registry, repository, digest), json.dumps(document).encode()
            )
        except OSError:
            return

    async def forget(self, registry: str, repository: str, digest: Digest) -> None:
        try:
            await remove(self._path(registry, repository, digest))
        except OSError:
            return

    def _path(self, registry: str, repository: str, digest: Digest) -> Path:
        name = hashlib.sha256(_key(registry, repository, digest).encode()).hexdigest()
        return self.directory / f"{name}.json"


def _key(registry: str, repository: str, digest: Digest) -> str:
    return f"{registry}/{repository}@{digest}"


def _make_private(directory: Path) -> None:
    """Make the directory for its owner only; one that exists is the user's and is left as
    it is."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
