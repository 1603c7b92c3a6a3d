"""An image's blobs as its outputs need them: its config fetched into memory, read and held
against the manifest and the platforms asked for; what fills its archives (``ImageSupply``);
and its blobs put into a layout's store. Imports ``errors``, ``manifest``, ``platform``,
``resolved``, ``store``, ``output``, ``entries`` and ``downloads``.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

from bulkpull.digest import Digest
from bulkpull.engine.downloads import Downloads
from bulkpull.engine.entries import Entry
from bulkpull.errors import ContentError, PlatformNotFoundError
from bulkpull.manifest import MAX_MANIFEST_BYTES, Descriptor, ImageConfig, parse_config
from bulkpull.output import ArchiveFile, Slot
from bulkpull.platform import Platform
from bulkpull.reference import Reference
from bulkpull.resolved import ResolvedImage
from bulkpull.store import BlobStore
from bulkpull.tasks import all_of


@dataclass(frozen=True, slots=True)
class ImageSupply:
    """What fills an image's archive: its manifests and configs from memory, every other blob
    through the run's downloads (``output.BlobSupply``)."""

    downloads: Downloads
    blobs: Mapping[Digest, tuple[Reference, Descriptor]]
    inline: Mapping[Digest, bytes]

    @property
    def sizes(self) -> Mapping[Digest, int]:
        return {digest: blob.size for digest, (_, blob) in self.blobs.items()}

    async def fill(self, archive: ArchiveFile, slot: Slot) -> None:
        reference, blob = self.blobs[slot.digest]
        await self.downloads.fill(reference, blob, archive, slot)

    def carrying(
        self, reference: Reference, manifests: Mapping[Digest, bytes], blobs: Iterable[Descriptor]
    ) -> ImageSupply:
        """This supply with what the image's referrers carry too: their manifests in hand,
        their blobs fetched from ``reference``'s repository."""
        more = {blob.digest: (reference, blob) for blob in blobs if blob.digest not in manifests}
        return ImageSupply(self.downloads, {**more, **self.blobs}, {**manifests, **self.inline})


class ImageBlobs:
    """Fetches what the platforms of an image need, configs first."""

    def __init__(self, downloads: Downloads) -> None:
        self._downloads = downloads

    async def configs(
        self, resolved: list[ResolvedImage], skip: Container[Digest] = ()
    ) -> list[tuple[ImageConfig, bytes] | None]:
        """Each platform's config, read and checked (None for an artifact that is no image,
        and for a config in ``skip``, which a delta leaves out): they are small, and they
        decide whether the layers are of any use."""
        return await all_of(self._config_of(item, skip) for item in resolved)

    async def _config_of(
        self, resolved: ResolvedImage, skip: Container[Digest]
    ) -> tuple[ImageConfig, bytes] | None:
        if not resolved.is_image or resolved.content.config.digest in skip:
            return None
        return await self.config(resolved)

    def supply(
        self,
        resolved: list[ResolvedImage],
        entry: Entry,
        configs: list[tuple[ImageConfig, bytes] | None],
    ) -> ImageSupply:
        inline = {manifest.digest: manifest.raw for manifest in entry.manifests}
        for item, config in zip(resolved, configs, strict=True):
            if config is not None:
                inline[item.content.config.digest] = config[1]
        left_out = {blob.digest for blob in entry.image.expected}
        blobs = {
            blob.digest: (item.reference, blob)
            for item in resolved
            for blob in item.blobs
            if blob.digest not in inline and blob.digest not in left_out
        }
        return ImageSupply(self._downloads, blobs, inline)

    async def store_in(self, store: BlobStore, supply: ImageSupply) -> None:
        """Every blob of ``supply`` in ``store`` (an OCI layout's ``blobs``)."""
        for digest, data in supply.inline.items():
            await store.put_bytes(digest, data)
        await all_of(
            self._downloads.store_in(store, reference, blob)
            for reference, blob in supply.blobs.values()
        )

    async def require_platform(
        self, item: ResolvedImage, wanted: tuple[Platform, ...], skip: Container[Digest] = ()
    ) -> None:
        """Docker's rule for an image that is no index: its config must name a platform that
        was asked for, or the image would reach hosts that cannot run it. Only the (small)
        config is downloaded to tell; not one in ``skip``, which a delta leaves out (its
        image was checked when it was pulled)."""
        if item.content.config.digest in skip:
            return
        config, _ = await self.config(item)
        if not config.architecture:
            return  # the config names no platform to hold against the request
        if all(platform.match_rank(config.platform) is None for platform in wanted):
            shown = str(config.platform.normalized())
            raise PlatformNotFoundError.only(
                str(item.reference), shown, [str(platform) for platform in wanted]
            )

    async def config(self, resolved: ResolvedImage) -> tuple[ImageConfig, bytes]:
        """Download, read and check the config against the manifest: docker load refuses an
        image whose layer count differs from ``rootfs.diff_ids``."""
        _check_config_size(resolved)
        raw = await self._downloads.small(resolved.reference, resolved.content.config)
        what = f"config of {resolved.reference}"
        config = parse_config(raw, what)
        if len(config.diff_ids) != len(resolved.content.layers):
            raise ContentError(
                f"{what}: {len(config.diff_ids)} diff_ids for {len(resolved.content.layers)} layers"
            )
        return config, raw


def _check_config_size(resolved: ResolvedImage) -> None:
    """Refuse an oversized config before downloading it: it is read into memory, and no real
    config comes near the manifest cap (containers/image applies the same limit)."""
    size = resolved.content.config.size
    if size > MAX_MANIFEST_BYTES:
        raise ContentError(f"config of {resolved.reference}: {size} bytes is too large")
