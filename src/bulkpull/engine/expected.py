"""What a delta expects at the target, found there before any of its image is written.

A delta (a bundle or layout made with ``--have``) leaves out the blobs the far side holds. A
push of it first asks, with ``HEAD`` only, where each of those blobs is: in the repository the
image goes to (nothing to do), else in a repository of the target that holds it, from which it
is mounted. The repositories tried are those the ``--have`` images holding the blob went to
(by the same naming rule, so the same ``--to`` finds them) and those this run has placed it
in. A blob found nowhere fails the image before anything of it is written, naming every such
blob and the images the delta says hold it; other images go on. Imports ``registry``,
``uploads``, ``targets``, ``output`` and the value modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bulkpull.digest import Digest
from bulkpull.engine.uploads import Uploads
from bulkpull.errors import AuthenticationError, ContentError, InvalidReferenceError
from bulkpull.output import ExpectedBlob
from bulkpull.pushreport import BlobCounts
from bulkpull.reference import Reference, parse_reference
from bulkpull.registry import PushClient
from bulkpull.targets import PushTarget

# How many missing blobs an error names before it says "and N more".
_NAMED = 5


class ExpectedBlobs:
    """Finds and mounts the blobs deltas expect, for every image of one push."""

    def __init__(self, client: PushClient, target: PushTarget, uploads: Uploads) -> None:
        self._client = client
        self._target = target
        self._uploads = uploads

    async def find(self, image: Reference, expected: Sequence[ExpectedBlob]) -> dict[Digest, str]:
        """Where each blob ``image`` expects is: "" when its repository holds it, else the
        repository to mount it from. :class:`ContentError` naming the blobs found nowhere."""
        found = await asyncio.gather(*(self._where(image.path, blob) for blob in expected))
        missing = [blob for blob, where in zip(expected, found, strict=True) if where is None]
        if missing:
            raise ContentError(_missing_text(image, missing))
        return {
            blob.digest: where
            for blob, where in zip(expected, found, strict=True)
            if where is not None
        }

    async def mount(self, image: Reference, found: dict[Digest, str]) -> BlobCounts:
        """Mount into ``image``'s repository what :meth:`find` found elsewhere."""
        counts = BlobCounts()
        for digest, source in found.items():
            if not source:
                counts += BlobCounts(skipped=1)
                continue
            declined = await self._client.mount(image.path, digest, source)
            if declined is not None:
                await self._client.cancel(declined)
                raise ContentError(
                    f"{self._target.registry} declined to mount {digest} from {source} into "
                    f"{image.path}, and the delta does not carry it"
                )
            counts += BlobCounts(mounted=1)
        self._uploads.held(image.path, list(found))
        self._uploads.totals += counts
        return counts

    async def _where(self, repository: str, blob: ExpectedBlob) -> str | None:
        if await self._client.has_blob(repository, blob.digest):
            return ""
        for candidate in self._candidates(blob):
            if candidate != repository and await self._held_in(candidate, blob.digest):
                return candidate
        return None

    async def _held_in(self, repository: str, digest: Digest) -> bool:
        """Whether another repository holds the blob; one this login may not read holds
        nothing it could mount from."""
        try:
            return await self._client.has_blob(repository, digest)
        except AuthenticationError:
            return False

    def _candidates(self, blob: ExpectedBlob) -> list[str]:
        """The target's repositories that may hold ``blob``: where its ``--have`` images
        went, and where this run has placed it."""
        found = []
        for holder in blob.holders:
            try:
                found.append(self._target.name_for(parse_reference(holder)).path)
            except InvalidReferenceError:
                continue  # a record naming no image: nothing to mount from
        return list(dict.fromkeys([*found, *self._uploads.holders(blob.digest)]))


def _missing_text(image: Reference, missing: Sequence[ExpectedBlob]) -> str:
    named = ", ".join(
        f"{blob.digest} (held by {', '.join(blob.holders) or 'no image named'})"
        for blob in missing[:_NAMED]
    )
    more = f", and {len(missing) - _NAMED} more" if len(missing) > _NAMED else ""
    blobs, are = ("1 blob", "is") if len(missing) == 1 else (f"{len(missing)} blobs", "are")
    return (
        f"the delta expects {blobs} at {image.registry_host} that {are} not there, in "
        f"{image.path} or a repository to mount from: {named}{more}; push the images --have "
        "named first (or a full bundle)"
    )
