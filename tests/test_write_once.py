"""Every byte written once: blobs land in the archives that hold them, no store is left beside
them unless ``--cache`` asks for one, a rerun takes what the output already holds, and several
outputs of one run share one download of each blob (counted at the registry)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start

import bulkpull
from bulkpull import Destination, PullOptions, Status

IMAGES = 4


@dataclasses.dataclass
class Served:
    registry: FakeRegistry
    host: str
    base: f.Layer
    images: list[f.Image]

    def names(self) -> list[str]:
        return [f"{self.host}/app/n{number}:1" for number in range(IMAGES)]

    def blob_gets(self) -> Counter[str]:
        """How often each blob was asked for (HEAD aside)."""
        return Counter(
            seen.path.rsplit("/", 1)[1]
            for seen in self.registry.seen
            if seen.method == "GET" and "/blobs/" in seen.path
        )


@pytest.fixture
async def served(start: Start) -> Served:
    """Images sharing a base layer, each with a layer of its own."""
    registry = FakeRegistry()
    base = f.random_layer(200_000)
    images = [f.make_image([base, f.random_layer(50_000)], label=str(n)) for n in range(IMAGES)]
    for number, image in enumerate(images):
        registry.add(f"app/n{number}", "1", image)
    return Served(registry, await start(registry.app()), base, images)


def every_blob(images: list[f.Image]) -> set[str]:
    return {digest for image in images for digest in image.blobs}


async def test_shared_blobs_are_downloaded_once_and_no_store_is_left_beside_the_archives(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    report = await bulkpull.pull_images(served.names(), out, options)

    assert report.ok, report.failed
    gets = served.blob_gets()
    assert set(gets) == every_blob(served.images)
    assert set(gets.values()) == {1}
    archives = sorted(out.iterdir())
    assert [path.suffix for path in archives] == [".tar"] * IMAGES  # nothing else, no store
    for archive in archives:
        assert bulkpull.verify_archive(archive).ok
    on_disk = sum(archive.stat().st_blocks * 512 for archive in archives)
    assert on_disk <= sum(archive.stat().st_size for archive in archives) * 1.02


async def test_archives_a_bundle_and_a_layout_in_one_run_fetch_each_blob_once(
    served: Served, tmp_path: Path
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{name}\n" for name in served.names()))
    out, bundle, layout = tmp_path / "out", tmp_path / "all.tar", tmp_path / "layout"

    code, text, err = await run_cli(
        str(listing), "-o", str(out), "--bundle", str(bundle), "--oci-layout", str(layout)
    )

    assert code == 0, err
    assert f"{IMAGES} images: {IMAGES} pulled, 0 failed" in text
    gets = served.blob_gets()
    assert set(gets) == every_blob(served.images)
    assert set(gets.values()) == {1}
    assert len(list(out.glob("*.tar"))) == IMAGES
    for archive in [*out.glob("*.tar"), bundle]:
        check = bulkpull.verify_archive(archive)
        assert check.ok, check.problems
    assert len(bulkpull.verify_archive(bundle).names) == IMAGES
    index = json.loads((layout / "index.json").read_bytes())
    assert len(index["manifests"]) == IMAGES
    assert {blob.name for blob in (layout / "blobs" / "sha256").iterdir()} >= {
        digest.removeprefix("sha256:") for digest in every_blob(served.images)
    }


async def test_a_rerun_over_unchanged_images_downloads_and_rewrites_nothing(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    await bulkpull.pull_images(served.names(), out, options)
    before = {path: path.stat() for path in out.iterdir()}
    served.registry.seen.clear()

    again = await bulkpull.pull_images(served.names(), out, options)

    assert again.count(Status.UP_TO_DATE) == IMAGES
    assert served.blob_gets() == Counter()
    assert again.bytes_downloaded == 0
    after = {path: path.stat() for path in out.iterdir()}
    assert {p: (s.st_ino, s.st_mtime_ns) for p, s in after.items()} == {
        p: (s.st_ino, s.st_mtime_ns) for p, s in before.items()
    }


async def test_a_moved_tag_takes_the_blobs_its_old_archive_holds_from_that_archive(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (first,) = [served.names()[0]]
    assert (await bulkpull.pull_images([first], out, options)).ok
    top = f.random_layer(50_000)
    moved = f.make_image([served.base, top], label="moved")
    served.registry.add("app/n0", "1", moved)
    served.registry.seen.clear()

    report = await bulkpull.pull_images([first], out, options)

    (result,) = report.results
    assert result.status is Status.PULLED
    assert served.blob_gets() == Counter({top.digest: 1, moved.config_digest: 1})
    (archive,) = out.iterdir()
    check = bulkpull.verify_archive(archive)
    assert check.ok, check.problems
    assert report.replaced  # the old image is said to be gone from the archive


async def test_a_cache_keeps_verified_blobs_for_the_next_run_into_another_output(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    cached = dataclasses.replace(options, cache_dir=tmp_path / "cache")
    first = await bulkpull.pull_images(served.names(), tmp_path / "a", cached)
    assert first.ok
    served.registry.seen.clear()

    second = await bulkpull.pull_images(
        served.names(), [Destination.bundle(tmp_path / "b" / "all.tar")], cached
    )

    assert second.ok, second.failed
    assert served.blob_gets() == Counter()
    assert second.bytes_downloaded == 0
    stored = {path.name for path in (tmp_path / "cache" / "sha256").iterdir()}
    assert {d.removeprefix("sha256:") for d in every_blob(served.images)} <= stored
    assert bulkpull.verify_archive(tmp_path / "b" / "all.tar").ok


async def test_a_new_image_takes_the_layers_other_archives_in_the_output_hold(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first, second = served.names()[:2]
    assert (await bulkpull.pull_images([first], out, options)).ok
    served.registry.seen.clear()

    report = await bulkpull.pull_images([second], out, options)

    assert report.ok, report.failed
    assert served.base.digest not in served.blob_gets()
    assert report.bytes_reused >= len(served.base.compressed)
    for archive in out.iterdir():
        assert bulkpull.verify_archive(archive).ok
