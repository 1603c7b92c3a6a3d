"""Build real test images in memory: gzip layers, configs with diff_ids, manifests and indexes.

The counterpart of go-containerregistry's ``random.Image``: every image is valid content a real
registry accepts and docker loads, so the same images serve the fake registry, the real registry
tests and the benchmarks. ``write_oci_layout`` puts them where ``skopeo copy oci:DIR:TAG`` reads.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"
ATTESTATION_ANNOTATIONS = ("vnd.docker.reference.type", "vnd.docker.reference.digest")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Layer:
    """A gzip-compressed layer and the digest of its uncompressed tar (the diff_id)."""

    compressed: bytes
    diff_id: str

    @property
    def digest(self) -> str:
        return sha256(self.compressed)


def make_layer(files: dict[str, bytes], *, mode: int = 0o644) -> Layer:
    """A layer holding ``files`` (path → content); deterministic for the same input."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            tar.addfile(info, io.BytesIO(content))
    plain = raw.getvalue()
    return Layer(gzip.compress(plain, compresslevel=1, mtime=0), sha256(plain))


def random_layer(size: int, *, name: str = "data.bin") -> Layer:
    """A layer holding one file of ``size`` random (incompressible) bytes."""
    return make_layer({name: os.urandom(size)})


@dataclass(frozen=True)
class Image:
    """One single-platform image: manifest bytes plus every blob it refers to."""

    manifest: bytes
    media_type: str
    config: bytes
    layers: tuple[Layer, ...]
    platform: tuple[str, str, str]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def blobs(self) -> dict[str, bytes]:
        found = {self.config_digest: self.config}
        found.update({layer.digest: layer.compressed for layer in self.layers})
        return found


def make_image(
    layers: list[Layer],
    *,
    os_name: str = "linux",
    arch: str = "amd64",
    variant: str = "",
    docker_types: bool = False,
    cmd: list[str] | None = None,
    label: str = "",
) -> Image:
    """An image over ``layers``; ``label`` makes otherwise equal configs differ."""
    config: dict[str, object] = {
        "architecture": arch,
        "os": os_name,
        "config": {"Cmd": cmd or ["/bin/sh"], "Labels": {"test.label": label}},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }
    if variant:
        config["variant"] = variant
    config_bytes = _canonical(config)
    layer_type = DOCKER_LAYER_GZIP if docker_types else OCI_LAYER_GZIP
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker_types else OCI_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG if docker_types else OCI_CONFIG,
            "digest": sha256(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": layer_type, "digest": layer.digest, "size": len(layer.compressed)}
            for layer in layers
        ],
    }
    media_type = str(manifest["mediaType"])
    return Image(
        _canonical(manifest), media_type, config_bytes, tuple(layers), (os_name, arch, variant)
    )


@dataclass(frozen=True)
class Index:
    """A multi-platform index (or Docker manifest list) over single-platform images."""

    manifest: bytes
    media_type: str
    images: tuple[Image, ...]
    attestations: tuple[Image, ...] = ()

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for image in self.images + self.attestations:
            found.update(image.blobs)
        return found

    @property
    def children(self) -> tuple[Image, ...]:
        return self.images + self.attestations


def make_attestation(subject: Image) -> Image:
    """An attestation manifest for ``subject`` as BuildKit writes one: OCI types, platform
    ``unknown/unknown``, an in-toto statement as its (uncompressed JSON) layer, and a config
    whose diff_ids are that layer's digest."""
    statement = _canonical(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "image", "digest": {"sha256": subject.digest[7:]}}],
            "predicate": {"builder": {"id": "bulkpull-tests"}},
        }
    )
    layer = Layer(statement, sha256(statement))
    config = _canonical(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        }
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {
                "mediaType": IN_TOTO,
                "digest": layer.digest,
                "size": len(statement),
                "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
            }
        ],
    }
    return Image(_canonical(manifest), OCI_MANIFEST, config, (layer,), ("unknown", "unknown", ""))


def make_index(
    images: list[Image], *, docker_types: bool = False, attestation: bool = False
) -> Index:
    """An index over ``images``; ``attestation`` adds BuildKit's attestation manifest for each
    image after the images (``unknown/unknown``, annotated with the image it attests)."""
    entries: list[dict[str, object]] = []
    attestations = [make_attestation(image) for image in images] if attestation else []
    for image in images:
        os_name, arch, variant = image.platform
        platform = {"os": os_name, "architecture": arch} | ({"variant": variant} if variant else {})
        entries.append(
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
                "platform": platform,
            }
        )
    for image, statement in zip(images, attestations, strict=False):
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": statement.digest,
                "size": len(statement.manifest),
                "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": dict(
                    zip(
                        ATTESTATION_ANNOTATIONS, ("attestation-manifest", image.digest), strict=True
                    )
                ),
            }
        )
    media_type = DOCKER_LIST if docker_types else OCI_INDEX
    index = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    return Index(_canonical(index), media_type, tuple(images), tuple(attestations))


def write_oci_layout(directory: Path, tagged: dict[str, Image | Index]) -> None:
    """Write an OCI image layout of ``tagged`` (tag → image) for ``skopeo copy oci:DIR:TAG``."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> None:
        (blobs / sha256(data).removeprefix("sha256:")).write_bytes(data)

    entries = []
    for tag, item in sorted(tagged.items()):
        images = item.children if isinstance(item, Index) else (item,)
        for image in images:
            put(image.manifest)
            for blob in image.blobs.values():
                put(blob)
        put(item.manifest)
        entries.append(
            {
                "mediaType": item.media_type,
                "digest": item.digest,
                "size": len(item.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    (directory / "index.json").write_bytes(_canonical(index))
