"""Benchmark images written straight into an OCI image layout, streamed.

A layer is one tar holding one file of random (incompressible) bytes. It is generated chunk by
chunk and hashed while it is written, so a layer of several GiB never sits in memory: the peak is
one chunk. Layers are either gzip-compressed (level 1, the usual media type) or plain tars with
the OCI media type for uncompressed layers, which is much faster to produce for very large sizes.

``skopeo copy --preserve-digests oci:LAYOUT:TAG docker://…`` pushes the result unchanged.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import platform
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

CHUNK_BYTES = 4 * 1024 * 1024
_TAR_BLOCK = 512
_MACHINE_TO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class LayerFormat(enum.Enum):
    """How a layer's tar is stored in the registry."""

    GZIP = "gzip"
    TAR = "tar"

    @property
    def media_type(self) -> str:
        if self is LayerFormat.GZIP:
            return "application/vnd.oci.image.layer.v1.tar+gzip"
        return "application/vnd.oci.image.layer.v1.tar"


def host_arch() -> str:
    """The OCI architecture of this machine, so that a default pull picks the image."""
    machine = platform.machine().lower()
    return _MACHINE_TO_ARCH.get(machine, machine)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Blob:
    """A blob in the layout, as a manifest refers to it."""

    digest: str
    size: int
    media_type: str

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class LayerBlob(Blob):
    """A layer blob and the digest of its uncompressed tar (its diff_id)."""

    diff_id: str


@dataclass(frozen=True)
class BuiltImage:
    """A single-platform image in the layout, under ``tag``."""

    tag: str
    manifest: Blob
    config: Blob
    layers: tuple[LayerBlob, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """The config and the layers: what a pull downloads besides the manifest."""
        return (self.config, *self.layers)

    @property
    def pulled_bytes(self) -> int:
        """Bytes of all blobs of this image (shared ones counted again)."""
        return sum(blob.size for blob in self.blobs)


def _tar_of_one_file(name: str, size: int) -> Iterator[bytes]:
    """A tar archive holding one regular file of ``size`` random bytes, in chunks."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    remaining = size
    while remaining > 0:
        count = min(CHUNK_BYTES, remaining)
        yield os.urandom(count)
        remaining -= count
    # Pad the file to a whole block, then the two zero blocks that end an archive.
    yield bytes((-size) % _TAR_BLOCK + 2 * _TAR_BLOCK)


class OciLayout:
    """An OCI image layout on disk that images are added to one by one.

    ``finish`` writes ``index.json``; only then does ``skopeo copy oci:DIR:TAG`` see the tags.
    """

    def __init__(self, root: Path, *, full_names: bool = False) -> None:
        self.root = root
        self.full_names = full_names
        """Tags are whole normalized references (``docker.io/repo:tag``), also given as
        containerd's image name, as in a layout that a pull wrote."""
        self._blobs = root / "blobs" / "sha256"
        self._blobs.mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._tagged: list[BuiltImage] = []
        self._counter = 0

    def _temporary(self) -> Path:
        self._counter += 1
        return self._blobs / f".incoming-{self._counter}"

    def _put_bytes(self, data: bytes, media_type: str) -> Blob:
        digest = _sha256(data)
        (self._blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return Blob(digest, len(data), media_type)

    def add_random_layer(
        self, size: int, *, layer_format: LayerFormat, name: str = "data.bin"
    ) -> LayerBlob:
        """Add a layer holding the file ``name`` with ``size`` random bytes, streamed to disk."""
        plain_hash = hashlib.sha256()
        stored_hash = hashlib.sha256()
        compressor = (
            zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip wrapper, mtime 0
            if layer_format is LayerFormat.GZIP
            else None
        )
        temporary = self._temporary()
        stored = 0
        with temporary.open("wb") as out:

            def emit(data: bytes) -> None:
                nonlocal stored
                if data:
                    stored_hash.update(data)
                    out.write(data)
                    stored += len(data)

            for chunk in _tar_of_one_file(name, size):
                plain_hash.update(chunk)
                emit(compressor.compress(chunk) if compressor is not None else chunk)
            if compressor is not None:
                emit(compressor.flush())
        digest = "sha256:" + stored_hash.hexdigest()
        temporary.replace(self._blobs / digest.removeprefix("sha256:"))
        return LayerBlob(
            digest, stored, layer_format.media_type, "sha256:" + plain_hash.hexdigest()
        )

    def add_image(self, tag: str, layers: list[LayerBlob], *, label: str) -> BuiltImage:
        """Add an image over ``layers`` (already in the layout) and tag it ``tag``.

        ``label`` goes into the config, so that images over the same layers still differ.
        """
        config_document = {
            "architecture": host_arch(),
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Labels": {"bulkpull.bench": label}},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created_by": f"benchmark layer {i}"} for i in range(len(layers))],
        }
        config = self._put_bytes(_canonical(config_document), OCI_CONFIG)
        manifest_document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor() for layer in layers],
        }
        manifest = self._put_bytes(_canonical(manifest_document), OCI_MANIFEST)
        image = BuiltImage(tag, manifest, config, tuple(layers))
        self._tagged.append(image)
        return image

    def finish(self) -> None:
        """Write ``index.json`` naming every image added so far by its tag."""
        names = ["org.opencontainers.image.ref.name"]
        if self.full_names:
            names.append("io.containerd.image.name")
        entries = [
            {**image.manifest.descriptor(), "annotations": dict.fromkeys(names, image.tag)}
            for image in self._tagged
        ]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        (self.root / "index.json").write_bytes(_canonical(index))
