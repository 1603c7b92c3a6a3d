"""Outputs beyond one archive per image: bundles, OCI layouts, platforms, reruns, verify."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start

import bulkpull
from bulkpull import Destination, Platform, PullOptions
from bulkpull.output import read_source

ARM64 = Platform("linux", "arm64")
AMD64 = Platform("linux", "amd64")


def read_json(archive: Path, member: str) -> object:
    with tarfile.open(archive) as tar:
        handle = tar.extractfile(member)
        assert handle is not None
        return json.loads(handle.read())


def members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


class Images:
    """Two single-platform images sharing a base layer, and a two-platform index."""

    def __init__(self) -> None:
        base = f.random_layer(30_000)
        self.one = f.make_image([base, f.random_layer(1000)], label="one")
        self.two = f.make_image([base, f.random_layer(1000)], label="two", docker_types=True)
        self.amd64 = f.make_image([f.random_layer(1000)])
        self.arm64 = f.make_image([f.random_layer(1000)], arch="arm64")
        self.index = f.make_index([self.amd64, self.arm64], attestation=True)
        self.base = base

    def serve(self, registry: FakeRegistry) -> None:
        registry.add("app/one", "1", self.one)
        registry.add("app/two", "1", self.two)
        registry.add("app/multi", "1", self.index)


@pytest.fixture
async def served(start: Start) -> tuple[FakeRegistry, str, Images]:
    registry = FakeRegistry()
    images = Images()
    images.serve(registry)
    return registry, await start(registry.app()), images


async def test_a_bundle_holds_every_image_with_each_blob_once(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    _, host, images = served
    bundle = tmp_path / "all.tar"
    refs = [f"{host}/app/one:1", f"{host}/app/two:1", f"{host}/app/multi:1"]

    report = await bulkpull.pull_images(refs, Destination.bundle(bundle), options)

    assert report.ok, report.failed
    assert {r.archive for r in report.results} == {bundle}
    names = members(bundle)
    assert names.count(f"blobs/sha256/{images.base.digest[7:]}") == 1
    docker = read_json(bundle, "manifest.json")
    assert isinstance(docker, list)
    assert sorted(tag for item in docker for tag in item["RepoTags"]) == sorted(refs)
    index = read_json(bundle, "index.json")
    assert isinstance(index, dict)
    entries = {e["annotations"]["io.containerd.image.name"]: e for e in index["manifests"]}
    assert set(entries) == set(refs)
    assert all("platform" not in entry for entry in entries.values())
    assert entries[refs[0]]["annotations"]["org.opencontainers.image.ref.name"] == refs[0]
    # One platform pulled from a two-platform index: the entry is that platform's manifest.
    assert entries[refs[2]]["digest"] == images.amd64.digest
    assert bulkpull.verify_archive(bundle).ok


async def test_several_platforms_give_one_archive_each_named_after_the_platform(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    _, host, images = served
    spec = bulkpull.image_spec(f"{host}/app/multi:1")
    spec = dataclasses.replace(spec, platforms=(AMD64, ARM64))

    report = await bulkpull.pull_images([spec], tmp_path, options)

    assert report.ok, report.failed
    amd, arm = report.results
    assert (amd.platform, arm.platform) == (AMD64, ARM64)
    assert str(amd.manifest_digest) == images.amd64.digest
    assert str(arm.manifest_digest) == images.arm64.digest
    assert amd.archive is not None
    assert amd.archive.name.endswith("_app_multi_1_linux_amd64.tar")
    assert arm.archive is not None
    assert arm.archive.name.endswith("_app_multi_1_linux_arm64.tar")


async def test_a_bundle_keeps_every_requested_platform_of_an_index(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    _, host, images = served
    options = dataclasses.replace(options, platforms=(ARM64, AMD64))
    bundle = tmp_path / "multi.tar"

    report = await bulkpull.pull_images(
        [f"{host}/app/multi:1"], Destination.bundle(bundle), options
    )

    assert report.ok, report.failed
    index = read_json(bundle, "index.json")
    assert isinstance(index, dict)
    (entry,) = index["manifests"]
    # Every platform entry was pulled, but the attestation was not: it is left out.
    narrowed = read_json(bundle, f"blobs/sha256/{entry['digest'][7:]}")
    assert isinstance(narrowed, dict)
    assert [m["digest"] for m in narrowed["manifests"]] == [
        images.amd64.digest,
        images.arm64.digest,
    ]
    docker = read_json(bundle, "manifest.json")
    assert isinstance(docker, list)
    # docker load can tag one image per name: it gets the first platform asked for.
    assert docker[0]["Config"] == f"blobs/sha256/{images.arm64.config_digest[7:]}"
    assert bulkpull.verify_archive(bundle).ok


async def test_an_oci_layout_is_created_then_added_to(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    _, host, images = served
    layout = tmp_path / "layout"

    first = await bulkpull.pull_images(
        [f"{host}/app/one:1"], Destination.oci_layout(layout), options
    )
    second = await bulkpull.pull_images(
        [f"{host}/app/two:1"], Destination.oci_layout(layout), options
    )

    assert first.ok
    assert second.ok
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    refs = [e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]]
    assert refs == [f"{host}/app/one:1", f"{host}/app/two:1"]
    for image in (images.one, images.two):
        for digest, blob in image.blobs.items():
            assert (layout / "blobs" / "sha256" / digest[7:]).read_bytes() == blob
    assert not list((layout / "blobs" / "sha256").glob("*.partial"))


async def test_a_rerun_leaves_unchanged_archives_alone_and_force_rewrites(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    registry, host, images = served
    ref = f"{host}/app/one:1"
    first = await bulkpull.pull_image(ref, tmp_path, options)
    assert first.archive is not None
    written = first.archive.stat().st_mtime_ns
    blob_gets = registry.count("GET", images.base.digest)

    again = await bulkpull.pull_image(ref, tmp_path, options)
    forced = await bulkpull.pull_image(ref, tmp_path, dataclasses.replace(options, force=True))

    assert again.up_to_date
    assert not first.up_to_date
    assert not forced.up_to_date
    assert registry.count("GET", images.base.digest) == blob_gets  # the store served them
    assert forced.archive is not None
    assert forced.archive.stat().st_mtime_ns != written


async def test_a_moved_tag_replaces_the_archive(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    registry, host, images = served
    ref = f"{host}/app/one:1"
    await bulkpull.pull_image(ref, tmp_path, options)
    registry.add("app/one", "1", images.two)

    moved = await bulkpull.pull_image(ref, tmp_path, options)

    assert moved.ok
    assert not moved.up_to_date
    assert str(moved.manifest_digest) == images.two.digest
    assert moved.archive is not None
    index = read_json(moved.archive, "index.json")
    assert isinstance(index, dict)
    assert index["manifests"][0]["digest"] == images.two.digest


async def test_a_list_line_can_choose_its_own_platform(
    served: tuple[FakeRegistry, str, Images], tmp_path: Path
) -> None:
    _, host, images = served
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/app/multi:1 platform=linux/arm64\n")

    code, out, err = await run_cli(str(listing), "-o", str(tmp_path / "out"), "--plain-http")

    assert code == 0, err
    assert "linux/arm64" in out
    assert images.arm64.digest[:19] in out


async def test_verify_passes_a_good_archive_and_names_a_corrupt_blob(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    _, host, images = served
    result = await bulkpull.pull_image(f"{host}/app/one:1", tmp_path, options)
    assert result.archive is not None
    good = result.archive
    bad = tmp_path / "bad.tar"
    data = bytearray(good.read_bytes())
    layer = images.one.layers[1].compressed
    at = data.find(layer)
    data[at + 100] ^= 0xFF
    bad.write_bytes(bytes(data))

    ok = await run_cli("verify", str(good))
    broken = await run_cli("verify", str(good), str(bad))

    assert ok[0] == 0, ok
    assert f"ok      {good}" in ok[1]
    assert broken[0] == 1
    assert f"FAILED  {bad}: blobs/sha256/{images.one.layers[1].digest[7:]}" in broken[1]


def test_verify_names_a_layer_count_that_differs_from_the_diff_ids(tmp_path: Path) -> None:
    image = f.make_image([f.random_layer(100)])
    archive = tmp_path / "x.tar"
    manifest = [
        {
            "Config": f"blobs/sha256/{image.config_digest[7:]}",
            "RepoTags": ["x:1"],
            "Layers": [],
        }
    ]
    with tarfile.open(archive, "w") as tar:
        for name, data in (
            (f"blobs/sha256/{image.config_digest[7:]}", image.config),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    check = bulkpull.verify_archive(archive)

    assert not check.ok
    assert "0 layers but 1 rootfs.diff_ids" in " ".join(check.problems)


async def test_platforms_given_for_the_whole_run_name_each_archive(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    _, host, images = served
    options = dataclasses.replace(options, platforms=(AMD64, ARM64))

    report = await bulkpull.pull_images([f"{host}/app/multi:1"], tmp_path, options)

    assert report.ok, report.failed
    names = sorted(r.archive.name for r in report.results if r.archive is not None)
    assert [n.rsplit("_app_multi_1_", 1)[1] for n in names] == [
        "linux_amd64.tar",
        "linux_arm64.tar",
    ]
    assert {str(r.manifest_digest) for r in report.results} == {
        images.amd64.digest,
        images.arm64.digest,
    }
    # Each archive names its platform's manifest: no index is made up.
    assert all(r.written_digest == r.manifest_digest for r in report.results)
    assert not any(r.narrowed for r in report.results)


async def test_a_bundle_written_over_another_says_which_images_it_replaced(
    served: tuple[FakeRegistry, str, Images], tmp_path: Path
) -> None:
    registry, host, images = served
    bundle = tmp_path / "all.tar"
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/app/one:1\n{host}/app/two:1\n")
    report = tmp_path / "report.json"
    first = await run_cli(str(listing), "--bundle", str(bundle), "--report", str(report))
    assert first[0] == 0, first
    assert json.loads(report.read_text())["replaced"] == []
    registry.add("app/one", "1", images.amd64)  # the tag moved
    listing.write_text(f"{host}/app/one:1\n{host}/app/multi:1\n")  # and app/two left the list

    code, out, err = await run_cli(str(listing), "--bundle", str(bundle), "--report", str(report))

    assert code == 0, err
    one, two = f"{host}/app/one:1", f"{host}/app/two:1"
    assert json.loads(report.read_text())["replaced"] == [
        {"name": one, "digest": images.one.digest, "archive": str(bundle)},
        {"name": two, "digest": images.two.digest, "archive": str(bundle)},
    ]
    short = [image.digest[:19] for image in (images.one, images.two)]
    assert f"replaced in {bundle}: {one} ({short[0]}), {two} ({short[1]})" in out
    assert sorted(bulkpull.verify_archive(bundle).names) == sorted([one, f"{host}/app/multi:1"])


async def test_a_moved_tag_names_the_replaced_archive_in_the_report(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    registry, host, images = served
    ref = f"{host}/app/one:1"
    first = await bulkpull.pull_images([ref], tmp_path, options)
    forced = await bulkpull.pull_images([ref], tmp_path, dataclasses.replace(options, force=True))
    registry.add("app/one", "1", images.two)

    moved = await bulkpull.pull_images([ref], tmp_path, options)

    assert first.replaced == forced.replaced == ()  # the same image written again replaces none
    (archive,) = {result.archive for result in moved.results}
    assert archive is not None
    assert moved.replaced == (
        bulkpull.ReplacedImage(ref, bulkpull.Digest.parse(images.one.digest), archive),
    )


async def test_every_blob_reads_back_out_of_an_archive_a_bundle_and_a_layout(
    served: tuple[FakeRegistry, str, Images], options: PullOptions, tmp_path: Path
) -> None:
    _, host, images = served
    refs = [f"{host}/app/one:1", f"{host}/app/two:1"]
    single = await bulkpull.pull_image(refs[0], tmp_path / "single", options)
    await bulkpull.pull_images(refs, Destination.bundle(tmp_path / "all.tar"), options)
    await bulkpull.pull_images(refs, Destination.oci_layout(tmp_path / "layout"), options)
    assert single.archive is not None
    sources = {
        single.archive: images.one.blobs,
        tmp_path / "all.tar": images.one.blobs | images.two.blobs,
        tmp_path / "layout": images.one.blobs | images.two.blobs,
    }

    for path, blobs in sources.items():
        source = read_source(path)
        for digest, blob in blobs.items():
            assert source.read(bulkpull.Digest.parse(digest), len(blob)) == blob, (path, digest)
    assert read_source(single.archive).place(bulkpull.Digest.of(b"absent")) is None


async def test_an_out_dir_set_in_the_environment_stands_for_the_default_not_beside_a_bundle(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    env = {"BULKPULL_OUT_DIR": str(tmp_path / "archives")}
    bundle = tmp_path / "offline.tar"

    image = f"{host}/x/y:1"
    bundled = await run_cli("-i", image, "--bundle", str(bundle), env=env)
    bundle_written = bundle.is_file()
    split = await run_cli("-i", image, "--bundle", str(bundle), "--split", "1MiB", env=env)
    archives_beside_the_bundle = (tmp_path / "archives").exists()
    default = await run_cli("-i", image, env=env)

    assert bundled[0] == 0, bundled[2]
    assert split[0] == 0, split[2]
    assert bundle_written
    assert not archives_beside_the_bundle
    assert default[0] == 0, default[2]
    assert [p.name for p in (tmp_path / "archives").iterdir()] == [
        f"127.0.0.1_{host.split(':')[1]}_x_y_1.tar"
    ]
