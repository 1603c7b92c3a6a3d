"""``bulkpull verify``: every problem it can report made to fire, the formats other tools
write, hostile input, and ``--lock``."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start

import bulkpull
from bulkpull import Destination, PullOptions

NAME = "registry.example/team/app:1"
DEEP = b"[" * 200_000 + b"]" * 200_000
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
Files = dict[str, bytes]


def blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"


def as_json(document: object) -> bytes:
    return json.dumps(document).encode()


def write_tar(path: Path, files: Files, links: dict[str, str] | None = None) -> Path:
    """A tar of ``files``; ``links`` are symlinks (name -> target as stored)."""
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": f.sha256(data), "size": len(data), **extra}


def entry_for(item: f.Image | f.Index, name: str = NAME) -> dict[str, object]:
    annotations = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}
    return descriptor(item.media_type, item.manifest, annotations=annotations)


def oci_files(*items: f.Image | f.Index) -> Files:
    """An OCI layout of ``items`` (each named NAME, or NAME-N after the first)."""
    files: Files = {"oci-layout": OCI_LAYOUT}
    entries = []
    for position, item in enumerate(items):
        images = item.children if isinstance(item, f.Index) else (item,)
        for image in images:
            files[blob_name(image.digest)] = image.manifest
            files.update({blob_name(d): data for d, data in image.blobs.items()})
        files[blob_name(item.digest)] = item.manifest
        entries.append(entry_for(item, NAME if position == 0 else f"{NAME}-{position}"))
    files["index.json"] = as_json({"schemaVersion": 2, "manifests": entries})
    return files


def combined_files(image: f.Image) -> Files:
    """What bulkpull and Docker 25+ write: an OCI layout that is a docker archive too."""
    files = oci_files(image)
    files["manifest.json"] = as_json(
        [
            {
                "Config": blob_name(image.config_digest),
                "RepoTags": [NAME],
                "Layers": [blob_name(layer.digest) for layer in image.layers],
            }
        ]
    )
    return files


def legacy_files(images: list[f.Image], *, tagged: bool = True) -> tuple[Files, dict[str, str]]:
    """``docker save`` before Docker 25: ``<config hex>.json``, ``<id>/layer.tar`` holding the
    uncompressed layer (a layer already written is a symlink to the first), ``repositories``."""
    files: Files = {}
    links: dict[str, str] = {}
    first: dict[str, str] = {}
    items = []
    repositories: dict[str, dict[str, str]] = {}
    for number, image in enumerate(images):
        files[f"{image.config_digest[7:]}.json"] = image.config
        layers = []
        for position, layer in enumerate(image.layers):
            layer_id = f"{number:02d}{position:02d}".ljust(64, "0")
            layers.append(f"{layer_id}/layer.tar")
            if layer.diff_id in first:
                links[f"{layer_id}/layer.tar"] = f"../{first[layer.diff_id]}"
            else:
                files[f"{layer_id}/layer.tar"] = gzip.decompress(layer.compressed)
                first[layer.diff_id] = f"{layer_id}/layer.tar"
            files[f"{layer_id}/VERSION"] = b"1.0"
        items.append(
            {
                "Config": f"{image.config_digest[7:]}.json",
                "RepoTags": [f"app{number}:1"] if tagged else None,
                "Layers": layers,
            }
        )
        repositories[f"app{number}"] = {"1": layers[-1].split("/")[0]}
    files["manifest.json"] = as_json(items)
    files["repositories"] = as_json(repositories)
    return files, links


def skopeo_files(image: f.Image) -> Files:
    """skopeo's docker-archive: ``<config hex>.json`` and ``<diff_id hex>.tar``."""
    files = {f"{image.config_digest[7:]}.json": image.config}
    for layer in image.layers:
        files[f"{layer.diff_id[7:]}.tar"] = gzip.decompress(layer.compressed)
    files["manifest.json"] = as_json(
        [
            {
                "Config": f"{image.config_digest[7:]}.json",
                "RepoTags": [NAME],
                "Layers": [f"{layer.diff_id[7:]}.tar" for layer in image.layers],
            }
        ]
    )
    return files


IMAGE = f.make_image([f.random_layer(600)], label="verify")
UNCOMPRESSED = f.make_image([f.random_layer(300)])  # its layer is rewritten as a plain tar
MULTI = f.make_index([IMAGE, f.make_image([f.random_layer(100)], arch="arm64")], attestation=True)


def plain_layer_image(*, wrong_diff_id: bool = False) -> f.Image:
    """An OCI image whose layer is an uncompressed tar, as Docker 25+'s save writes it."""
    plain = gzip.decompress(UNCOMPRESSED.layers[0].compressed)
    diff_id = f.sha256(b"other") if wrong_diff_id else f.sha256(plain)
    config = as_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    )
    manifest = as_json(
        {
            "schemaVersion": 2,
            "mediaType": f.OCI_MANIFEST,
            "config": descriptor(f.OCI_CONFIG, config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", plain)],
        }
    )
    layer = f.Layer(plain, diff_id)
    return f.Image(manifest, f.OCI_MANIFEST, config, (layer,), ("linux", "amd64", ""))


def nested_files(depth: int) -> Files:
    """A layout whose entry is an index of an index ... (``depth`` of them) of IMAGE."""
    files = oci_files(IMAGE)
    raw, media_type = IMAGE.manifest, IMAGE.media_type
    for _ in range(depth):
        entries = [descriptor(media_type, raw)]
        raw = as_json({"schemaVersion": 2, "mediaType": f.OCI_INDEX, "manifests": entries})
        media_type = f.OCI_INDEX
        files[blob_name(f.sha256(raw))] = raw
    return with_index(files, one_entry(descriptor(media_type, raw)))


def with_index(files: Files, document: object) -> Files:
    return {**files, "index.json": as_json(document)}


def one_entry(item: dict[str, object]) -> object:
    return {"schemaVersion": 2, "manifests": [item]}


def docker_item(**fields: object) -> Files:
    """A combined archive whose manifest.json item has ``fields`` replaced."""
    files = combined_files(IMAGE)
    (item,) = json.loads(files["manifest.json"])
    return {**files, "manifest.json": as_json([{**item, **fields}])}


def flipped(files: Files, name: str) -> Files:
    data = bytearray(files[name])
    data[len(data) // 2] ^= 0xFF
    return {**files, name: bytes(data)}


def without(files: Files, *names: str) -> Files:
    return {name: data for name, data in files.items() if name not in names}


def stored_blob(files: Files, data: bytes) -> Files:
    return {**files, blob_name(f.sha256(data)): data}


def bad_manifest_entry(data: bytes, media_type: str = f.OCI_MANIFEST) -> Files:
    files = stored_blob(combined_files(IMAGE), data)
    return with_index(files, one_entry(descriptor(media_type, data)))


def image_with(manifest: dict[str, object], *blobs: bytes) -> Files:
    """A layout whose one entry is ``manifest`` (given as JSON), with ``blobs`` stored."""
    raw = as_json({"schemaVersion": 2, "mediaType": f.OCI_MANIFEST, **manifest})
    files = {"oci-layout": OCI_LAYOUT, blob_name(f.sha256(raw)): raw}
    for data in blobs:
        files[blob_name(f.sha256(data))] = data
    return with_index(files, one_entry(descriptor(f.OCI_MANIFEST, raw)))


ZERO = b"\x00"
EMPTY_TAR = ZERO * 1024
NO_ROOTFS = as_json({"os": "linux", "architecture": "amd64"})
TWO_DIFF_IDS = as_json({"rootfs": {"type": "layers", "diff_ids": [f.sha256(b"a"), f.sha256(b"b")]}})
HEX = IMAGE.config_digest[7:]
Case = Callable[[], tuple[Files, str]]

PROBLEMS: dict[str, Case] = {
    "blob-hashes-wrong": lambda: (
        flipped(combined_files(IMAGE), blob_name(IMAGE.layers[0].digest)),
        f"{blob_name(IMAGE.layers[0].digest)}: content hashes to sha256:",
    ),
    "holds-no-image": lambda: ({"README": b"hello"}, "holds no image"),
    "index-without-oci-layout": lambda: (
        without(combined_files(IMAGE), "oci-layout"),
        "index.json without oci-layout",
    ),
    "oci-layout-without-index": lambda: (
        without(combined_files(IMAGE), "index.json"),
        "oci-layout without index.json",
    ),
    "oci-layout-not-json": lambda: (
        {**combined_files(IMAGE), "oci-layout": b"{imageLayoutVersion: 1}"},
        "oci-layout: not JSON",
    ),
    "oci-layout-version": lambda: (
        {**combined_files(IMAGE), "oci-layout": b'{"imageLayoutVersion":"2.0.0"}'},
        "oci-layout: imageLayoutVersion is '2.0.0', not '1.0.0'",
    ),
    "index-not-json": lambda: (
        {**combined_files(IMAGE), "index.json": b"manifests"},
        "index.json: not JSON",
    ),
    "index-nested-deep": lambda: (
        {**combined_files(IMAGE), "index.json": DEEP},
        "index.json: not JSON",
    ),
    "index-no-manifests": lambda: (
        with_index(combined_files(IMAGE), {"manifests": {}}),
        "index.json: not an OCI index (no manifests list)",
    ),
    "index-bad-descriptor": lambda: (
        with_index(combined_files(IMAGE), one_entry({**entry_for(IMAGE), "size": -1})),
        "index.json: manifests[0].size must be an integer from 0 to 2**53",
    ),
    "manifest-missing": lambda: (
        without(combined_files(IMAGE), blob_name(IMAGE.digest)),
        f"index.json entry 0 ({NAME}): manifest {IMAGE.digest} is missing",
    ),
    "manifest-size": lambda: (
        with_index(combined_files(IMAGE), one_entry({**entry_for(IMAGE), "size": 1})),
        f"manifest {IMAGE.digest} is {len(IMAGE.manifest)} bytes, not 1",
    ),
    "manifest-not-json": lambda: (
        bad_manifest_entry(b"\x00binary"),
        "not JSON, or too large to check",
    ),
    "manifest-invalid": lambda: (
        bad_manifest_entry(b'{"schemaVersion":2,"layers":[]}'),
        "config is missing",
    ),
    "config-missing": lambda: (
        without(combined_files(IMAGE), blob_name(IMAGE.config_digest)),
        f"config {IMAGE.config_digest} is missing",
    ),
    "layer-missing": lambda: (
        without(combined_files(IMAGE), blob_name(IMAGE.layers[0].digest)),
        f"index.json entry 0 ({NAME}): layer {IMAGE.layers[0].digest} is missing",
    ),
    "config-not-json": lambda: (
        image_with({"config": descriptor(f.OCI_CONFIG, ZERO), "layers": []}, ZERO),
        f"config {f.sha256(ZERO)}: not JSON, or too large to check",
    ),
    "config-without-rootfs": lambda: (
        image_with({"config": descriptor(f.OCI_CONFIG, NO_ROOTFS), "layers": []}, NO_ROOTFS),
        "rootfs is missing",
    ),
    "layer-count": lambda: (
        image_with({"config": descriptor(f.OCI_CONFIG, TWO_DIFF_IDS), "layers": []}, TWO_DIFF_IDS),
        "0 layers but 2 rootfs.diff_ids",
    ),
    "uncompressed-layer-diff-id": lambda: (
        oci_files(plain_layer_image(wrong_diff_id=True)),
        "is an uncompressed tar, but rootfs.diff_ids[0] is " + f.sha256(b"other"),
    ),
    "index-holds-none": lambda: (
        without(oci_files(MULTI), *(blob_name(child.digest) for child in MULTI.children)),
        f"none of the {len(MULTI.children)} manifests of index {MULTI.digest} is here",
    ),
    "index-too-deep": lambda: (nested_files(5), "indexes nested more than 4 deep"),
    "docker-manifest-not-json": lambda: (
        {**combined_files(IMAGE), "manifest.json": b"[Config"},
        "manifest.json: not JSON",
    ),
    "docker-manifest-nested-deep": lambda: (
        {**combined_files(IMAGE), "manifest.json": DEEP},
        "manifest.json: not JSON",
    ),
    "docker-manifest-not-array": lambda: (
        {**combined_files(IMAGE), "manifest.json": b"{}"},
        "manifest.json: not a JSON array",
    ),
    "docker-item-not-object": lambda: (
        {**combined_files(IMAGE), "manifest.json": b"[1]"},
        "manifest.json item 0: not an object",
    ),
    "docker-layers-not-list": lambda: (
        docker_item(Layers="x"),
        "Layers is not a list of file names",
    ),
    "docker-config-not-name": lambda: (docker_item(Config=7), "Config is not a file name"),
    "docker-config-missing": lambda: (
        docker_item(Config="nothing.json"),
        "manifest.json item 0: config nothing.json is missing",
    ),
    "docker-config-hashes-wrong": lambda: (
        {**skopeo_files(IMAGE), f"{HEX}.json": b'{"rootfs":{"diff_ids":[]}}'},
        f"config {HEX}.json hashes to sha256:",
    ),
    "docker-config-not-json": lambda: (
        {**docker_item(Config="cfg.json"), "cfg.json": b"\x00"},
        "config cfg.json: not JSON, or too large to check",
    ),
    "docker-config-without-rootfs": lambda: (
        {**docker_item(Config="cfg.json"), "cfg.json": NO_ROOTFS},
        "manifest.json item 0: config cfg.json: rootfs is missing",
    ),
    "docker-layer-count": lambda: (docker_item(Layers=[]), "0 layers but 1 rootfs.diff_ids"),
    "docker-layer-missing": lambda: (
        docker_item(Layers=["gone.tar"]),
        "manifest.json item 0: layer gone.tar is missing",
    ),
    "docker-layer-diff-id": lambda: (
        {**docker_item(Layers=["layer.tar"]), "layer.tar": EMPTY_TAR},
        f"layer layer.tar hashes to {f.sha256(EMPTY_TAR)}, but rootfs.diff_ids[0] is",
    ),
    "docker-repo-tags-not-list": lambda: (docker_item(RepoTags="x:1"), "RepoTags is not a list"),
    "docker-repo-tag-untagged": lambda: (
        docker_item(RepoTags=["registry.example/app"]),
        "RepoTags entry 'registry.example/app': docker load needs NAME:TAG",
    ),
    "docker-repo-tag-invalid": lambda: (
        docker_item(RepoTags=["UPPER:1"]),
        "RepoTags entry 'UPPER:1': invalid",
    ),
    "repositories-not-json": lambda: (
        {**combined_files(IMAGE), "repositories": b"{app"},
        "repositories: not JSON",
    ),
    "repositories-shape": lambda: (
        {**combined_files(IMAGE), "repositories": b'{"app": "1"}'},
        "repositories: not a map of names to tags to layer IDs",
    ),
    "repositories-absent-layer": lambda: (
        {**combined_files(IMAGE), "repositories": b'{"app": {"1": "abc"}}'},
        "repositories: app:1 names layer abc, which is not here",
    ),
}


@pytest.mark.parametrize("case", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_each_problem_verify_reports_fires(tmp_path: Path, case: Case) -> None:
    files, expected = case()

    check = bulkpull.verify_archive(write_tar(tmp_path / "x.tar", files))

    assert not check.ok
    assert any(expected in problem for problem in check.problems), check.problems


def test_a_file_that_is_no_tar_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(b"not a tar at all" * 100)

    check = bulkpull.verify_archive(path)

    assert check.problems[0].startswith("cannot read archive:")


def test_a_path_that_is_not_there_is_named_with_the_reason_alone(tmp_path: Path) -> None:
    check = bulkpull.verify_archive(tmp_path / "gone.tar")

    assert check.problems == ("cannot read archive: No such file or directory",)


def test_json_beyond_the_memory_budget_is_a_problem_not_an_exhausted_machine(
    tmp_path: Path,
) -> None:
    path = write_tar(tmp_path / "x.tar", combined_files(IMAGE))

    check = bulkpull.verify_archive(path, max_json_bytes=100)

    assert any("JSON files were not checked" in problem for problem in check.problems)


@pytest.mark.parametrize(
    ("files", "note"),
    [
        (
            without(oci_files(MULTI), blob_name(MULTI.images[1].digest)),
            f"{len(MULTI.children) - 1} of the {len(MULTI.children)} manifests of index",
        ),
        (bad_manifest_entry(b'{"mediaType":"text/html"}', "text/html"), "not checked: text/html"),
        ({**combined_files(IMAGE), "blobs/sha512/ab": b"x"}, "blobs/sha512/: not checked"),
    ],
    ids=["partial-index", "not-an-image", "other-algorithm"],
)
def test_what_is_unusual_but_legal_is_a_note(tmp_path: Path, files: Files, note: str) -> None:
    check = bulkpull.verify_archive(write_tar(tmp_path / "x.tar", files))

    assert check.ok, check.problems
    assert any(note in text for text in check.notes), check.notes


def test_a_fifo_named_for_verify_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "x.tar"
    os.mkfifo(fifo)

    check = bulkpull.verify_archive(fifo)  # no writer: an open that waited would never return

    assert check.problems == (f"{fifo} is a FIFO, not a regular file",)


def test_an_archive_named_through_a_link_is_verified(tmp_path: Path) -> None:
    real = write_tar(tmp_path / "2026-12.tar", combined_files(IMAGE))
    (tmp_path / "current.tar").symlink_to(real.name)

    check = bulkpull.verify_archive(tmp_path / "current.tar")

    assert check.ok, check.problems
    assert check.names == (NAME,)


@pytest.mark.parametrize(
    "build",
    [
        lambda: (combined_files(IMAGE), {}),
        lambda: (oci_files(MULTI), {}),
        lambda: (oci_files(plain_layer_image()), {}),
        lambda: legacy_files([IMAGE, f.make_image([*IMAGE.layers, f.random_layer(50)])]),
        lambda: (skopeo_files(IMAGE), {}),
        lambda: legacy_files([IMAGE], tagged=False),
    ],
    ids=[
        "combined",
        "oci-index-with-attestations",
        "docker25-uncompressed",
        "docker-save",
        "skopeo",
        "docker-save-by-id",
    ],
)
def test_archives_every_writer_makes_are_ok(
    tmp_path: Path, build: Callable[[], tuple[Files, dict[str, str]]]
) -> None:
    files, links = build()

    check = bulkpull.verify_archive(write_tar(tmp_path / "x.tar", files, links))

    assert (check.problems, check.notes) == ((), ())
    assert check.names


def test_a_compressed_archive_is_read_through(tmp_path: Path) -> None:
    plain = write_tar(tmp_path / "x.tar", combined_files(IMAGE))
    packed = tmp_path / "x.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))

    check = bulkpull.verify_archive(packed)

    assert check.ok, check.problems
    assert check.names == (NAME,)


def test_an_oci_layout_directory_is_verified_and_a_flipped_byte_named(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    for name, data in oci_files(MULTI).items():
        (layout / name).parent.mkdir(parents=True, exist_ok=True)
        (layout / name).write_bytes(data)
    (layout / "blobs" / "sha256" / f"{'0' * 64}.partial").write_bytes(b"half")  # a writer's
    good = bulkpull.verify_archive(layout)
    layer = layout / blob_name(MULTI.images[1].layers[0].digest)
    flipped_layer = bytearray(layer.read_bytes())
    flipped_layer[5] ^= 1
    layer.write_bytes(bytes(flipped_layer))

    bad = bulkpull.verify_archive(layout)

    assert good.ok, good.problems
    assert good.blobs == len({*MULTI.blobs, *(c.digest for c in MULTI.children), MULTI.digest})
    name = blob_name(MULTI.images[1].layers[0].digest)
    assert bad.problems == (f"{name}: content hashes to {f.sha256(bytes(flipped_layer))}",)


async def test_verify_on_the_command_line_reads_directories_and_exits_one_on_a_problem(
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    for name, data in oci_files(IMAGE).items():
        (layout / name).parent.mkdir(parents=True, exist_ok=True)
        (layout / name).write_bytes(data)
    broken = write_tar(tmp_path / "broken.tar", {**combined_files(IMAGE), "manifest.json": DEEP})

    code, out, err = await run_cli("verify", str(layout), str(broken))

    assert code == 1, err
    assert f"ok      {layout}: 3 blobs verified; {NAME}" in out
    assert f"FAILED  {broken}: manifest.json: not JSON" in out
    assert "Traceback" not in err


async def test_verify_shows_names_and_paths_a_carried_bundle_chose_with_escapes(
    tmp_path: Path,
) -> None:
    layout = tmp_path / "usb\x1b[2J"
    f.write_oci_layout(layout, {"app\x1b]0;owned\x07:1": IMAGE})
    broken = tmp_path / "gone\x1b[31m.tar"
    broken.write_bytes(b"not a tar")

    code, out, _ = await run_cli("verify", str(layout), str(broken))

    assert code == 1
    assert "\x1b" not in out
    assert "\x07" not in out
    assert f"ok      {tmp_path}/usb\\x1b[2J: 3 blobs verified; app\\x1b]0;owned\\x07:1" in out
    assert f"FAILED  {tmp_path}/gone\\x1b[31m.tar: cannot read archive:" in out


@pytest.mark.parametrize("output", ["archive", "bundle"])
async def test_a_pull_onto_a_tar_with_absurd_json_rewrites_it(
    start: Start, options: PullOptions, tmp_path: Path, output: str
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", IMAGE)
    host = await start(registry.app())
    final = tmp_path / (
        "bundle.tar" if output == "bundle" else f"127.0.0.1_{host.split(':')[1]}_x_y_1.tar"
    )
    write_tar(final, {"oci-layout": b"not json", "index.json": DEEP, "manifest.json": DEEP})
    to = Destination.bundle(final) if output == "bundle" else Destination.archives(tmp_path)

    report = await bulkpull.pull_images([f"{host}/x/y:1"], to, options)

    assert report.ok, report.failed
    assert [result.archive for result in report.results] == [final]
    assert bulkpull.verify_archive(final).ok


# --------------------------------------------------------------------------------------------
# --lock


class Pinned:
    """A registry serving a single image and a three-platform index, and pulls of them."""

    def __init__(self) -> None:
        self.single = IMAGE
        self.images = [
            f.make_image([f.random_layer(200)], arch=arch, label=arch)
            for arch in ("amd64", "arm64", "s390x")
        ]
        self.index = f.make_index(self.images, attestation=True)
        self.registry = FakeRegistry()
        self.registry.add("x/single", "1", self.single)
        self.registry.add("x/multi", "1", self.index)


@pytest.fixture
async def pinned(start: Start) -> tuple[Pinned, str]:
    served = Pinned()
    return served, await start(served.registry.app())


async def lock_and_pull(
    host: str, tmp_path: Path, flags: list[str], output: list[str]
) -> tuple[Path, list[Path]]:
    """Pin both images with a dry run, then pull the lock into ``output``."""
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/single:1\n{host}/x/multi:1\n")
    lock = tmp_path / "images.lock"
    code, _, err = await run_cli(str(listing), "--dry-run", "--lock", str(lock), *flags)
    assert code == 0, err
    code, _, err = await run_cli(str(lock), *output)
    assert code == 0, err
    target = Path(output[1])
    paths = sorted(target.glob("*.tar")) if target.is_dir() and output[0] == "-o" else [target]
    return lock, paths


@pytest.mark.parametrize(
    ("flags", "output"),
    [
        (["--platform", "linux/arm64"], "bundle"),
        (["--platform", "linux/arm64"], "layout"),
        (["--platform", "linux/arm64"], "archives"),
        (["--platform", "linux/arm64", "--platform", "linux/amd64"], "bundle"),
        (["--platform", "linux/arm64", "--platform", "linux/amd64"], "archives"),
        (["--platform", "all"], "bundle"),
        (["--platform", "all"], "archives"),
    ],
    ids=[
        "one-bundle",
        "one-layout",
        "one-archive",
        "two-bundle",
        "two-archives",
        "all-bundle",
        "all-archive",
    ],
)
async def test_what_a_lock_pinned_verifies_against_it_whatever_the_output(
    pinned: tuple[Pinned, str], tmp_path: Path, flags: list[str], output: str
) -> None:
    _, host = pinned
    target = {
        "bundle": ["--bundle", str(tmp_path / "b.tar")],
        "layout": ["--oci-layout", str(tmp_path / "layout")],
        "archives": ["-o", str(tmp_path / "out")],
    }[output]
    lock, paths = await lock_and_pull(host, tmp_path, flags, target)

    code, out, err = await run_cli("verify", "--lock", str(lock), *map(str, paths))

    assert code == 0, out + err
    assert f"ok      {host}/x/multi:1@" in out
    assert f"ok      {host}/x/single:1@" in out


async def test_a_lock_naming_an_absent_image_or_another_digest_fails_naming_it(
    pinned: tuple[Pinned, str], tmp_path: Path
) -> None:
    served, host = pinned
    lock, paths = await lock_and_pull(host, tmp_path, [], ["--bundle", str(tmp_path / "b.tar")])
    other = f.sha256(b"another image")
    edited = lock.read_text().replace(served.single.digest, other)
    edited += f"{host}/x/absent:1@{other}\n"
    (tmp_path / "edited.lock").write_text(edited)

    code, out, _ = await run_cli("verify", "--lock", str(tmp_path / "edited.lock"), str(paths[0]))

    assert code == 1
    assert (
        f"FAILED  {host}/x/single:1 in {paths[0]}: is {served.single.digest}; the lock pins {other}"
        in out
    )
    assert f"FAILED  {host}/x/absent:1: not in {paths[0]}" in out
    assert f"ok      {host}/x/multi:1@{served.index.digest}" in out


async def test_an_index_locked_for_other_platforms_than_were_pulled_fails(
    pinned: tuple[Pinned, str], tmp_path: Path
) -> None:
    served, host = pinned
    lock, paths = await lock_and_pull(
        host, tmp_path, ["--platform", "linux/arm64"], ["--bundle", str(tmp_path / "b.tar")]
    )
    arm64, s390x = served.images[1], served.images[2]
    cases = {
        "other": (
            "platform=linux/s390x",
            f"is {arm64.digest}, not the locked index's linux/s390x {s390x.digest}",
        ),
        "more": (
            "platform=linux/arm64,linux/s390x",
            f"the manifests for linux/s390x ({s390x.digest}) are missing",
        ),
        "all": ("platform=all", f"is {arm64.digest}, not the locked index {served.index.digest}"),
        "absent": ("platform=linux/ppc64le", "no manifest for platform linux/ppc64le"),
    }
    for case, (setting, expected) in cases.items():
        edited = tmp_path / f"{case}.lock"
        edited.write_text(lock.read_text().replace("platform=linux/arm64", setting))

        code, out, _ = await run_cli("verify", "--lock", str(edited), str(paths[0]))

        assert code == 1, case
        assert f"FAILED  {host}/x/multi:1" in out, (case, out)
        assert expected in out, (case, out)


async def test_a_lock_checked_against_a_docker_archive_only_says_it_cannot_tell(
    tmp_path: Path,
) -> None:
    archive = write_tar(tmp_path / "skopeo.tar", skopeo_files(IMAGE))
    lock = tmp_path / "images.lock"
    lock.write_text(f"{NAME.removesuffix(':1')}:1@{IMAGE.digest}\nunpinned.example/x:2\n")

    result = bulkpull.verify_lock(lock, [bulkpull.verify_archive(archive)])

    assert result.problems == (
        f"{NAME}: only in a manifest.json, which records no digest to check",
        f"unpinned.example/x:2: not in {archive}",
    )


async def test_an_unpinned_lock_line_needs_only_its_name(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "x.tar", combined_files(IMAGE))
    lock = tmp_path / "images.lock"
    lock.write_text(f"{NAME}\n")

    result = bulkpull.verify_lock(lock, [bulkpull.verify_archive(archive)])

    assert result.ok
    assert result.found == (f"{NAME}: in {archive} (the lock pins no digest for it)",)


async def test_a_lock_that_is_not_an_image_list_is_a_usage_error(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "x.tar", combined_files(IMAGE))
    lock = tmp_path / "images.lock"
    lock.write_text("not//a reference\n")

    code, _, err = await run_cli("verify", "--lock", str(lock), str(archive))

    assert code == 2
    assert f"{lock}:1:" in err


def test_lock_checks_accept_the_platform_default(tmp_path: Path) -> None:
    amd64 = MULTI.images[0]
    files = oci_files(amd64)
    files[blob_name(MULTI.digest)] = MULTI.manifest  # carried, as bulkpull does
    archive = write_tar(tmp_path / "x.tar", files)
    lock = tmp_path / "images.lock"
    lock.write_text(f"{NAME}@{MULTI.digest}\n")  # no platform=: linux/amd64

    result = bulkpull.verify_lock(lock, [bulkpull.verify_archive(archive)])

    assert result.ok, result.problems
