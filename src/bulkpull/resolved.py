"""Images resolved to what a pull downloads: the exact manifest bytes, and the image they name.

The registry client makes these; the pull, archive entries and outputs read them. They are values
of their own so that the stages beside the registry never need to know it. Imports only the
value modules ``digest``, ``manifest``, ``platform`` and ``reference``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bulkpull.digest import Digest
from bulkpull.manifest import IMAGE_CONFIG_TYPES, Descriptor, ImageManifest
from bulkpull.platform import Platform
from bulkpull.reference import Reference


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest or index exactly as the registry sent it, with its verified digest.

    ``media_type`` is the ``Content-Type`` it came with until the registry client has parsed
    it; from then on it is the type parsing decided (a registry may send a generic header, and
    a manifest read from disk has none).
    """

    raw: bytes
    media_type: str
    digest: Digest

    @property
    def size(self) -> int:
        return len(self.raw)


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """What to download for one reference: the chosen manifest and where it came from.

    ``platform`` is the index entry's platform when the reference named an index; for a plain
    manifest it is only known once the config is read. ``attestation`` marks an index entry
    that is not a runnable image (BuildKit's attestation manifests), pulled only under "all".
    ``wanted`` is the platform asked for that picked the entry (the first, when several picked
    it): archives are named after what was asked, which the list check can know before
    anything is resolved.
    """

    reference: Reference
    manifest: FetchedManifest
    content: ImageManifest
    index: FetchedManifest | None = None
    platform: Platform | None = None
    attestation: bool = False
    wanted: Platform | None = None

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config first, then layers in manifest order: the order archives are written in."""
        return (self.content.config, *self.content.layers)

    @property
    def size(self) -> int:
        return self.manifest.size + sum(blob.size for blob in self.blobs)

    @property
    def is_image(self) -> bool:
        """Whether loaders run this as an image, so its config must satisfy them: a manifest
        of its own, or an index entry with an image config that is no attestation."""
        if self.attestation:
            return False
        return self.index is None or self.content.config.media_type in IMAGE_CONFIG_TYPES
