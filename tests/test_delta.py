"""Delta bundles and layouts (``--have``): what they leave out, what they record, what verify
and push make of them. Against the in-process fake registry; the real registries' turn is in
``tests/real/test_delta.py``."""

from __future__ import annotations

import dataclasses
import json
import tarfile
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start
from support.fakeupload import FakeUploads

import bulkpull
from bulkpull import Destination, DestinationError, PullOptions, PushOptions, PushStatus


class Lists:
    """List 1: ``app/one``. List 2 adds ``app/two`` over one's base layer, and ``app/one``
    again under another tag."""

    def __init__(self) -> None:
        self.base = f.random_layer(30_000)
        self.one = f.make_image([self.base, f.random_layer(1000)], label="one")
        self.two = f.make_image([self.base, f.random_layer(2000)], label="two")

    def serve(self, registry: FakeRegistry) -> None:
        registry.add("app/one", "1", self.one)
        registry.add("app/one", "stable", self.one)
        registry.add("app/two", "1", self.two)


L = TypeVar("L", bound=Lists)


async def serving(start: Start, lists: L) -> tuple[FakeRegistry, str, L]:
    """A source registry serving ``lists``, its address, and the lists."""
    registry = FakeRegistry()
    lists.serve(registry)
    return registry, await start(registry.app()), lists


@pytest.fixture
async def served(start: Start) -> tuple[FakeRegistry, str, Lists]:
    return await serving(start, Lists())


def tar_blobs(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    return {
        "sha256:" + name.rsplit("/", 1)[1] for name in names if name.startswith("blobs/sha256/")
    }


def tar_json(archive: Path, member: str) -> Any:
    with tarfile.open(archive) as tar:
        handle = tar.extractfile(member)
        assert handle is not None
        return json.loads(handle.read())


async def first_run(host: str, options: PullOptions, tmp_path: Path, image: str = "") -> Path:
    """List 1 (``app/one:1``, or ``image``) pulled into a bundle; its lock file."""
    report = await bulkpull.pull_images(
        [image or f"{host}/app/one:1"], Destination.bundle(tmp_path / "one.tar"), options
    )
    assert report.ok
    lock = tmp_path / "one.lock"
    lock.write_text("\n".join(report.lock_lines()) + "\n")
    return lock


async def delta_bundle(host: str, refs: list[str], options: PullOptions, tmp_path: Path) -> Path:
    """``refs`` pulled into a delta bundle against list 1's lock."""
    lock = await first_run(host, options, tmp_path)
    delta = tmp_path / "delta.tar"
    report = await bulkpull.pull_images(refs, Destination.bundle(delta), options, have=[lock])
    assert report.ok
    return delta


async def test_a_delta_bundle_leaves_out_every_blob_the_far_side_holds(
    served: tuple[FakeRegistry, str, Lists], options: PullOptions, tmp_path: Path
) -> None:
    registry, host, lists = served
    lock = await first_run(host, options, tmp_path)
    registry.seen.clear()
    delta = tmp_path / "delta.tar"
    refs = [f"{host}/app/one:1", f"{host}/app/one:stable", f"{host}/app/two:1"]

    report = await bulkpull.pull_images(refs, Destination.bundle(delta), options, have=[lock])

    assert report.ok
    held = tar_blobs(delta)
    assert not held & set(lists.one.blobs)
    assert held >= {lists.two.config_digest, lists.two.layers[1].digest}
    assert {lists.one.digest, lists.two.digest} <= held  # manifests stay in
    record = tar_json(delta, "bulkpull-delta.json")
    images = {item["name"]: item for item in record["images"]}
    two = images[f"{host}/app/two:1"]
    assert [blob["digest"] for blob in two["expected"]] == [lists.base.digest]
    assert two["expected"][0]["in"] == [f"{host}/app/one:1"]
    one = images[f"{host}/app/one:stable"]
    assert {blob["digest"] for blob in one["expected"]} == set(lists.one.blobs)
    assert report.delta is not None
    assert report.delta.blobs_left_out == len(lists.one.blobs)
    assert report.delta.bytes_left_out == sum(len(data) for data in lists.one.blobs.values())
    asked = [seen.path for seen in registry.seen if "/blobs/" in seen.path]
    assert not [path for path in asked if path.rsplit("/", 1)[1] in lists.one.blobs]


async def test_a_report_file_says_what_the_far_side_holds_without_asking_the_registry(
    served: tuple[FakeRegistry, str, Lists], options: PullOptions, tmp_path: Path
) -> None:
    registry, host, lists = served
    report = await bulkpull.pull_images(
        [f"{host}/app/one:1"], Destination.oci_layout(tmp_path / "one"), options
    )
    report_file = tmp_path / "one.json"
    report_file.write_text(json.dumps(report.to_json()))
    registry.seen.clear()
    layout = tmp_path / "delta"

    report = await bulkpull.pull_images(
        [f"{host}/app/two:1"], Destination.oci_layout(layout), options, have=[report_file]
    )

    assert report.ok
    assert not (layout / "blobs" / "sha256" / lists.base.digest.removeprefix("sha256:")).exists()
    assert (layout / "blobs" / "sha256" / lists.two.config_digest.removeprefix("sha256:")).exists()
    assert not any("app/one" in seen.path for seen in registry.seen)
    record = json.loads((layout / "bulkpull-delta.json").read_text())
    assert record["images"][0]["expected"][0]["digest"] == lists.base.digest


async def test_per_image_archives_cannot_be_a_delta(
    served: tuple[FakeRegistry, str, Lists], options: PullOptions, tmp_path: Path
) -> None:
    _, host, _ = served
    lock = await first_run(host, options, tmp_path)
    with pytest.raises(DestinationError, match="only a bundle or an OCI layout"):
        await bulkpull.pull_images([f"{host}/app/two:1"], tmp_path / "out", options, have=[lock])


async def test_a_file_that_says_nothing_of_what_the_far_side_holds_is_a_usage_error(
    tmp_path: Path,
) -> None:
    push_report = tmp_path / "push.json"
    push_report.write_text(json.dumps({"version": 1, "target": "b:5000", "images": []}))
    bundle = str(tmp_path / "d.tar")
    code, _, err = await run_cli("-i", "alpine", "--bundle", bundle, "--have", str(push_report))
    assert code == 2
    assert "push report lists no blobs" in err


async def test_verify_of_a_delta_checks_what_it_carries_and_lists_what_it_expects(
    served: tuple[FakeRegistry, str, Lists], options: PullOptions, tmp_path: Path
) -> None:
    _, host, lists = served
    delta = await delta_bundle(host, [f"{host}/app/one:1", f"{host}/app/two:1"], options, tmp_path)

    check = bulkpull.verify_archive(delta)
    code, out, _ = await run_cli("verify", str(delta))

    assert check.ok, check.problems
    assert check.expected is not None
    assert {blob.digest for blob in check.expected} == {
        bulkpull.Digest.parse(digest) for digest in lists.one.blobs
    }
    assert code == 0
    assert f"expects {lists.base.digest} (held by {host}/app/one:1)" in out
    assert "a delta for bulkpull push" in out


class Lonely(Lists):
    """Lists, and an image of its own that shares nothing with list 1."""

    def __init__(self) -> None:
        super().__init__()
        self.lonely = f.make_image([f.random_layer(3000)], label="lonely")

    def serve(self, registry: FakeRegistry) -> None:
        super().serve(registry)
        registry.add("app/lonely", "1", self.lonely)


async def delta_and_target(
    start: Start, options: PullOptions, tmp_path: Path
) -> tuple[Path, FakeUploads, str, Lonely]:
    """A delta of list 2 (and the lonely image) against list 1's lock, and an empty target."""
    _, host, lists = await serving(start, Lonely())
    delta = await delta_bundle(
        host, [f"{host}/app/two:1", f"{host}/app/lonely:1"], options, tmp_path
    )
    uploads = FakeUploads(FakeRegistry(), tmp_path / "target")
    return delta, uploads, await start(uploads.app()), lists


def push_options(tmp_path: Path) -> PushOptions:
    return PushOptions(plain_http=True, state_dir=tmp_path / "state")


async def test_an_image_whose_expected_blob_is_nowhere_fails_alone_and_writes_nothing(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    delta, uploads, target, lists = await delta_and_target(start, options, tmp_path)

    report = await bulkpull.push_images([delta], target, push_options(tmp_path))

    by_name = {result.spec.source.path: result for result in report.results}
    assert by_name["app/lonely"].status is PushStatus.PUSHED
    failed = by_name["app/two"]
    assert failed.status is PushStatus.FAILED
    assert lists.base.digest in str(failed.error)
    assert "the delta expects 1 blob" in str(failed.error)
    two_writes = [s for s in uploads.registry.seen if "app/two" in s.path and s.method != "HEAD"]
    assert two_writes == []


async def test_a_blob_held_by_the_have_image_is_mounted_from_its_repository(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    delta, uploads, target, lists = await delta_and_target(start, options, tmp_path)
    one = await bulkpull.push_images([tmp_path / "one.tar"], target, push_options(tmp_path))
    assert one.ok
    uploads.registry.seen.clear()

    dry = await bulkpull.push_images([delta], target, push_options(tmp_path), dry_run=True)
    report = await bulkpull.push_images([delta], target, push_options(tmp_path))

    assert dry.ok
    assert report.ok, [result.error for result in report.results]
    mounts = [s for s in uploads.registry.seen if "mount" in s.query]
    assert [(s.path, s.query["mount"], s.query["from"]) for s in mounts] == [
        ("/v2/app/two/blobs/uploads/", [lists.base.digest], ["app/one"])
    ]
    assert not [
        s
        for s in uploads.registry.seen
        if s.method in ("PATCH", "PUT") and lists.base.digest in str(s.query)
    ]
    mounted = next(result for result in report.results if result.spec.source.path == "app/two")
    assert mounted.blobs.mounted == 1


async def test_a_declined_mount_of_an_expected_blob_fails_and_closes_the_upload_it_opened(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    delta, uploads, target, _ = await delta_and_target(start, options, tmp_path)
    assert (await bulkpull.push_images([tmp_path / "one.tar"], target, push_options(tmp_path))).ok
    uploads.faults.decline_mounts = True
    uploads.registry.seen.clear()

    report = await bulkpull.push_images([delta], target, push_options(tmp_path))

    failed = next(result for result in report.results if result.spec.source.path == "app/two")
    assert "declined to mount" in str(failed.error)
    two = [
        s.method for s in uploads.registry.seen if s.path.startswith("/v2/app/two/blobs/uploads/")
    ]
    assert two == ["POST", "DELETE"]
    assert uploads.sessions == {}


async def test_a_rerun_leaves_the_same_delta_alone_and_a_full_run_completes_it(
    served: tuple[FakeRegistry, str, Lists], options: PullOptions, tmp_path: Path
) -> None:
    _, host, lists = served
    refs = [f"{host}/app/two:1"]
    delta = await delta_bundle(host, refs, options, tmp_path)
    lock = tmp_path / "one.lock"

    again = await bulkpull.pull_images(refs, Destination.bundle(delta), options, have=[lock])
    full = await bulkpull.pull_images(refs, Destination.bundle(delta), options)

    assert [result.status.value for result in again.results] == ["up-to-date"]
    assert [result.status.value for result in full.results] == ["pulled"]
    assert full.delta is None
    assert lists.base.digest in tar_blobs(delta)
    assert bulkpull.verify_archive(delta).expected is None
    with tarfile.open(delta) as tar:
        assert "manifest.json" in tar.getnames()


async def test_a_layout_keeps_the_record_of_each_image_as_later_runs_add_to_it(
    served: tuple[FakeRegistry, str, Lists], options: PullOptions, tmp_path: Path
) -> None:
    _, host, lists = served
    lock = await first_run(host, options, tmp_path)
    layout = Destination.oci_layout(tmp_path / "layout")
    await bulkpull.pull_images([f"{host}/app/two:1"], layout, options, have=[lock])

    await bulkpull.pull_images([f"{host}/app/one:stable"], layout, options, have=[lock])

    record = json.loads((tmp_path / "layout" / "bulkpull-delta.json").read_text())
    names = [item["name"] for item in record["images"]]
    assert names == [f"{host}/app/one:stable", f"{host}/app/two:1"]
    check = bulkpull.verify_archive(tmp_path / "layout")
    assert check.ok, check.problems
    assert check.expected is not None
    assert {str(blob.digest) for blob in check.expected} == set(lists.one.blobs)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["-o", "{tmp}/out"], "only a bundle or an OCI layout"),
        ([], "only a bundle or an OCI layout"),  # -o bundles, the default
        (["--bundle", "{tmp}/d.tar", "--dry-run"], "--dry-run writes nothing"),
    ],
)
async def test_have_where_no_delta_can_be_written_is_a_usage_error(
    served: tuple[FakeRegistry, str, Lists],
    options: PullOptions,
    tmp_path: Path,
    flags: list[str],
    said: str,
) -> None:
    _, host, _ = served
    lock = await first_run(host, options, tmp_path)
    args = ["-i", f"{host}/app/two:1", "--plain-http", "--have", str(lock)]

    code, _, err = await run_cli(*args, *[flag.format(tmp=tmp_path) for flag in flags])

    assert code == 2, err
    assert said in err


async def test_a_layout_whose_delta_record_is_broken_fails_its_images_and_keeps_the_file(
    served: tuple[FakeRegistry, str, Lists], options: PullOptions, tmp_path: Path
) -> None:
    _, host, _ = served
    lock = await first_run(host, options, tmp_path)
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "bulkpull-delta.json").write_text('{"version": 7}')

    report = await bulkpull.pull_images(
        [f"{host}/app/two:1"], Destination.oci_layout(layout), options, have=[lock]
    )

    assert [result.status.value for result in report.results] == ["failed"]
    assert "bulkpull-delta.json" in str(report.results[0].error)
    assert (layout / "bulkpull-delta.json").read_text() == '{"version": 7}'


async def test_with_a_cache_the_lock_is_resolved_from_the_manifests_kept_there(
    served: tuple[FakeRegistry, str, Lists], options: PullOptions, tmp_path: Path
) -> None:
    registry, host, _ = served
    cached = dataclasses.replace(options, cache_dir=tmp_path / "cache")
    lock = await first_run(host, cached, tmp_path)
    registry.seen.clear()

    report = await bulkpull.pull_images(
        [f"{host}/app/two:1"], Destination.bundle(tmp_path / "d.tar"), cached, have=[lock]
    )

    assert report.ok
    assert not [seen for seen in registry.seen if "/app/one/" in seen.path]


async def test_an_index_kept_whole_is_left_out_to_its_manifests(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    amd64 = f.make_image([f.random_layer(1000)], label="amd64")
    arm64 = f.make_image([f.random_layer(1000)], arch="arm64", label="arm64")
    index = f.make_index([amd64, arm64])
    registry.add("app/multi", "1", index)
    registry.add("app/multi", "latest", index)
    host = await start(registry.app())
    every = dataclasses.replace(options, all_platforms=True)
    lock = await first_run(host, every, tmp_path, f"{host}/app/multi:1")
    delta = tmp_path / "delta.tar"

    report = await bulkpull.pull_images(
        [f"{host}/app/multi:latest"], Destination.bundle(delta), every, have=[lock]
    )

    assert report.ok
    held = tar_blobs(delta)
    assert {index.digest, amd64.digest, arm64.digest} <= held
    assert not held & (set(amd64.blobs) | set(arm64.blobs))
    check = bulkpull.verify_archive(delta)
    assert check.ok, check.problems
