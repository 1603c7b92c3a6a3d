"""What an image already in the target amounts to, told from the manifests in the store.

A copy finds an image up to date with one ``HEAD`` at each end and fetches nothing; its row in
the report and summary should still say what a copied row says: the media type (the ``HEAD``'s
``Content-Type``) and the size, the bytes of its top manifest and of each blob its manifests
name, once. Those manifests are in the store when this machine copied or pulled the image
before (a copy keeps every manifest it passes on), so the size costs no request; a machine
whose store lacks one (a fresh pod) leaves the size unknown rather than ask the source with a
``GET`` (which a pull limit counts). Imports ``store`` and the value modules.
"""

from __future__ import annotations

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError
from bulkpull.manifest import MAX_MANIFEST_BYTES, ImageManifest, parse_manifest
from bulkpull.store import BlobStore

# What aiohttp says when a response names no Content-Type: no media type at all.
_UNSAID = "application/octet-stream"


async def stored_footprint(store: BlobStore, digest: Digest, said: str) -> tuple[str, int]:
    """The media type (``said`` by the registry, else the stored manifest's) and size of the
    image whose top manifest is ``digest``; 0 for a size the store cannot tell."""
    said = "" if said == _UNSAID else said
    try:
        raw = await store.read_small(digest, MAX_MANIFEST_BYTES)
        if raw is None:
            return said, 0
        top = parse_manifest(raw, said, str(digest))
        manifests = [top] if isinstance(top, ImageManifest) else []
        for entry in () if isinstance(top, ImageManifest) else top.manifests:
            child = await store.read_small(entry.digest, MAX_MANIFEST_BYTES)
            content = None if child is None else parse_manifest(child, entry.media_type, "")
            if not isinstance(content, ImageManifest):
                return said or top.media_type, 0
            manifests.append(content)
    except BulkpullError:  # unreadable or not a manifest: the store cannot tell
        return said, 0
    blobs = {blob.digest: blob.size for item in manifests for blob in (item.config, *item.layers)}
    return said or top.media_type, len(raw) + sum(blobs.values())
