"""The images the real-component tests push to a registry, and the push itself.

The set covers what a pull meets in practice: images sharing base layers, OCI and Docker media
types, a runnable image (static busybox), and a multi-platform index. Content is built with
``imagefactory``; ``skopeo copy --preserve-digests`` pushes it byte for byte, and every push is
checked by reading the manifest back.
"""

from __future__ import annotations

import gzip
import io
import platform
import struct
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from support import imagefactory
from support.imagefactory import Image, Index, Layer
from support.services import Registry, run, unavailable

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
BUSYBOX_APPLETS = ("sh", "echo", "cat", "ls", "true")
BUSYBOX_GREETING = "hello from bulkpull"

DEFAULT_PLATFORM_ARCH = "amd64"
"""The architecture the CLI picks from a multi-platform image unless told otherwise."""

_OCI_TYPES = (imagefactory.OCI_MANIFEST, imagefactory.OCI_INDEX)
_MACHINE_TO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_arch() -> str:
    """The OCI architecture name of this machine (the platform a pull picks by default)."""
    machine = platform.machine().lower()
    arch = _MACHINE_TO_ARCH.get(machine)
    if arch is None:
        unavailable(f"the test images exist for amd64 and arm64 only, not for {machine}")
    return arch


def _is_static_elf(data: bytes) -> bool:
    """True for a 64-bit little-endian ELF file without a program interpreter (PT_INTERP)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    pt_interp = 3
    return all(
        struct.unpack_from("<I", data, phoff + i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def static_busybox() -> bytes:
    """The bytes of a statically linked busybox (Debian ``busybox-static``), or skip/fail."""
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.is_file():
            data = candidate.read_bytes()
            if _is_static_elf(data):
                return data
            unavailable(f"{candidate} is not a static 64-bit ELF binary; install busybox-static")
    unavailable("busybox not found; install the Debian package busybox-static")


def busybox_layer(binary: bytes) -> Layer:
    """A layer with ``/bin/busybox`` (0755) and ``/bin/<applet>`` symlinks to it; deterministic."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directory = tarfile.TarInfo("bin")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        tar.addfile(directory)
        program = tarfile.TarInfo("bin/busybox")
        program.size = len(binary)
        program.mode = 0o755
        tar.addfile(program, io.BytesIO(binary))
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            tar.addfile(link)
    plain = raw.getvalue()
    return Layer(gzip.compress(plain, compresslevel=6, mtime=0), imagefactory.sha256(plain))


@dataclass(frozen=True)
class PushedImage:
    """One reference pushed to the registry and what a pull of it must produce."""

    reference: str
    """The reference as pushed: ``127.0.0.1:PORT/repo:tag``."""
    image: Image
    """The single-platform image a pull yields (for an index: the linux/amd64 child)."""
    index: Index | None = None
    """The index behind ``reference``, for multi-platform images."""

    @property
    def repository(self) -> str:
        """``127.0.0.1:PORT/repo``: the reference without its tag."""
        name, _, _ = self.reference.rpartition(":")
        return name

    @property
    def manifest_digest(self) -> str:
        """The digest of the manifest a pull resolves to (the platform child for an index)."""
        return self.image.digest

    @property
    def config_digest(self) -> str:
        """The config digest, which is also the image ID ``docker load`` reports."""
        return self.image.config_digest

    @property
    def layer_digests(self) -> list[str]:
        """The digests of the compressed layer blobs, in manifest order."""
        return [layer.digest for layer in self.image.layers]

    @property
    def diff_ids(self) -> list[str]:
        """The digests of the uncompressed layers, in manifest order."""
        return [layer.diff_id for layer in self.image.layers]

    @property
    def by_digest(self) -> str:
        """The reference pinned to the digest of what was pushed (the index, if any)."""
        pushed = self.index.digest if self.index is not None else self.image.digest
        return f"{self.repository}@{pushed}"


@dataclass(frozen=True)
class PushedImages:
    """The whole test set in the registry, by role."""

    registry: Registry
    shared_oci_a: PushedImage
    shared_oci_b: PushedImage
    shared_docker: PushedImage
    pinned: PushedImage
    """Meant to be pulled by digest only."""
    busybox: PushedImage
    multi: PushedImage

    @property
    def all(self) -> list[PushedImage]:
        return [
            self.shared_oci_a,
            self.shared_oci_b,
            self.shared_docker,
            self.pinned,
            self.busybox,
            self.multi,
        ]


# Where each image of the set goes in the registry, by its tag in the OCI layout.
DESTINATIONS: Final = {
    "shared-oci-a": "bp/shared-oci-a:1.0",
    "shared-oci-b": "bp/shared/oci-b:latest",
    "shared-docker": "bp/shared-docker:v2",
    "pinned": "bp/pinned:gone-soon",
    "busybox": "bp/busybox:1",
    "multi": "bp/multi:2024",
}


def build_and_push(registry: Registry, workdir: Path) -> PushedImages:
    """Build the test images, push them to ``registry`` and check the registry's digests."""
    tagged, children = _build_set()
    _push_set(registry, workdir, tagged)

    def pushed(tag: str, index: Index | None = None) -> PushedImage:
        image = tagged[tag]
        assert isinstance(image, Image)
        return PushedImage(f"{registry.host}/{DESTINATIONS[tag]}", image, index)

    multi = tagged["multi"]
    assert isinstance(multi, Index)
    return PushedImages(
        registry=registry,
        shared_oci_a=pushed("shared-oci-a"),
        shared_oci_b=pushed("shared-oci-b"),
        shared_docker=pushed("shared-docker"),
        pinned=pushed("pinned"),
        busybox=pushed("busybox"),
        multi=PushedImage(
            f"{registry.host}/{DESTINATIONS['multi']}", children[DEFAULT_PLATFORM_ARCH], multi
        ),
    )


def _build_set() -> tuple[dict[str, Image | Index], dict[str, Image]]:
    """The images by tag (layers shared among them, one Docker-typed, a runnable busybox,
    a two-platform index), and the index's children by architecture."""
    arch = host_arch()
    base = imagefactory.random_layer(256 * 1024, name="base/one.bin")
    base_two = imagefactory.random_layer(160 * 1024, name="base/two.bin")

    def top(name: str) -> Layer:
        return imagefactory.random_layer(48 * 1024, name=f"top/{name}.bin")

    children = {
        child_arch: imagefactory.make_image(
            [base, top(f"multi-{child_arch}")], arch=child_arch, label=f"multi-{child_arch}"
        )
        for child_arch in ("amd64", "arm64")
    }
    tagged: dict[str, Image | Index] = {
        "shared-oci-a": imagefactory.make_image([base, top("a")], arch=arch, label="shared-oci-a"),
        "shared-oci-b": imagefactory.make_image(
            [base, base_two, top("b")], arch=arch, label="shared-oci-b"
        ),
        "shared-docker": imagefactory.make_image(
            [base, base_two, top("c")], arch=arch, docker_types=True, label="shared-docker"
        ),
        "pinned": imagefactory.make_image([base_two, top("d")], arch=arch, label="pinned"),
        "busybox": imagefactory.make_image(
            [busybox_layer(static_busybox())],
            arch=arch,
            cmd=["/bin/busybox", "echo", BUSYBOX_GREETING],
            label="busybox",
        ),
        "multi": imagefactory.make_index(list(children.values()), attestation=False),
    }
    return tagged, children


def _push_set(registry: Registry, workdir: Path, tagged: dict[str, Image | Index]) -> None:
    """Push every image with skopeo and check the digest the registry serves."""
    # skopeo reads only OCI-typed manifests from an OCI layout; Docker-typed ones go via dir:.
    oci_tagged = {tag: item for tag, item in tagged.items() if item.media_type in _OCI_TYPES}
    layout = workdir / "layout"
    imagefactory.write_oci_layout(layout, oci_tagged)
    for tag, item in tagged.items():
        destination = f"{registry.host}/{DESTINATIONS[tag]}"
        if tag in oci_tagged:
            source = f"oci:{layout}:{tag}"
        else:
            assert isinstance(item, Image), "Docker-typed indexes are not part of the set"
            source = f"dir:{write_dir_layout(workdir / tag, item)}"
        push(source, destination, all_images=isinstance(item, Index))
        check_pushed(destination, item.digest)


def write_dir_layout(directory: Path, image: Image) -> Path:
    """Write ``image`` in the layout of skopeo's ``dir:`` transport; returns ``directory``."""
    directory.mkdir(parents=True)
    (directory / "version").write_text("Directory Transport Version: 1.1\n")
    (directory / "manifest.json").write_bytes(image.manifest)
    for digest, blob in image.blobs.items():
        (directory / digest.removeprefix("sha256:")).write_bytes(blob)
    return directory


def push(source: str, destination: str, *, all_images: bool) -> None:
    """``skopeo copy`` an image (``oci:DIR:TAG`` or ``dir:DIR``) to the registry unchanged."""
    run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--preserve-digests",
            *(["--all"] if all_images else []),
            "--dest-tls-verify=false",
            source,
            f"docker://{destination}",
        ],
        timeout=120,
    )


def check_pushed(reference: str, digest: str) -> None:
    """Fail unless the registry serves exactly the manifest whose digest is ``digest``."""
    raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"]).stdout
    served = imagefactory.sha256(raw)
    if served != digest:
        raise AssertionError(f"{reference}: registry serves {served}, pushed {digest}")


def push_over_api(registry: Registry, repository: str, tag: str, item: Image | Index) -> str:
    """Push ``item`` to ``registry`` as ``repository:tag`` through the distribution API, byte
    for byte: blobs (monolithic uploads), then child manifests by digest, then the tag.

    skopeo 1.9 cannot push a Docker manifest list that carries OCI attestation manifests from
    a directory it reads, nor an OCI 1.1 artifact, and a test must not depend on a build tool;
    returns the reference.
    """
    images = item.children if isinstance(item, Index) else (item,)
    put_blobs(registry, repository, {d: b for image in images for d, b in image.blobs.items()})
    manifests = [(image.digest, image.manifest, image.media_type) for image in images]
    if isinstance(item, Index):
        manifests.append((tag, item.manifest, item.media_type))
    else:
        manifests = [(tag, item.manifest, item.media_type)]
    for name, raw, media_type in manifests:
        put_manifest(registry, repository, name, raw, media_type)
    reference = f"{registry.host}/{repository}:{tag}"
    check_pushed(reference, item.digest)
    return reference


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def put_blobs(registry: Registry, repository: str, blobs: dict[str, bytes]) -> None:
    """Upload each blob in one request (POST, then PUT with the digest)."""
    base = f"{registry.url}/v2/{repository}"
    for digest, data in blobs.items():
        started = _OPENER.open(urllib.request.Request(f"{base}/blobs/uploads/", method="POST"))
        location = started.headers["Location"]
        upload = location if "://" in location else f"{registry.url}{location}"
        joiner = "&" if "?" in upload else "?"
        request = urllib.request.Request(
            f"{upload}{joiner}digest={digest}", data=data, method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        _OPENER.open(request).close()


def put_manifest(
    registry: Registry, repository: str, reference: str, raw: bytes, media_type: str
) -> None:
    """PUT one manifest, exactly these bytes, under a tag or its digest."""
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{reference}", data=raw, method="PUT",
        headers={"Content-Type": media_type},
    )  # fmt: skip
    _OPENER.open(request).close()
