"""An image in the fake registry with what cosign and oras attach to it: a cosign signature and
an SBOM attestation under cosign's tags, and an oras SBOM with a ``subject``, listed by the
Referrers API or (with ``api=False``) in the referrers tag schema index, as oras keeps it for
a registry without the API; and the empty target a push or a copy takes it to, with what that
target then serves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import bulkpull
from bulkpull import Destination, PullOptions, PushOptions, RetryPolicy
from support import cosignfactory as cf
from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Start
from support.fakeupload import FakeUploads

REPO = "team/app"


@dataclass(frozen=True)
class Signed:
    """An image in the fake registry with a cosign signature, an SBOM attestation and an
    oras SBOM attached, and the key that signed them."""

    host: str
    registry: FakeRegistry
    image: f.Image
    signature: f.Image
    attestation: f.Image
    sbom: f.Image
    key: cf.KeyPair

    @property
    def reference(self) -> str:
        return f"{self.host}/{REPO}:v1"

    @property
    def referrers(self) -> tuple[f.Image, ...]:
        return (self.signature, self.attestation, self.sbom)


def cosign_tag(digest: str, kind: str) -> str:
    return f"sha256-{digest.removeprefix('sha256:')}.{kind}"


async def signed_image(
    start: Start, *, api: bool = True, signature: f.Image | None = None
) -> Signed:
    registry = FakeRegistry()
    registry.referrers_api = api
    key = cf.ecdsa_key()
    image = f.make_image([f.random_layer(20_000)], label="signed")
    signature = signature or cf.make_signature(image.digest, key)
    attestation = cf.make_sbom_attestation(image.digest, key)
    sbom = cf.make_oras_sbom(image)
    registry.add(REPO, "v1", image)
    registry.add(REPO, cosign_tag(image.digest, "sig"), signature)
    registry.add(REPO, cosign_tag(image.digest, "att"), attestation)
    registry.add(REPO, sbom.digest, sbom)
    if not api:
        listing = {
            "schemaVersion": 2,
            "mediaType": f.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": sbom.media_type,
                    "digest": sbom.digest,
                    "size": len(sbom.manifest),
                    "artifactType": cf.SPDX_JSON,
                }
            ],
        }
        raw = json.dumps(listing).encode()
        registry.put_manifest(REPO, f"sha256-{image.digest[7:]}", raw, f.OCI_INDEX)
    host = await start(registry.app())
    return Signed(host, registry, image, signature, attestation, sbom, key)


TARGET_REPO = f"mirror/{REPO}"


def push_options(tmp_path: Path, **fields: object) -> PushOptions:
    values: dict[str, object] = {
        "plain_http": True,
        "retry": RetryPolicy(retries=0, delay=0.0),
        "state_dir": tmp_path / "state",
    }
    return PushOptions(**{**values, **fields})  # type: ignore[arg-type]


async def signed_trip(
    start: Start, options: PullOptions, tmp_path: Path, *, api: bool, layout: bool = False
) -> tuple[Signed, Path, FakeUploads, str]:
    """A signed image in one fake registry, pulled into a bundle (or a layout), and an empty
    target; both registries with the Referrers API or both without."""
    signed = await signed_image(start, api=api)
    if layout:
        to = Destination.oci_layout(tmp_path / "layout")
    else:
        to = Destination.bundle(tmp_path / "offline.tar")
    assert (await bulkpull.pull_images([signed.reference], to, options)).ok
    uploads, host = await target(start, tmp_path, api=api)
    return signed, to.path, uploads, host


async def target(start: Start, tmp_path: Path, *, api: bool) -> tuple[FakeUploads, str]:
    uploads = FakeUploads(FakeRegistry(), tmp_path / "registry")
    uploads.registry.referrers_api = api
    return uploads, await start(uploads.app())


def tag_schema(signed: Signed) -> str:
    return "sha256-" + signed.image.digest.removeprefix("sha256:")


def served(uploads: FakeUploads, reference: str) -> bytes | None:
    found = uploads.registry.manifests.get((TARGET_REPO, reference))
    return found[0] if found else None


def listed(uploads: FakeUploads, signed: Signed) -> list[dict[str, object]]:
    raw = served(uploads, tag_schema(signed))
    assert raw is not None, "no referrers tag schema index"
    return list(json.loads(raw)["manifests"])
