"""The tar writer: one file that is an OCI layout and a docker archive, from local blobs only."""

from __future__ import annotations

import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bulkpull.digest import Digest
from bulkpull.output.archive import write_archive
from bulkpull.output.contents import ArchiveImage, ImageContent
from bulkpull.output.layout import update_layout

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class Store:
    """Blob files on disk, named by digest, the way the blob store keeps them."""

    root: Path

    def add(self, data: bytes) -> Digest:
        digest = Digest.of(data)
        path = self.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    def path(self, digest: Digest) -> Path:
        return self.root / "sha256" / digest.hex

    def content(
        self, config: bytes, layers: list[bytes], media_type: str = OCI_MANIFEST
    ) -> tuple[ImageContent, bytes]:
        """One platform's image in the store, and its manifest's bytes."""
        config_digest = self.add(config)
        layer_digests = tuple(self.add(layer) for layer in layers)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": {"digest": str(config_digest), "size": len(config)},
                "layers": [{"digest": str(d)} for d in layer_digests],
            }
        ).encode()
        return ImageContent(self.add(manifest), config_digest, layer_digests), manifest

    def image(
        self,
        name: str,
        ref_name: str,
        config: bytes,
        layers: list[bytes],
        media_type: str = OCI_MANIFEST,
    ) -> ArchiveImage:
        content, manifest = self.content(config, layers, media_type)
        return ArchiveImage(name, ref_name, media_type, content.manifest, len(manifest), (content,))

    def index(self, name: str, ref_name: str, contents: list[ImageContent]) -> ArchiveImage:
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{"digest": str(c.manifest)} for c in contents],
            }
        ).encode()
        return ArchiveImage(name, ref_name, OCI_INDEX, self.add(index), len(index), tuple(contents))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def alpine(store: Store) -> ArchiveImage:
    # Layer sizes straddle tar's 512-byte blocks: padding must be exact for each.
    return store.image(
        "docker.io/library/alpine:3.19",
        "3.19",
        b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
        [b"\x1f\x8b layer one" * 100, b"x" * 512, b"", os.urandom(70_001)],
    )


@pytest.fixture
def busybox(store: Store, alpine: ArchiveImage) -> ArchiveImage:
    """Shares its last layer with ``alpine`` and has a layer of its own."""
    shared = store.path(alpine.contents[0].layers[-1]).read_bytes()
    return store.image(
        "registry.example:5000/tools/busybox:1.36",
        "1.36",
        b'{"architecture":"arm64","os":"linux"}',
        [shared, b"busybox layer"],
        media_type=DOCKER_MANIFEST,
    )


def blob_name(digest: Digest) -> str:
    return f"blobs/sha256/{digest.hex}"


def read_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def test_members_in_order_layout_first_blobs_in_manifest_order_manifest_json_last(
    tmp_path: Path, store: Store, alpine: ArchiveImage
) -> None:
    archive = tmp_path / "alpine.tar"

    write_archive(archive, [alpine], store.path)

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names == [
        "oci-layout",
        "blobs",
        "blobs/sha256",
        blob_name(alpine.digest),
        blob_name(alpine.contents[0].config),
        *(blob_name(layer) for layer in alpine.contents[0].layers),
        "index.json",
        "manifest.json",
    ]


def test_only_regular_files_and_the_two_blob_directories(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    archive = tmp_path / "both.tar"

    write_archive(archive, [alpine, busybox], store.path)

    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    directories = [m.name for m in members if m.isdir()]
    others = [m.name for m in members if not m.isdir() and not m.isfile()]
    assert directories == ["blobs", "blobs/sha256"]
    assert others == []
    for member in members:
        assert (member.mtime, member.uid, member.gid) == (0, 0, 0), member.name
        assert (member.uname, member.gname) == ("", ""), member.name
        assert member.mode == (0o755 if member.isdir() else 0o644), member.name


def test_blobs_are_the_exact_bytes_of_the_store(
    tmp_path: Path, store: Store, alpine: ArchiveImage
) -> None:
    archive = tmp_path / "alpine.tar"

    write_archive(archive, [alpine], store.path)

    members = read_members(archive)
    for digest in alpine.blobs:
        assert members[blob_name(digest)] == store.path(digest).read_bytes()
        assert Digest.of(members[blob_name(digest)]) == digest


def test_oci_layout_file(tmp_path: Path, store: Store, alpine: ArchiveImage) -> None:
    archive = tmp_path / "alpine.tar"

    write_archive(archive, [alpine], store.path)

    assert json.loads(read_members(archive)["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}


def test_blob_shared_by_two_images_is_stored_once(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    archive = tmp_path / "both.tar"

    write_archive(archive, [alpine, busybox], store.path)

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    blobs = [name for name in names if name.startswith("blobs/sha256/")]
    assert len(blobs) == len(set(blobs))
    assert set(blobs) == {blob_name(d) for d in (*alpine.blobs, *busybox.blobs)}
    assert blob_name(alpine.contents[0].layers[-1]) in blobs
    assert busybox.contents[0].layers[0] == alpine.contents[0].layers[-1]


def test_manifest_json_points_into_blobs_with_full_names(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    archive = tmp_path / "both.tar"

    write_archive(archive, [alpine, busybox], store.path)

    manifest = json.loads(read_members(archive)["manifest.json"])
    assert manifest == [
        {
            "Config": blob_name(alpine.contents[0].config),
            "RepoTags": ["docker.io/library/alpine:3.19"],
            "Layers": [blob_name(layer) for layer in alpine.contents[0].layers],
        },
        {
            "Config": blob_name(busybox.contents[0].config),
            "RepoTags": ["registry.example:5000/tools/busybox:1.36"],
            "Layers": [blob_name(layer) for layer in busybox.contents[0].layers],
        },
    ]


def test_index_json_names_each_image_and_carries_no_platform(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    archive = tmp_path / "both.tar"

    write_archive(archive, [alpine, busybox], store.path)

    index = json.loads(read_members(archive)["index.json"])
    assert index == {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": str(alpine.digest),
                "size": alpine.size,
                "annotations": {
                    "io.containerd.image.name": "docker.io/library/alpine:3.19",
                    "org.opencontainers.image.ref.name": "3.19",
                },
            },
            {
                "mediaType": DOCKER_MANIFEST,
                "digest": str(busybox.digest),
                "size": busybox.size,
                "annotations": {
                    "io.containerd.image.name": "registry.example:5000/tools/busybox:1.36",
                    "org.opencontainers.image.ref.name": "1.36",
                },
            },
        ],
    }


def test_every_blob_named_in_index_and_manifest_json_is_in_the_tar(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    archive = tmp_path / "both.tar"

    write_archive(archive, [alpine, busybox], store.path)

    members = read_members(archive)
    index = json.loads(members["index.json"])
    for entry in index["manifests"]:
        blob = members[blob_name(Digest.parse(entry["digest"]))]
        assert len(blob) == entry["size"]
    for item in json.loads(members["manifest.json"]):
        for path in (item["Config"], *item["Layers"]):
            assert path in members


def test_same_images_give_identical_bytes(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    first, second = tmp_path / "first.tar", tmp_path / "second.tar"

    write_archive(first, [alpine, busybox], store.path)
    for digest in (*alpine.blobs, *busybox.blobs):
        os.utime(store.path(digest), (1_700_000_000, 1_700_000_000))
        store.path(digest).chmod(0o600)
    write_archive(second, [alpine, busybox], store.path)

    assert first.read_bytes() == second.read_bytes()


def test_size_is_returned_and_whole_tar_records(
    tmp_path: Path, store: Store, alpine: ArchiveImage
) -> None:
    archive = tmp_path / "alpine.tar"

    size = write_archive(archive, [alpine], store.path)

    assert size == archive.stat().st_size
    assert size % tarfile.RECORDSIZE == 0
    assert archive.read_bytes()[-1024:] == b"\0" * 1024


def test_archive_extracts_with_tarfile(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    archive = tmp_path / "both.tar"
    write_archive(archive, [alpine, busybox], store.path)
    out = tmp_path / "out"

    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")

    for digest in (*alpine.blobs, *busybox.blobs):
        assert (out / blob_name(digest)).read_bytes() == store.path(digest).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [
        "blobs",
        "index.json",
        "manifest.json",
        "oci-layout",
    ]


def test_missing_blob_raises_and_leaves_no_file(
    tmp_path: Path, store: Store, alpine: ArchiveImage
) -> None:
    archive = tmp_path / "alpine.tar"
    store.path(alpine.contents[0].layers[1]).unlink()

    with pytest.raises(FileNotFoundError):
        write_archive(archive, [alpine], store.path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_failure_keeps_an_earlier_archive_of_the_same_name(
    tmp_path: Path, store: Store, alpine: ArchiveImage
) -> None:
    archive = tmp_path / "alpine.tar"
    write_archive(archive, [alpine], store.path)
    earlier = archive.read_bytes()
    store.path(alpine.contents[0].config).unlink()

    with pytest.raises(FileNotFoundError):
        write_archive(archive, [alpine], store.path)

    assert archive.read_bytes() == earlier
    assert not archive.with_name("alpine.tar.partial").exists()


def test_each_blob_is_looked_up_once_even_when_an_image_repeats(
    tmp_path: Path, store: Store, alpine: ArchiveImage
) -> None:
    asked: list[Digest] = []

    def blob_path(digest: Digest) -> Path:
        asked.append(digest)
        return store.path(digest)

    write_archive(tmp_path / "alpine.tar", [alpine, alpine], blob_path)

    assert asked == list(alpine.blobs)


def test_multi_platform_image_stores_index_and_every_platform_docker_gets_the_first(
    tmp_path: Path, store: Store
) -> None:
    amd64, _ = store.content(b'{"architecture":"amd64"}', [b"amd64 layer", b"shared layer"])
    arm64, _ = store.content(b'{"architecture":"arm64"}', [b"shared layer", b"arm64 layer"])
    image = store.index("docker.io/library/alpine:3.19", "3.19", [amd64, arm64])
    archive = tmp_path / "alpine.tar"

    write_archive(archive, [image], store.path)

    with tarfile.open(archive) as tar:
        blobs = [name for name in tar.getnames() if name.startswith("blobs/sha256/")]
    assert blobs == [
        blob_name(image.digest),
        blob_name(amd64.manifest),
        blob_name(amd64.config),
        *(blob_name(layer) for layer in amd64.layers),
        blob_name(arm64.manifest),
        blob_name(arm64.config),
        blob_name(arm64.layers[1]),
    ]
    members = read_members(archive)
    assert json.loads(members["manifest.json"]) == [
        {
            "Config": blob_name(amd64.config),
            "RepoTags": ["docker.io/library/alpine:3.19"],
            "Layers": [blob_name(layer) for layer in amd64.layers],
        }
    ]
    [entry] = json.loads(members["index.json"])["manifests"]
    assert (entry["mediaType"], entry["digest"], entry["size"]) == (
        OCI_INDEX,
        str(image.digest),
        image.size,
    )
    assert "platform" not in entry


def layout_names(directory: Path) -> list[tuple[str, str]]:
    index = json.loads((directory / "index.json").read_bytes())
    assert index["schemaVersion"] == 2
    return [
        (entry["annotations"]["org.opencontainers.image.ref.name"], entry["digest"])
        for entry in index["manifests"]
    ]


def test_update_layout_creates_a_layout_and_adds_images_after_those_present(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()

    update_layout(layout, [alpine])
    update_layout(layout, [busybox])

    assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert layout_names(layout) == [("3.19", str(alpine.digest)), ("1.36", str(busybox.digest))]
    assert sorted(p.name for p in layout.iterdir()) == ["index.json", "oci-layout"]


def test_update_layout_replaces_the_entry_of_the_same_ref_name(
    tmp_path: Path, store: Store, alpine: ArchiveImage, busybox: ArchiveImage
) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    newer = store.image("docker.io/library/alpine:3.19", "3.19", b'{"newer":true}', [b"new"])
    update_layout(layout, [alpine, busybox])

    update_layout(layout, [newer])

    assert layout_names(layout) == [("1.36", str(busybox.digest)), ("3.19", str(newer.digest))]


def test_updates_of_one_layout_at_once_keep_every_image(tmp_path: Path, store: Store) -> None:
    """What two runs adding to one layout do: each reads, merges and replaces index.json."""
    layout = tmp_path / "layout"
    layout.mkdir()
    images = [
        store.image(f"docker.io/library/app{n}:1", f"app{n}:1", b'{"n":%d}' % n, [b"%d" % n])
        for n in range(24)
    ]

    with ThreadPoolExecutor(max_workers=8) as workers:
        for done in [workers.submit(update_layout, layout, [image]) for image in images]:
            done.result()

    assert sorted(layout_names(layout)) == sorted((i.ref_name, str(i.digest)) for i in images)
    assert sorted(p.name for p in layout.iterdir()) == ["index.json", "oci-layout"]
