"""What an archive or a layout holds, as values: named images, the blobs each needs, and the
``index.json`` and ``manifest.json`` documents that point at them. Pure: no I/O. Imports
``digest``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from bulkpull.digest import Digest

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

# A delta's record (``delta``), beside index.json.
DELTA_MEMBER = "bulkpull-delta.json"


OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


# containerd and Docker's containerd store name images after this annotation...
CONTAINERD_NAME = "io.containerd.image.name"


# ...and skopeo's oci-archive:FILE:REF and podman after this one.
OCI_REF_NAME = "org.opencontainers.image.ref.name"


# The image a carried referrer travels with (its io.containerd.image.name), on the referrer's
# index.json entry: what tells such an entry from an image's, and which repository a push puts
# it in. Docker marks its attestation entries the same way (vnd.docker.reference.*).
REFERRER_OF = "vnd.bulkpull.referrer.of"


# The tag cosign keeps a referrer under (sha256-<hex>.sig), so that a push can recreate it. Not
# org.opencontainers.image.ref.name: ctr images import makes an image of every entry named so,
# and fails to unpack a signature's layers.
REFERRER_TAG = "vnd.bulkpull.referrer.tag"


@dataclass(frozen=True, slots=True)
class ReferrerContent:
    """A signature, SBOM or attestation carried with an image: its manifest and what that
    names (config and layers; an index's manifests and theirs), all in the store.

    ``tag`` is the tag cosign keeps it under, "" for an OCI referrer, which its ``subject``
    links to the image. ``artifact_type`` and ``annotations`` are as a referrers list shows
    them.
    """

    media_type: str
    digest: Digest
    size: int
    blobs: tuple[Digest, ...]
    artifact_type: str = ""
    annotations: tuple[tuple[str, str], ...] = ()
    tag: str = ""

    def descriptor(self, image: str) -> dict[str, object]:
        """The ``index.json`` entry: without a name (``io.containerd.image.name`` or ref
        name), so that no loader takes it for an image."""
        annotations = dict(self.annotations)
        annotations[REFERRER_OF] = image
        if self.tag:
            annotations[REFERRER_TAG] = self.tag
        found: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            found["artifactType"] = self.artifact_type
        found["annotations"] = annotations
        return found


@dataclass(frozen=True, slots=True)
class ExpectedBlob:
    """A blob an image needs that a delta leaves out: the far side already holds it, in the
    images named ``holders`` (those of ``--have``)."""

    digest: Digest
    size: int
    holders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageContent:
    """One platform's image: the manifest and the blobs it names, config first."""

    manifest: Digest
    config: Digest
    layers: tuple[Digest, ...]


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One named image to put in an archive; its blobs must already be in the store.

    ``digest``/``media_type``/``size`` describe what the name points at: a manifest, or an
    index over several ``contents``. ``name`` is the full normalized reference
    (``docker.io/library/alpine:3.19``), which every loader accepts; ``ref_name`` is the OCI
    ref name (the tag in a single-image archive, the full name where tags would collide).
    ``docker load`` sees only the first of ``contents``: it can tag one image per name.
    ``source`` is the registry's index when the name points at something else (one platform's
    manifest, or the index narrowed): carried as a blob nothing refers to, so that the far
    side can check the entry against the index a lock file pins. ``expected``: the configs and
    layers a delta leaves out, since the far side holds them already.
    """

    name: str
    ref_name: str
    media_type: str
    digest: Digest
    size: int
    contents: tuple[ImageContent, ...]
    source: Digest | None = None
    referrers: tuple[ReferrerContent, ...] = ()
    expected: tuple[ExpectedBlob, ...] = ()

    @property
    def blobs(self) -> tuple[Digest, ...]:
        """What the output carries of the image: all it names but what a delta leaves out."""
        found = [self.digest] if self.source is None else [self.digest, self.source]
        for content in self.contents:
            found += [content.manifest, content.config, *content.layers]
        for referrer in self.referrers:
            found += [referrer.digest, *referrer.blobs]
        left_out = {blob.digest for blob in self.expected}
        return tuple(digest for digest in dict.fromkeys(found) if digest not in left_out)

    @property
    def held(self) -> dict[str, Digest]:
        """What an archive holding this image shows of it (see ``verify.archive_digests``):
        its name, and a key per referrer carried with it."""
        found = {self.name: self.digest}
        found |= {referrer_key(self.name, r.digest): r.digest for r in self.referrers}
        return found

    @property
    def referrer_descriptors(self) -> list[dict[str, object]]:
        """The ``index.json`` entries of the referrers carried with the image."""
        return [referrer.descriptor(self.name) for referrer in self.referrers]

    @property
    def descriptor(self) -> dict[str, object]:
        """The ``index.json`` entry: named, and without ``platform``.

        A platform on a top-level entry makes containerd silently skip it on other hosts.
        """
        return {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
            "annotations": {CONTAINERD_NAME: self.name, OCI_REF_NAME: self.ref_name},
        }


def referrer_key(image: str, digest: Digest) -> str:
    """How a referrer of ``image`` is named among what an archive holds (never an image name:
    those have no spaces)."""
    return f"{image} referrer {digest}"


def blob_member(digest: Digest) -> str:
    """Where a blob sits in the tar; both the OCI layout and manifest.json use this path."""
    return f"blobs/sha256/{digest.hex}"


def index_document(images: Sequence[ArchiveImage]) -> dict[str, object]:
    """The OCI ``index.json``: one descriptor per named image, then its referrers'."""
    referrers = [entry for image in images for entry in image.referrer_descriptors]
    return index_of([image.descriptor for image in images] + referrers)


def index_of(descriptors: Sequence[object]) -> dict[str, object]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX_MEDIA_TYPE, "manifests": list(descriptors)}


def docker_manifest(images: Sequence[ArchiveImage]) -> list[dict[str, object]]:
    """The docker-archive ``manifest.json``: one item per name, config and layers in order."""
    return [
        {
            "Config": blob_member(image.contents[0].config),
            "RepoTags": [image.name],
            "Layers": [blob_member(layer) for layer in image.contents[0].layers],
        }
        for image in images
    ]


def json_bytes(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
