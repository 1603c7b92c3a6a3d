"""What travels with an image besides itself: its signatures, SBOMs and attestations, and the
check of its cosign signature against ``--verify-key``.

Referrers are found for every manifest of the image that is carried (the index and each
platform manifest pulled) by the registry client's discovery, which fetches their manifests;
their blobs come through the run's downloads like any image's, so a blob is fetched once
whoever needs it. Only outputs that hold many entries under names carry them (bundles and
layouts); a per-image archive does not (see the README for the loader that refuses one).

The signature check runs before any layer is downloaded: an image whose signature does not
verify is never fetched. Imports ``registry``, ``downloads``, ``output`` and the
value modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bulkpull.digest import Digest
from bulkpull.discovery import Found, Referrer
from bulkpull.engine.downloads import Downloads
from bulkpull.errors import ContentError, NotFoundError
from bulkpull.manifest import Descriptor, ImageIndex, ImageManifest, parse_manifest
from bulkpull.output import ReferrerContent
from bulkpull.reference import Reference
from bulkpull.referrers import CosignKind, ReferrerFilter, cosign_tag, referrer_kind
from bulkpull.registry import RegistryClient
from bulkpull.report import CarriedReferrer, SkippedReferrer
from bulkpull.resolved import FetchedManifest, ResolvedImage
from bulkpull.signatures import (
    MAX_PAYLOAD_BYTES,
    PublicKey,
    SignatureCheck,
    check_signatures,
    payloads_to_fetch,
)
from bulkpull.tasks import all_of


@dataclass(frozen=True, slots=True)
class Companions:
    """The referrers found for one image: each with the manifests and blobs it carries, the
    listed ones that are not carried and why, and the signature check, if one was asked for."""

    carried: tuple[tuple[Referrer, tuple[FetchedManifest, ...], tuple[Descriptor, ...]], ...] = ()
    skipped: tuple[SkippedReferrer, ...] = ()
    signature: SignatureCheck | None = None

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        found = {blob.digest: blob for _, _, blobs in self.carried for blob in blobs}
        return tuple(found.values())

    @property
    def manifests(self) -> dict[Digest, bytes]:
        """Every manifest the referrers carry (theirs, and an index's children), by digest."""
        found = {referrer.digest: referrer.raw for referrer, _, _ in self.carried}
        for _, children, _ in self.carried:
            found.update((child.digest, child.raw) for child in children)
        return found

    @property
    def contents(self) -> tuple[ReferrerContent, ...]:
        """The referrers as an output writes them."""
        return tuple(
            ReferrerContent(
                referrer.entry.media_type,
                referrer.digest,
                referrer.entry.size,
                tuple(dict.fromkeys(m.digest for m in manifests))
                + tuple(dict.fromkeys(b.digest for b in blobs)),
                referrer.entry.artifact_type,
                referrer.entry.annotations,
                referrer.tag,
            )
            for referrer, manifests, blobs in self.carried
        )

    def records(self) -> tuple[CarriedReferrer, ...]:
        """The referrers as the report lists them."""
        return tuple(
            CarriedReferrer(
                referrer.subject,
                referrer.digest,
                referrer_kind(referrer.manifest, referrer.entry.artifact_type),
                referrer.entry.size + sum(m.size for m in manifests) + sum(b.size for b in blobs),
                referrer.source.value,
                referrer.tag,
            )
            for referrer, manifests, blobs in self.carried
        )


class ImageReferrers:
    """Finds, fetches and checks what refers to the images of a run."""

    def __init__(
        self,
        registry: RegistryClient,
        downloads: Downloads,
        *,
        carry: bool,
        types: frozenset[str],
        key: PublicKey | None,
    ) -> None:
        self._registry = registry
        self._downloads = downloads
        self._carry = carry
        self._keep = ReferrerFilter(types)
        self._key = key

    async def find(self, reference: Reference, resolved: Sequence[ResolvedImage]) -> Companions:
        """The referrers of the image's manifests, with their manifests fetched; and, with a
        key, the verdict on its signature, raised as :class:`SignatureError` unless it passes.
        """
        found = Found()
        if self._carry:
            found = await self._registry.referrers(reference, _subjects(resolved), self._keep)
        signature = None
        if self._key is not None:
            signed = (resolved[0].index or resolved[0].manifest).digest
            signature = await self._check(reference, signed, found, self._key)
            signature.require(str(reference))
        carried = await all_of(self._with_children(reference, item) for item in found.referrers)
        skipped = tuple(
            SkippedReferrer(item.subject, item.entry.digest, item.reason) for item in found.skipped
        )
        return Companions(tuple(carried), skipped, signature)

    async def _with_children(
        self, reference: Reference, referrer: Referrer
    ) -> tuple[Referrer, tuple[FetchedManifest, ...], tuple[Descriptor, ...]]:
        """A referrer with the manifests (an index's) and blobs it names."""
        if isinstance(referrer.manifest, ImageManifest):
            return referrer, (), _blobs_of(referrer.manifest)
        children = await all_of(
            self._registry.fetch_manifest(reference, str(child.digest), expected=child)
            for child in referrer.manifest.manifests
        )
        blobs: list[Descriptor] = []
        for child in children:
            what = f"{reference}: referrer {referrer.digest} -> {child.digest}"
            parsed = parse_manifest(child.raw, child.media_type, what)
            if isinstance(parsed, ImageIndex):
                raise ContentError(f"{what}: an index in an index referrer is not carried")
            blobs += _blobs_of(parsed)
        return referrer, tuple(children), tuple(blobs)

    async def _check(
        self, reference: Reference, image: Digest, found: Found, key: PublicKey
    ) -> SignatureCheck:
        """Whether a cosign signature of ``image`` verifies with ``key``; its payloads are
        fetched through the run's downloads (they are blobs like any other)."""
        tag = cosign_tag(image, CosignKind.SIGNATURE)
        known = next((r.raw for r in found.referrers if r.tag == tag), None)
        manifest = known if known is not None else await self._signature(reference, tag)
        payloads: dict[Digest, bytes] = {}
        if manifest is not None:
            for layer in payloads_to_fetch(manifest, image):
                if layer.size <= MAX_PAYLOAD_BYTES:  # a larger one is no payload cosign wrote
                    payloads[layer.digest] = await self._downloads.small(reference, layer)
        return check_signatures(image, manifest, payloads, key)

    async def _signature(self, reference: Reference, tag: str) -> bytes | None:
        try:
            return (await self._registry.fetch_manifest(reference, tag)).raw
        except NotFoundError:
            return None


def _subjects(resolved: Sequence[ResolvedImage]) -> list[Digest]:
    """The manifests whose referrers travel with the image: the index, if there is one, and
    every platform manifest pulled from it."""
    found = [item.index.digest for item in resolved[:1] if item.index is not None]
    found += [item.manifest.digest for item in resolved]
    return list(dict.fromkeys(found))


def _blobs_of(manifest: ImageManifest) -> tuple[Descriptor, ...]:
    """A referrer's config and layers; a foreign layer stays where its ``urls`` say."""
    return (manifest.config, *(layer for layer in manifest.layers if not layer.urls))
