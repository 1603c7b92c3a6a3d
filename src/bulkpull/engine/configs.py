"""An image's blobs fetched through the run's downloads, config first, and the config read and
held against the manifest and the platforms asked for. Imports ``errors``, ``manifest``,
``platform``, ``resolved``, ``store`` and ``downloads``.
"""

from __future__ import annotations

from bulkpull.engine.downloads import Downloads
from bulkpull.errors import ContentError, PlatformNotFoundError
from bulkpull.manifest import MAX_MANIFEST_BYTES, ImageConfig, parse_config
from bulkpull.platform import Platform
from bulkpull.resolved import ResolvedImage
from bulkpull.store import BlobStore
from bulkpull.tasks import all_of


class ImageBlobs:
    """Fetches what one platform of an image needs, and reads its config from the store."""

    def __init__(self, downloads: Downloads, store: BlobStore) -> None:
        self._downloads = downloads
        self._store = store

    async def fetch(self, resolved: ResolvedImage) -> ImageConfig | None:
        """The config first: it is small, and it decides whether the layers are of any use.
        Then every blob at once; the first to fail stops the others waiting."""
        config = await self.config(resolved) if resolved.is_image else None
        reference = resolved.reference
        await all_of(self._downloads.fetch(reference, blob) for blob in resolved.blobs)
        return config

    async def require_platform(self, item: ResolvedImage, wanted: tuple[Platform, ...]) -> None:
        """Docker's rule for an image that is no index: its config must name a platform that
        was asked for, or the image would reach hosts that cannot run it. Only the (small)
        config is downloaded to tell."""
        config = await self.config(item)
        if not config.architecture:
            return  # the config names no platform to hold against the request
        if all(platform.match_rank(config.platform) is None for platform in wanted):
            shown = str(config.platform.normalized())
            raise PlatformNotFoundError.only(
                str(item.reference), shown, [str(platform) for platform in wanted]
            )

    async def config(self, resolved: ResolvedImage) -> ImageConfig:
        """Download, read and check the config against the manifest: docker load refuses an
        image whose layer count differs from ``rootfs.diff_ids``."""
        _check_config_size(resolved)
        await self._downloads.fetch(resolved.reference, resolved.content.config)
        what = f"config of {resolved.reference}"
        raw = await self._store.read_small(resolved.content.config.digest, MAX_MANIFEST_BYTES)
        if raw is None:
            raise ContentError(f"{what}: not in the store, or larger than a config may be")
        config = parse_config(raw, what)
        if len(config.diff_ids) != len(resolved.content.layers):
            raise ContentError(
                f"{what}: {len(config.diff_ids)} diff_ids for {len(resolved.content.layers)} layers"
            )
        return config


def _check_config_size(resolved: ResolvedImage) -> None:
    """Refuse an oversized config before downloading it: it is read into memory, and no real
    config comes near the manifest cap (containers/image applies the same limit)."""
    size = resolved.content.config.size
    if size > MAX_MANIFEST_BYTES:
        raise ContentError(f"config of {resolved.reference}: {size} bytes is too large")
