"""End-to-end pulls against the in-process fake registry: what is requested, what is written."""

from __future__ import annotations

import dataclasses
import json
import tarfile
from pathlib import Path

import pytest
from support import imagefactory as f
from support.fakeregistry import FakeCDN, FakeRegistry, Faults, Start, schema1_manifest

import bulkpull
from bulkpull import (
    AuthenticationError,
    Credentials,
    DigestMismatchError,
    NotFoundError,
    Platform,
    PlatformNotFoundError,
    PullOptions,
    UnsupportedMediaTypeError,
)

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def shared_images(count: int) -> tuple[f.Layer, list[f.Image]]:
    base = f.random_layer(200_000)
    images = [f.make_image([base, f.random_layer(10_000)], label=str(i)) for i in range(count)]
    return base, images


async def test_every_image_lands_in_its_own_verified_archive(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    _, images = shared_images(3)
    for i, image in enumerate(images):
        registry.add(f"team/app{i}", "v1", image)
    host = await start(registry.app())

    report = await bulkpull.pull_images(
        [f"{host}/team/app{i}:v1" for i in range(3)], tmp_path, options
    )

    assert report.ok
    for i, (image, result) in enumerate(zip(images, report.results, strict=True)):
        assert result.archive == tmp_path / f"127.0.0.1_{host.split(':')[1]}_team_app{i}_v1.tar"
        members = archive_members(result.archive)
        assert str(result.manifest_digest) == image.digest
        assert result.platform == Platform("linux", "amd64")
        for digest, blob in image.blobs.items():
            assert members[f"blobs/sha256/{digest.removeprefix('sha256:')}"] == blob
        docker = json.loads(members["manifest.json"])
        assert docker == [
            {
                "Config": f"blobs/sha256/{image.config_digest.removeprefix('sha256:')}",
                "RepoTags": [f"{host}/team/app{i}:v1"],
                "Layers": [f"blobs/sha256/{layer.digest[7:]}" for layer in image.layers],
            }
        ]
    assert not list(tmp_path.glob("*.partial"))


async def test_a_layer_shared_by_many_images_is_downloaded_once(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    base, images = shared_images(6)
    for i, image in enumerate(images):
        registry.add(f"team/app{i}", "v1", image)
    host = await start(registry.app())
    options = dataclasses.replace(options, jobs=6)

    report = await bulkpull.pull_images(
        [f"{host}/team/app{i}:v1" for i in range(6)], tmp_path, options
    )

    assert report.ok
    assert registry.count("GET", f"/blobs/{base.digest}") == 1
    for result in report.results:
        assert result.archive is not None
        assert f"blobs/sha256/{base.digest[7:]}" in archive_members(result.archive)


async def test_bearer_token_is_fetched_once_per_repository_with_credentials(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer", username="alice", password="s3cret")
    _, images = shared_images(3)
    registry.add("team/one", "a", images[0])
    registry.add("team/one", "b", images[1])
    registry.add("team/two", "a", images[2])
    host = await start(registry.app())
    options = dataclasses.replace(options, credentials=Credentials("alice", "s3cret"))

    report = await bulkpull.pull_images(
        [f"{host}/team/one:a", f"{host}/team/one:b", f"{host}/team/two:a"], tmp_path, options
    )

    assert report.ok, report.failed
    token_requests = [s for s in registry.seen if s.path == "/token"]
    assert sorted(s.query["scope"][0] for s in token_requests) == [
        "repository:team/one:pull",
        "repository:team/two:pull",
    ]
    assert all(s.query["service"] == ["fake-registry"] for s in token_requests)
    assert all(s.headers["Authorization"].startswith("Basic ") for s in token_requests)


async def test_refused_login_fails_the_image_with_the_reason(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer", username="alice", password="s3cret")
    registry.add("team/one", "a", f.make_image([f.random_layer(100)]))
    host = await start(registry.app())
    options = dataclasses.replace(options, credentials=Credentials("alice", "wrong"))

    result = await bulkpull.pull_image(f"{host}/team/one:a", tmp_path, options)

    assert isinstance(result.error, AuthenticationError)
    assert "401" in str(result.error)
    assert "wrong" not in str(result.error)
    assert registry.count("GET", "/token") == 1  # a refused login is not retried


async def test_basic_auth_registry_gets_credentials_on_every_request(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="basic", username="bob", password="pw")
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())

    anonymous = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path / "a", options)
    logged_in = await bulkpull.pull_image(
        f"{host}/x/y:1",
        tmp_path / "b",
        dataclasses.replace(options, credentials=Credentials("bob", "pw")),
    )

    assert isinstance(anonymous.error, AuthenticationError)
    assert logged_in.ok


async def test_redirected_blobs_reach_the_cdn_without_authorization(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer")
    image = f.make_image([f.random_layer(50_000), f.random_layer(60_000)])
    registry.add("x/y", "1", image)
    cdn = FakeCDN(registry)
    registry.cdn_url = "http://" + await start(cdn.app())
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error
    assert len(cdn.seen) == len(image.blobs)
    assert all("Authorization" not in seen.headers for seen in cdn.seen)
    blob_requests = [s for s in registry.seen if "/blobs/" in s.path]
    assert all(s.headers["Authorization"].startswith("Bearer ") for s in blob_requests)


async def test_one_missing_image_does_not_stop_the_others(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())

    report = await bulkpull.pull_images([f"{host}/x/y:1", f"{host}/x/y:2"], tmp_path, options)

    ok, missing = report.results
    assert ok.ok
    assert isinstance(missing.error, NotFoundError)
    assert "/v2/x/y/manifests/2: 404 MANIFEST_UNKNOWN: manifest unknown" in str(missing.error)
    assert report.failed == (missing,)


async def test_a_corrupt_blob_is_fetched_again_once_then_fails_with_both_digests(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(10_000)
    registry.add("x/y", "1", f.make_image([layer]))
    registry.faults[layer.digest] = Faults(corrupt_times=1)
    host = await start(registry.app())
    healed = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path / "a", options)

    registry.faults[layer.digest] = Faults(corrupt_times=2)
    broken = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path / "b", options)

    assert healed.ok
    assert registry.count("GET", f"/blobs/{layer.digest}") == 4
    assert isinstance(broken.error, DigestMismatchError)
    assert layer.digest in str(broken.error)
    assert broken.error.actual != layer.digest
    assert list((tmp_path / "b").iterdir()) == []  # not even a partial archive


async def test_manifest_bytes_must_match_the_digest_pulled_by(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(100)])
    registry.add("x/y", "1", image)
    other = f.make_image([f.random_layer(100)])
    registry.manifests[("x/y", other.digest)] = (image.manifest, image.media_type)
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y@{other.digest}", tmp_path, options)

    assert isinstance(result.error, DigestMismatchError)
    assert other.digest in str(result.error)


async def test_a_lying_docker_content_digest_is_refused(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(100)]))
    registry.content_digest_override = "sha256:" + "0" * 64
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert isinstance(result.error, DigestMismatchError)
    assert "Docker-Content-Digest" in str(result.error)


async def test_an_image_pulled_by_digest_is_named_after_its_digest(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(100)])
    registry.add("x/y", "1", image)
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y@{image.digest}", tmp_path, options)

    assert result.ok
    assert result.archive is not None
    tag = f"sha256-{image.digest[7:]}"
    manifest = json.loads(archive_members(result.archive)["manifest.json"])
    assert manifest[0]["RepoTags"] == [f"{host}/x/y:{tag}"]
    assert result.archive.name.endswith(f"_x_y_{tag}.tar")


async def test_schema1_manifests_are_refused_clearly(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.put_manifest("old/img", "1", *schema1_manifest())
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/old/img:1", tmp_path, options)

    assert isinstance(result.error, UnsupportedMediaTypeError)
    assert "schema1" in str(result.error) or "v1+prettyjws" in str(result.error)


@pytest.mark.parametrize(
    ("wanted", "expected_arch"),
    [("linux/amd64", "amd64"), ("linux/arm64", "arm64"), ("linux/aarch64", "arm64")],
)
async def test_an_index_resolves_to_the_wanted_platform_skipping_attestations(
    start: Start, options: PullOptions, tmp_path: Path, wanted: str, expected_arch: str
) -> None:
    registry = FakeRegistry()
    amd64 = f.make_image([f.random_layer(100)])
    arm64 = f.make_image([f.random_layer(100)], arch="arm64")
    registry.add("multi/img", "1", f.make_index([amd64, arm64], attestation=True))
    host = await start(registry.app())
    options = dataclasses.replace(options, platforms=(Platform.parse(wanted),))

    result = await bulkpull.pull_image(f"{host}/multi/img:1", tmp_path, options)

    chosen = amd64 if expected_arch == "amd64" else arm64
    assert result.ok, result.error
    assert str(result.manifest_digest) == chosen.digest
    assert result.platform == Platform("linux", expected_arch)


async def test_a_missing_platform_lists_what_the_index_has(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    images = [f.make_image([f.random_layer(100)], arch=a) for a in ("amd64", "arm64")]
    registry.add("multi/img", "1", f.make_index(images, attestation=True))
    host = await start(registry.app())
    options = dataclasses.replace(options, platforms=(Platform.parse("linux/s390x"),))

    result = await bulkpull.pull_image(f"{host}/multi/img:1", tmp_path, options)

    assert isinstance(result.error, PlatformNotFoundError)
    assert "linux/amd64, linux/arm64" in str(result.error)
    assert "unknown" not in str(result.error)


async def test_temporary_errors_are_retried_and_permanent_ones_are_not(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(1000)
    registry.add("x/y", "1", f.make_image([layer]))
    registry.faults[layer.digest] = Faults(statuses=[503, 429], retry_after="0")
    registry.faults["x/y:1"] = Faults(statuses=[500])
    host = await start(registry.app())
    options = dataclasses.replace(options, cache_dir=tmp_path / "cache")

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)
    missing = await bulkpull.pull_image(f"{host}/x/y:2", tmp_path, options)

    assert isinstance(missing.error, NotFoundError)

    assert result.ok, result.error
    assert registry.count("GET", f"/blobs/{layer.digest}") == 3
    # An empty store: the tag is fetched at once, and again after the 500.
    assert registry.count("HEAD", "/manifests/1") == 0
    assert registry.count("GET", "/manifests/1") == 2
    # The store now holds manifests, so a tag is asked for with HEAD first. A 404 is not
    # retried: the HEAD, then the GET that brings the registry's message.
    assert registry.count("HEAD", "/manifests/2") == 1
    assert registry.count("GET", "/manifests/2") == 1


async def test_a_download_cut_off_midway_resumes_from_the_bytes_kept(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(3_000_000)
    registry.add("x/y", "1", f.make_image([layer]))
    registry.faults[layer.digest] = Faults(reset_after=2_000_000)
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error
    ranges = [s.headers.get("Range") for s in registry.seen if s.path.endswith(layer.digest)]
    assert ranges[0] is None
    assert len(ranges) == 2
    assert ranges[1] is not None
    resumed_from = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_from <= 2_000_000


async def test_a_registry_that_ignores_range_still_yields_a_verified_blob(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(3_000_000)
    image = f.make_image([layer])
    registry.add("x/y", "1", image)
    registry.faults[layer.digest] = Faults(reset_after=2_000_000, ignore_range=True)
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error
    assert result.archive is not None
    members = archive_members(result.archive)
    assert members[f"blobs/sha256/{layer.digest[7:]}"] == layer.compressed


async def test_loopback_registries_are_reached_over_plain_http_without_a_flag(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(100)]))
    host = await start(registry.app())
    options = dataclasses.replace(options, plain_http=False)

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error


async def test_a_foreign_layer_missing_from_the_registry_comes_from_its_urls(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer")
    foreign = f.random_layer(20_000)
    image = f.make_image([f.random_layer(1000), foreign])
    elsewhere = FakeRegistry()
    elsewhere.blobs[foreign.digest] = foreign.compressed
    cdn = FakeCDN(elsewhere)
    cdn_host = await start(cdn.app())
    manifest = json.loads(image.manifest)
    manifest["layers"][1]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    manifest["layers"][1]["urls"] = [f"http://{cdn_host}/cdn/{foreign.digest}"]
    raw = json.dumps(manifest).encode()
    registry.put_manifest("x/y", "1", raw, image.media_type)
    registry.blobs.update({d: b for d, b in image.blobs.items() if d != foreign.digest})
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error
    assert registry.count("GET", f"/blobs/{foreign.digest}") == 1  # asked, and it said 404
    assert len(cdn.seen) == 1
    assert "Authorization" not in cdn.seen[0].headers
    assert result.archive is not None
    assert (
        archive_members(result.archive)[f"blobs/sha256/{foreign.digest[7:]}"] == foreign.compressed
    )


async def test_zstd_layers_are_carried_as_they_are_with_a_warning(
    start: Start, options: PullOptions, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
    raw = json.dumps(manifest).encode()
    registry.put_manifest("x/y", "1", raw, image.media_type)
    registry.blobs.update(image.blobs)
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error
    assert result.layers[0].media_type.endswith("+zstd")
    assert "zstd layers: Docker before 23.0 cannot load it" in caplog.text


async def test_a_string_is_refused_as_the_list_of_images_before_any_request(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    host = await start(registry.app())

    with pytest.raises(TypeError, match="not one string"):
        await bulkpull.pull_images(f"{host}/x/busybox:1", tmp_path, options)

    assert registry.seen == []


@pytest.mark.parametrize(
    ("lines", "platforms"),
    [
        pytest.param(["{host}/x/a_b:1", "{host}/x/a/b:1"], ["linux/amd64"], id="names-alike"),
        pytest.param(
            ["{host}/x/multi:oci", "{host}/x/other:1 {host}/x/multi:oci_linux_amd64"],
            ["linux/amd64", "linux/arm64"],
            id="renamed-onto-a-platform-archive",
        ),
    ],
)
async def test_images_that_would_write_one_archive_are_refused_before_any_request(
    start: Start, options: PullOptions, tmp_path: Path, lines: list[str], platforms: list[str]
) -> None:
    registry = FakeRegistry()
    host = await start(registry.app())
    specs = [bulkpull.image_spec(*line.format(host=host).split()) for line in lines]
    wanted = dataclasses.replace(options, platforms=tuple(map(Platform.parse, platforms)))

    with pytest.raises(bulkpull.ImageListError, match="would overwrite") as caught:
        await bulkpull.pull_images(specs, tmp_path, wanted)

    assert caught.value.source.startswith("image 2 (")
    assert registry.seen == []


async def test_an_image_given_twice_is_pulled_once_into_its_archive(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(500)])
    registry.add("x/app", "1", image)
    host = await start(registry.app())

    report = await bulkpull.pull_images([f"{host}/x/app:1"] * 2, tmp_path / "out", options)

    assert [result.ok for result in report.results] == [True]
    assert len(list((tmp_path / "out").iterdir())) == 1
    assert registry.count("GET", f"/blobs/{image.layers[0].digest}") == 1


async def test_images_whose_archive_names_would_collide_share_one_bundle(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(500)])
    for repository in ("x/a_b", "x/a/b"):
        registry.put_manifest(repository, "1", image.manifest, image.media_type)
    registry.blobs.update(image.blobs)
    host = await start(registry.app())
    bundle = bulkpull.Destination.bundle(tmp_path / "both.tar")

    report = await bulkpull.pull_images([f"{host}/x/a_b:1", f"{host}/x/a/b:1"], bundle, options)

    assert [result.ok for result in report.results] == [True, True]
    with tarfile.open(tmp_path / "both.tar") as archive:
        listed = archive.extractfile("manifest.json")
        assert listed is not None
        names = {image["RepoTags"][0] for image in json.load(listed)}
    assert names == {f"{host}/x/a_b:1", f"{host}/x/a/b:1"}


async def test_retries_are_events_naming_the_image_or_the_shared_blob(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    registry.add("x/y", "1", image)
    registry.faults["x/y:1"] = Faults(statuses=[503])
    registry.faults[image.layers[0].digest] = Faults(statuses=[503, 503])
    host = await start(registry.app())
    events: list[bulkpull.Event] = []

    report = await bulkpull.pull_images(
        [f"{host}/x/y:1"], tmp_path, options, on_event=events.append
    )

    retries = [event for event in events if isinstance(event, bulkpull.Retrying)]
    assert report.ok
    assert [(r.spec, r.digest, r.attempt, r.attempts) for r in retries] == [
        (report.results[0].spec, None, 1, 3),
        (None, bulkpull.Digest.parse(image.layers[0].digest), 1, 3),
        (None, bulkpull.Digest.parse(image.layers[0].digest), 2, 3),
    ]
    assert all("503" in str(r.error) and r.delay >= 0 for r in retries)


async def test_each_platform_of_an_image_has_stages_of_its_own(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    amd64 = f.make_image([f.random_layer(1000)], arch="amd64")
    arm64 = f.make_image([f.random_layer(1000)], arch="arm64")
    registry.add("x/multi", "1", f.make_index([amd64, arm64]))
    host = await start(registry.app())
    both = dataclasses.replace(options, platforms=(AMD64, ARM64))
    events: list[bulkpull.Event] = []

    await bulkpull.pull_images([f"{host}/x/multi:1"], tmp_path, both, on_event=events.append)

    stages = [
        (event.stage, event.platforms) for event in events if isinstance(event, bulkpull.ImageStage)
    ]
    # Each archive is written as its blobs download: no stage of writing apart.
    assert stages == [
        (bulkpull.Stage.RESOLVING, ()),
        (bulkpull.Stage.DOWNLOADING, (AMD64,)),
        (bulkpull.Stage.DOWNLOADING, (ARM64,)),
    ]
