"""Pushes into the fake registry: names, exact bytes, order, what is sent and what is not."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import tarfile
import time
from pathlib import Path

import pytest
from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Start
from support.fakeupload import FakeUploads

import bulkpull
from bulkpull import (
    ContentError,
    Destination,
    PushOptions,
    PushStatus,
    RegistryError,
    RetryPolicy,
    SourceError,
)

BASE = f.random_layer(300_000)
OCI = f.make_image([BASE, f.random_layer(20_000)], label="oci")
DOCKER = f.make_image([BASE, f.random_layer(20_000)], label="docker", docker_types=True)
INDEX = f.make_index(
    [
        f.make_image([BASE], arch="amd64", label="m-amd64"),
        f.make_image([BASE, f.random_layer(5_000)], arch="arm64", label="m-arm64"),
    ],
    attestation=True,
)
SET: dict[str, f.Image | f.Index] = {
    "docker.io/library/oci:1": OCI,
    "ghcr.io/team/docker:2.0": DOCKER,
    "quay.io/multi/arch:3": INDEX,
}


def push_options(tmp_path: Path, **fields: object) -> PushOptions:
    values: dict[str, object] = {
        "plain_http": True,
        "retry": RetryPolicy(retries=2, delay=0.0),
        "state_dir": tmp_path / "state",
        "chunk_size": 128 * 1024,
    }
    return PushOptions(**{**values, **fields})  # type: ignore[arg-type]


async def target(start: Start, tmp_path: Path, auth: str = "none") -> tuple[FakeUploads, str]:
    uploads = FakeUploads(FakeRegistry(auth=auth), tmp_path / "registry")
    return uploads, await start(uploads.app())


def layout(tmp_path: Path, images: dict[str, f.Image | f.Index] = SET) -> Path:
    directory = tmp_path / "layout"
    f.write_oci_layout(directory, images)
    return directory


def writes(uploads: FakeUploads) -> list[str]:
    return [
        f"{s.method} {s.path}"
        for s in uploads.registry.seen
        if s.method in ("POST", "PATCH", "PUT")
    ]


async def test_every_image_arrives_under_its_mapped_name_with_its_own_digest(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path)

    report = await bulkpull.push_images(
        [layout(tmp_path)], f"{host}/mirror", push_options(tmp_path)
    )

    assert report.ok, [str(r.error) for r in report.failed]
    served = uploads.registry.manifests
    assert served[("mirror/library/oci", "1")] == (OCI.manifest, f.OCI_MANIFEST)
    assert served[("mirror/team/docker", "2.0")] == (DOCKER.manifest, f.DOCKER_MANIFEST)
    assert served[("mirror/multi/arch", "3")] == (INDEX.manifest, f.OCI_INDEX)
    assert [str(r.spec.target) for r in report.results] == [
        f"{host}/mirror/library/oci:1",
        f"{host}/mirror/team/docker:2.0",
        f"{host}/mirror/multi/arch:3",
    ]
    assert {r.digest for r in report.results} == {
        bulkpull.Digest.parse(item.digest) for item in SET.values()
    }


async def test_children_go_before_their_index_and_the_tag_last(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path)

    await bulkpull.push_images([layout(tmp_path)], host, push_options(tmp_path))

    pushed = [ref for repo, ref, _ in uploads.pushed_manifests if repo == "multi/arch"]
    assert pushed[-1] == "3"
    assert sorted(pushed[:-1]) == sorted(child.digest for child in INDEX.children)
    blob_commits = [s.at for s in uploads.registry.seen if "/blobs/uploads/" in s.path]
    manifest_puts = [
        s.at for s in uploads.registry.seen if "/manifests/" in s.path and s.method == "PUT"
    ]
    assert max(blob_commits) <= min(manifest_puts)


async def test_a_shared_layer_is_uploaded_once_and_mounted_into_the_other_repositories(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path)

    report = await bulkpull.push_images([layout(tmp_path)], host, push_options(tmp_path))

    mounted = [(repo, source) for repo, digest, source in uploads.mounts if digest == BASE.digest]
    assert len(mounted) == 2
    assert report.blobs.mounted >= 2
    holders = [repo for repo, digests in uploads.linked.items() if BASE.digest in digests]
    assert sorted(holders) == ["library/oci", "multi/arch", "team/docker"]
    all_blobs = {d: b for item in SET.values() for d, b in item.blobs.items()}
    assert uploads.received == sum(len(blob) for blob in all_blobs.values())
    assert report.bytes_sent == uploads.received


async def test_a_second_push_over_a_complete_target_sends_nothing_and_rewrites_no_tag(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path)
    source = layout(tmp_path)
    await bulkpull.push_images([source], host, push_options(tmp_path))
    before = len(uploads.registry.seen)

    report = await bulkpull.push_images([source], host, push_options(tmp_path))

    assert [r.status for r in report.results] == [PushStatus.UP_TO_DATE] * 3
    again = uploads.registry.seen[before:]
    assert {s.method for s in again} <= {"GET", "HEAD"}
    assert report.bytes_sent == 0


async def test_a_dry_run_says_what_the_target_lacks_and_writes_nothing(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path)
    source = layout(tmp_path, {"docker.io/library/oci:1": OCI})
    uploads.link("library/oci", BASE.digest, len(BASE.compressed))

    report = await bulkpull.push_images([source], host, push_options(tmp_path), dry_run=True)

    (result,) = report.results
    assert result.status is PushStatus.MISSING
    assert result.missing == len(OCI.config) + len(OCI.layers[1].compressed)
    assert result.blobs.skipped == 1
    assert writes(uploads) == []


async def test_an_image_known_only_by_digest_is_pushed_by_digest_and_its_digest_tag(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path)
    source = layout(tmp_path, {f"docker.io/library/pinned@{OCI.digest}": OCI})

    report = await bulkpull.push_images([source], host, push_options(tmp_path))

    hexdigits = OCI.digest.removeprefix("sha256:")
    assert str(report.results[0].spec.target) == f"{host}/library/pinned:sha256-{hexdigits}"
    pushed = [ref for repo, ref, _ in uploads.pushed_manifests if repo == "library/pinned"]
    assert pushed == [OCI.digest, f"sha256-{hexdigits}"]


def docker_archive(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        data = json.dumps([{"Config": "c.json", "RepoTags": ["a:1"], "Layers": []}]).encode()
        member = tarfile.TarInfo("manifest.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return path


def renamed_layout(tmp_path: Path, annotations: dict[str, str]) -> Path:
    directory = layout(tmp_path, {"docker.io/library/oci:1": OCI})
    index = json.loads((directory / "index.json").read_bytes())
    index["manifests"][0]["annotations"] = annotations
    (directory / "index.json").write_text(json.dumps(index))
    return directory


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda tmp: docker_archive(tmp / "old.tar"),
            "docker archive without index.json",
            id="docker-archive-only",
        ),
        pytest.param(
            lambda tmp: _gzipped(docker_archive(tmp / "old.tar")),
            "gzip-compressed",
            id="compressed",
        ),
        pytest.param(lambda tmp: renamed_layout(tmp, {}), "has no name", id="no-name"),
        pytest.param(
            lambda tmp: renamed_layout(tmp, {"org.opencontainers.image.ref.name": "latest"}),
            "names only a tag",
            id="bare-tag",
        ),
        pytest.param(lambda tmp: tmp, "without index.json", id="empty-directory"),
        pytest.param(lambda tmp: tmp / "missing.tar", "cannot read it", id="missing"),
    ],
)
def test_a_source_that_cannot_be_pushed_is_refused_before_any_request(
    tmp_path: Path, make: object, message: str
) -> None:
    source = make(tmp_path)  # type: ignore[operator]

    with pytest.raises(SourceError, match=message):
        bulkpull.plan_push([source], "127.0.0.1:9")


def _gzipped(path: Path) -> Path:
    compressed = path.with_suffix(".tar.gz")
    compressed.write_bytes(gzip.compress(path.read_bytes()))
    return compressed


def test_two_images_claiming_one_target_name_are_refused(tmp_path: Path) -> None:
    first = layout(tmp_path / "a", {"docker.io/team/app:1": OCI})
    second = layout(tmp_path / "b", {"ghcr.io/team/app:1": DOCKER})

    with pytest.raises(SourceError, match="already claims"):
        bulkpull.plan_push([first, second], "127.0.0.1:9/mirror")


def test_the_same_image_from_two_sources_is_pushed_once(tmp_path: Path) -> None:
    first = layout(tmp_path / "a", {"docker.io/team/app:1": OCI})
    second = layout(tmp_path / "b", {"docker.io/team/app:1": OCI, "docker.io/x/y:2": DOCKER})

    plan = bulkpull.plan_push([first, second, first], "127.0.0.1:9")

    assert [str(spec.source) for spec in plan.images] == [
        "docker.io/team/app:1",
        "docker.io/x/y:2",
    ]


async def test_pulled_archives_and_bundles_push_back_to_the_same_digests(
    start: Start, tmp_path: Path
) -> None:
    origin = FakeRegistry()
    origin.add("team/oci", "1", OCI)
    origin.add("team/multi", "3", INDEX)
    source_host = await start(origin.app())
    names = [f"{source_host}/team/oci:1", f"{source_host}/team/multi:3"]
    pulled = bulkpull.PullOptions(plain_http=True, all_platforms=True)
    await bulkpull.pull_images(names, tmp_path / "out", pulled)
    await bulkpull.pull_images(names, Destination.bundle(tmp_path / "bundle.tar"), pulled)
    uploads, host = await target(start, tmp_path)
    archives = sorted((tmp_path / "out").glob("*.tar"))

    report = await bulkpull.push_images(
        [*archives, tmp_path / "bundle.tar"], f"{host}/site", push_options(tmp_path)
    )

    assert report.ok, [str(r.error) for r in report.failed]
    assert len(report.results) == 2
    served = uploads.registry.manifests
    assert served[("site/team/oci", "1")][0] == OCI.manifest
    assert served[("site/team/multi", "3")][0] == INDEX.manifest
    assert not any(s.method in ("POST", "PATCH", "PUT") for s in origin.seen)


async def test_a_bundle_named_through_a_link_is_pushed_from_the_file_it_leads_to(
    start: Start, tmp_path: Path
) -> None:
    origin = FakeRegistry()
    origin.add("team/oci", "1", OCI)
    source_host = await start(origin.app())
    bundle = Destination.bundle(tmp_path / "2026-12.tar")
    await bulkpull.pull_images(
        [f"{source_host}/team/oci:1"], bundle, bulkpull.PullOptions(plain_http=True)
    )
    (tmp_path / "current.tar").symlink_to("2026-12.tar")
    uploads, host = await target(start, tmp_path)

    report = await bulkpull.push_images(
        [tmp_path / "current.tar"], f"{host}/site", push_options(tmp_path)
    )

    assert report.ok, [str(r.error) for r in report.failed]
    assert uploads.registry.manifests[("site/team/oci", "1")][0] == OCI.manifest


async def test_an_image_that_fails_is_reported_with_the_digest_its_source_names(
    tmp_path: Path,
) -> None:
    options = push_options(tmp_path, retry=RetryPolicy(retries=0, delay=0.0))

    report = await bulkpull.push_images([layout(tmp_path)], "127.0.0.1:1/site", options)

    failed = {str(r.spec.target): r for r in report.failed}
    assert len(failed) == len(SET)
    assert str(failed["127.0.0.1:1/site/library/oci:1"].digest) == OCI.digest
    assert str(failed["127.0.0.1:1/site/multi/arch:3"].digest) == INDEX.digest
    images = json.loads(json.dumps(report.to_json()))["images"]
    assert all(image["digest"] is not None for image in images)


async def test_a_push_drops_state_records_a_week_old_at_most_once_a_day(
    start: Start, tmp_path: Path
) -> None:
    _, host = await target(start, tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    week_ago = time.time() - 8 * 24 * 3600
    old, new = state / "old.holder.json", state / "new.holder.json"
    for record in (old, new):
        record.write_text("{}")
    os.utime(old, (week_ago, week_ago))
    source = [layout(tmp_path)]

    assert (await bulkpull.push_images(source, f"{host}/site", push_options(tmp_path))).ok
    assert not old.exists()
    assert new.exists()
    old.write_text("{}")
    os.utime(old, (week_ago, week_ago))
    assert (await bulkpull.push_images(source, f"{host}/site", push_options(tmp_path))).ok
    assert old.exists()  # pruned less than a day ago


async def test_a_state_directory_that_is_a_file_is_named_in_a_warning_and_the_push_goes_on(
    start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, host = await target(start, tmp_path)
    state = tmp_path / "state"
    state.write_text("not a directory")

    with caplog.at_level(logging.WARNING, logger="bulkpull"):
        report = await bulkpull.push_images(
            [layout(tmp_path)], f"{host}/site", push_options(tmp_path, state_dir=state)
        )

    assert report.ok
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        f"state directory {state} cannot be used (a file is there): an upload cut off starts "
        "over, and processes sharing the directory do not meet over blobs"
    ]


async def test_one_platform_pulled_from_an_index_is_pushed_as_that_platforms_manifest(
    start: Start, tmp_path: Path
) -> None:
    origin = FakeRegistry()
    origin.add("team/multi", "3", INDEX)
    source_host = await start(origin.app())
    pulled = bulkpull.PullOptions(plain_http=True)
    await bulkpull.pull_images([f"{source_host}/team/multi:3"], tmp_path / "out", pulled)
    (archive,) = (tmp_path / "out").glob("*.tar")
    uploads, host = await target(start, tmp_path)

    report = await bulkpull.push_images([archive], host, push_options(tmp_path))

    (result,) = report.results
    assert result.ok, result.error
    assert result.digest == bulkpull.Digest.parse(INDEX.images[0].digest)
    assert uploads.registry.manifests[("team/multi", "3")][0] == INDEX.images[0].manifest


async def test_an_index_whose_manifests_did_not_all_travel_fails_with_the_reason(
    start: Start, tmp_path: Path
) -> None:
    source = layout(tmp_path, {"quay.io/multi/arch:3": INDEX})
    (source / "blobs" / "sha256" / INDEX.images[1].digest.removeprefix("sha256:")).unlink()
    uploads, host = await target(start, tmp_path)

    report = await bulkpull.push_images([source], host, push_options(tmp_path))

    (result,) = report.results
    assert isinstance(result.error, ContentError)
    assert "lists 4 manifests, and 1 of them" in str(result.error)
    assert writes(uploads) == []


async def test_an_upload_that_would_continue_at_another_host_is_refused(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path)
    uploads.faults.foreign_location = "http://127.0.0.2:9"

    report = await bulkpull.push_images(
        [layout(tmp_path, {"docker.io/library/oci:1": OCI})], host, push_options(tmp_path)
    )

    (result,) = report.results
    assert isinstance(result.error, ContentError)
    assert "writes only to the registry it was given" in str(result.error)


async def test_a_write_redirected_to_another_host_is_not_followed(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path)
    uploads.faults.redirect_patch_to = "http://127.0.0.2:9"
    big = f.make_image([f.random_layer(400_000)], label="big")

    report = await bulkpull.push_images(
        [layout(tmp_path, {"docker.io/library/big:1": big})], host, push_options(tmp_path)
    )

    (result,) = report.results
    assert isinstance(result.error, RegistryError)
    assert "redirects a write to http://127.0.0.2:9" in str(result.error)


async def test_pushes_ask_for_push_scopes_and_the_pull_of_a_mount_source(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await target(start, tmp_path, auth="bearer")

    report = await bulkpull.push_images([layout(tmp_path)], f"{host}/m", push_options(tmp_path))

    assert report.ok, [str(r.error) for r in report.failed]
    scopes = set(uploads.registry.tokens.values())
    assert frozenset({"repository:m/library/oci:pull,push"}) in scopes
    mounts = [s for s in scopes if len(s) == 2]
    assert mounts, scopes
    assert all(any(scope.endswith(":pull,push") for scope in s) for s in mounts)
    assert all(any(scope.endswith(":pull") and "push" not in scope for scope in s) for s in mounts)


async def test_the_report_names_target_digest_status_bytes_and_blobs(
    start: Start, tmp_path: Path
) -> None:
    _, host = await target(start, tmp_path)

    report = await bulkpull.push_images(
        [layout(tmp_path, {"docker.io/library/oci:1": OCI})], host, push_options(tmp_path)
    )

    document = json.loads(json.dumps(report.to_json()))
    (image,) = document["images"]
    assert image["target"] == f"{host}/library/oci:1"
    assert image["digest"] == OCI.digest
    assert image["status"] == "pushed"
    assert image["blobs_uploaded"] == 3
    assert image["bytes_uploaded"] == sum(len(b) for b in OCI.blobs.values())
    assert document["totals"]["pushed"] == 1
