"""Signatures, an SBOM attestation and an OCI 1.1 SBOM attached to images in a real registry,
in the shapes cosign and oras leave there.

Debian's ``docker-registry`` (distribution 2.8) has no Referrers API, so what cosign and oras
do against it is done here: the signature and the attestation go under cosign's tags
``sha256-<hex>.sig`` and ``.att``; the SBOM is pushed by digest and listed in the referrers
tag schema index under ``sha256-<hex>``, as oras keeps it for a registry without the API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from support import cosignfactory
from support.cosignfactory import KeyPair
from support.imagefactory import OCI_INDEX, Image, Index
from support.services import Registry
from support.testimages import PushedImages, push_over_api, put_blobs, put_manifest


@dataclass(frozen=True)
class Attached:
    """What refers to one image in the registry."""

    subject: str
    signature: Image
    attestation: Image
    sbom: Image

    @property
    def all(self) -> tuple[Image, ...]:
        return (self.signature, self.attestation, self.sbom)


def cosign_tag(digest: str, kind: str) -> str:
    return f"sha256-{digest.removeprefix('sha256:')}.{kind}"


def attach(
    registry: Registry,
    repository: str,
    subject: Image | Index,
    key: KeyPair,
    *,
    signature: Image | None = None,
) -> Attached:
    """Sign ``subject`` (in ``repository``) with ``key``, or push ``signature`` as its
    signature instead; attest an SPDX SBOM of it; attach an oras SBOM to it."""
    digest = subject.digest
    signature = signature or cosignfactory.make_signature(digest, key)
    attestation = cosignfactory.make_sbom_attestation(digest, key)
    sbom = cosignfactory.make_oras_sbom(subject)
    push_over_api(registry, repository, cosign_tag(digest, "sig"), signature)
    push_over_api(registry, repository, cosign_tag(digest, "att"), attestation)
    put_blobs(registry, repository, sbom.blobs)
    put_manifest(registry, repository, sbom.digest, sbom.manifest, sbom.media_type)
    listing = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": sbom.media_type,
                "digest": sbom.digest,
                "size": len(sbom.manifest),
                "annotations": json.loads(sbom.manifest)["annotations"],
                "artifactType": cosignfactory.SPDX_JSON,
            }
        ],
    }
    raw = json.dumps(listing, separators=(",", ":")).encode()
    put_manifest(registry, repository, f"sha256-{digest.removeprefix('sha256:')}", raw, OCI_INDEX)
    return Attached(digest, signature, attestation, sbom)


@dataclass(frozen=True)
class SignedImages:
    """The test images that have referrers in the registry, by reference, and the key that
    signed them."""

    key: KeyPair
    attached: dict[str, Attached]


def attach_to_test_images(images: PushedImages) -> SignedImages:
    """Referrers for the test images the offline guide carries: OCI and Docker image
    manifests, and the multi-platform index (cosign signs what the tag points at)."""
    key = cosignfactory.ecdsa_key()
    attached = {}
    for pushed in (images.shared_oci_a, images.shared_docker, images.busybox, images.multi):
        subject: Image | Index = pushed.index or pushed.image
        repository = pushed.repository.partition("/")[2]
        attached[pushed.reference] = attach(images.registry, repository, subject, key)
    return SignedImages(key, attached)
