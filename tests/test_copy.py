"""Where a copy (``bulkpull LIST --to``) puts each image of a list, and what it refuses before
any request: the push's naming rule, a line's new name standing for the image's name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import interrupt_once, run_cli
from support.fakeregistry import FakeRegistry, Faults, Start
from support.fakeupload import FakeUploads

import bulkpull
from bulkpull import ImageListError, PullOptions, PushOptions, PushReport, PushStatus, RetryPolicy

TARGET = "internal:5000/mirror"


def targets(*lines: str) -> list[str]:
    specs = bulkpull.parse_image_list(lines, "images.txt")
    return [str(spec.target) for spec in bulkpull.copy_plan(specs, TARGET)]


def test_an_image_goes_below_the_namespace_under_its_own_path_and_tag() -> None:
    assert targets("alpine:3.20", "ghcr.io/team/app:1.4") == [
        "internal:5000/mirror/library/alpine:3.20",
        "internal:5000/mirror/team/app:1.4",
    ]


def test_a_new_name_on_the_line_gives_the_target_repository_and_tag() -> None:
    assert targets("alpine:3.20 base/alpine:stable", "busybox:1.36 internal:5000/tools/bb:1") == [
        "internal:5000/mirror/base/alpine:stable",
        "internal:5000/tools/bb:1",
    ]


def test_an_image_known_by_digest_gets_the_digest_tag() -> None:
    digest = "sha256:" + "ab" * 32
    assert targets(f"busybox@{digest}") == [
        f"internal:5000/mirror/library/busybox:sha256-{'ab' * 32}"
    ]


def test_the_same_image_given_twice_is_copied_once() -> None:
    specs = [
        bulkpull.image_spec("alpine:3.20", origin="-i"),
        bulkpull.image_spec("docker.io/library/alpine:3.20", origin="-i"),
    ]

    planned = bulkpull.copy_plan(specs, TARGET)

    assert [str(spec.target) for spec in planned] == ["internal:5000/mirror/library/alpine:3.20"]


def test_two_images_landing_on_one_target_name_are_refused_at_the_later_line() -> None:
    with pytest.raises(ImageListError) as refused:
        targets("alpine:3.20", "quay.io/library/alpine:3.20")

    assert str(refused.value).startswith("images.txt:2: ")
    assert "internal:5000/mirror/library/alpine:3.20" in str(refused.value)
    assert "is already the name of line 1" in str(refused.value)


def test_mapping_is_the_same_when_applied_twice() -> None:
    specs = bulkpull.parse_image_list(["alpine:3.20 base/alpine:stable"], "images.txt")
    once = bulkpull.copy_plan(specs, TARGET)

    assert bulkpull.copy_plan(once, TARGET) == once


async def test_the_command_line_refuses_a_copy_it_cannot_make_before_any_request(
    tmp_path: Path,
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("alpine:3.20\nquay.io/library/alpine:3.20\n")

    clash = await run_cli(str(listing), "--to", TARGET)
    with_bundle = await run_cli(str(listing), "--to", TARGET, "--bundle", str(tmp_path / "b.tar"))
    not_a_registry = await run_cli(str(listing), "--to", "mirror/library")

    assert clash[0] == 2
    assert f"{listing}:2: " in clash[2]
    assert with_bundle[0] == 2
    assert "--bundle" in with_bundle[2]
    assert not_a_registry[0] == 2
    assert "not a registry host" in not_a_registry[2]


# --------------------------------------------------------------------------------------------
# Copies between fake registries: what is asked of each end.

BASE = f.random_layer(200_000)
ONE = f.make_image([BASE, f.random_layer(10_000)], label="one")
MULTI = f.make_index(
    [
        f.make_image([BASE], arch="amd64", label="multi-amd64"),
        f.make_image([BASE, f.random_layer(4_000)], arch="arm64", label="multi-arm64"),
        f.make_image([f.random_layer(3_000)], arch="s390x", label="multi-s390x"),
    ]
)


async def registries(start: Start, tmp_path: Path) -> tuple[FakeRegistry, str, FakeUploads, str]:
    source = FakeRegistry()
    source.add("team/one", "1", ONE)
    source.add("team/multi", "2", MULTI)
    uploads = FakeUploads(FakeRegistry(), tmp_path / "target")
    return source, await start(source.app()), uploads, await start(uploads.app())


def copy_options(tmp_path: Path, **fields: object) -> tuple[PullOptions, PushOptions]:
    pull = PullOptions(
        plain_http=True,
        retry=RetryPolicy(retries=1, delay=0.0),
        cache_dir=tmp_path / "store",
        **fields,  # type: ignore[arg-type]
    )
    return pull, PushOptions.from_pull(pull, state_dir=tmp_path / "state")


async def copied(
    source: str, target: str, tmp_path: Path, *lines: str, **fields: object
) -> PushReport:
    pull, push = copy_options(tmp_path, **fields)
    specs = bulkpull.parse_image_list([f"{source}/{line}" for line in lines], "images.txt")
    return await bulkpull.copy_images(specs, target, pull, push=push)


async def test_one_platform_of_an_index_arrives_as_its_manifest_and_a_rerun_gets_nothing(
    start: Start, tmp_path: Path
) -> None:
    source, source_host, uploads, target_host = await registries(start, tmp_path)

    first = await copied(source_host, target_host, tmp_path, "team/multi:2")
    gets_before = source.count("GET", "/manifests/2") + source.count(
        "GET", f"/manifests/{MULTI.digest}"
    )
    second = await copied(source_host, target_host, tmp_path, "team/multi:2")

    assert [r.status for r in first.results] == [PushStatus.PUSHED]
    amd64 = MULTI.children[0]
    assert uploads.registry.manifests[("team/multi", "2")] == (amd64.manifest, f.OCI_MANIFEST)
    assert [r.status for r in second.results] == [PushStatus.UP_TO_DATE]
    # The index and its child were read from the store: no manifest GET went to the source.
    assert (
        source.count("GET", "/manifests/2") + source.count("GET", f"/manifests/{MULTI.digest}")
        == gets_before
    )
    assert source.count("GET", f"/manifests/{amd64.digest}") == 1
    assert second.blobs.uploaded == 0


async def test_a_source_whose_head_names_no_digest_is_resolved_by_get_and_found_up_to_date(
    start: Start, tmp_path: Path
) -> None:
    source, source_host, uploads, target_host = await registries(start, tmp_path)
    source.omit_content_digest = True

    await copied(source_host, target_host, tmp_path, "team/one:1")
    rerun = await copied(source_host, target_host, tmp_path, "team/one:1")

    assert [r.status for r in rerun.results] == [PushStatus.UP_TO_DATE]
    assert uploads.registry.manifests[("team/one", "1")] == (ONE.manifest, f.OCI_MANIFEST)
    assert rerun.bytes_sent == 0


async def test_an_image_the_source_lacks_fails_alone_naming_it(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, uploads, target_host = await registries(start, tmp_path)

    report = await copied(source_host, target_host, tmp_path, "team/gone:1", "team/one:1")

    gone, one = report.results
    assert gone.status is PushStatus.FAILED
    assert "team/gone" in str(gone.error)
    assert one.status is PushStatus.PUSHED
    assert ("team/gone", "1") not in uploads.registry.manifests


async def test_two_platforms_of_an_index_arrive_as_a_narrowed_index_the_result_names(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, uploads, target_host = await registries(start, tmp_path)

    report = await copied(
        source_host, target_host, tmp_path, "team/multi:2 platform=linux/amd64,linux/arm64"
    )

    (result,) = report.results
    assert result.ok, result.error
    assert result.narrowed == (2, 3)
    raw, media_type = uploads.registry.manifests[("team/multi", "2")]
    assert (f.sha256(raw), media_type) == (str(result.digest), f.OCI_INDEX)
    listed = [entry["digest"] for entry in json.loads(raw)["manifests"]]
    assert listed == [child.digest for child in MULTI.children[:2]]
    assert all(("team/multi", digest) in uploads.registry.manifests for digest in listed)
    assert result.to_json()["narrowed"] == {"kept": 2, "listed": 3}


async def test_every_platform_of_an_index_keeps_its_digest(start: Start, tmp_path: Path) -> None:
    _, source_host, uploads, target_host = await registries(start, tmp_path)

    report = await copied(source_host, target_host, tmp_path, "team/multi:2 platform=all")

    (result,) = report.results
    assert (result.status, result.narrowed) == (PushStatus.PUSHED, None)
    assert uploads.registry.manifests[("team/multi", "2")] == (MULTI.manifest, f.OCI_INDEX)


async def test_lines_whose_archive_names_would_collide_are_both_copied_by_the_command(
    start: Start, tmp_path: Path
) -> None:
    source, source_host, uploads, target_host = await registries(start, tmp_path)
    source.add("team/one_1", "1", ONE)
    source.add("team/one/1", "1", ONE)
    listing = tmp_path / "images.txt"
    listing.write_text(f"{source_host}/team/one_1:1\n{source_host}/team/one/1:1\n")
    places = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state")}

    code, _, err = await run_cli(str(listing), "--to", target_host, env=places)

    assert code == 0, err
    assert uploads.registry.manifests[("team/one_1", "1")] == (ONE.manifest, f.OCI_MANIFEST)
    assert uploads.registry.manifests[("team/one/1", "1")] == (ONE.manifest, f.OCI_MANIFEST)


async def test_the_upload_flags_are_refused_without_a_registry_to_copy_into(
    tmp_path: Path,
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("alpine:3.20\n")

    code, _, err = await run_cli(str(listing), "--max-uploads", "2", "--state-dir", "state")

    assert code == 2
    assert "--max-uploads and --state-dir" in err
    assert "--to" in err


async def test_a_copy_keeps_its_upload_state_where_the_state_dir_flag_says(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, uploads, target_host = await registries(start, tmp_path)
    listing = tmp_path / "images.txt"
    listing.write_text(f"{source_host}/team/one:1\n")
    state = tmp_path / "elsewhere"

    code, out, err = await run_cli(
        str(listing),
        "--to",
        target_host,
        "--plain-http",
        "--cache",
        str(tmp_path / "store"),
        "--max-uploads",
        "1",
        "--state-dir",
        str(state),
    )

    assert code == 0, out + err
    assert uploads.registry.manifests[("team/one", "1")] == (ONE.manifest, f.OCI_MANIFEST)
    # Where each blob went is recorded there, for other processes sharing the directory.
    assert len(list(state.glob("*.holder.json"))) == len(ONE.blobs)


async def test_an_image_found_up_to_date_is_reported_with_the_size_and_type_of_its_copy(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, _, target_host = await registries(start, tmp_path)
    lines = ("team/one:1", "team/multi:2 platform=all")

    first = await copied(source_host, target_host, tmp_path, *lines)
    second = await copied(source_host, target_host, tmp_path, *lines)

    assert [r.status for r in second.results] == [PushStatus.UP_TO_DATE] * 2
    assert [(r.media_type, r.size) for r in second.results] == [
        (r.media_type, r.size) for r in first.results
    ]
    assert [r.media_type for r in second.results] == [f.OCI_MANIFEST, f.OCI_INDEX]
    assert all(r.size > 200_000 for r in second.results)


async def test_an_out_dir_set_in_the_environment_does_not_stop_a_copy(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, uploads, target_host = await registries(start, tmp_path)
    env = {
        "BULKPULL_OUT_DIR": str(tmp_path / "archives"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }

    code, out, err = await run_cli("-i", f"{source_host}/team/one:1", "--to", target_host, env=env)

    assert code == 0, out + err
    assert uploads.registry.manifests[("team/one", "1")] == (ONE.manifest, f.OCI_MANIFEST)
    assert not (tmp_path / "archives").exists()


async def test_the_summary_says_when_a_copy_narrowed_an_index_to_a_new_digest(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, _, target_host = await registries(start, tmp_path)
    places = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state")}
    line = f"{source_host}/team/multi:2"
    platforms = ("--platform", "linux/amd64", "--platform", "linux/arm64")

    code, out, err = await run_cli("-i", line, *platforms, "--to", target_host, env=places)

    assert code == 0, out + err
    (row,) = [row for row in out.splitlines() if row.startswith("pushed")]
    assert f"  {target_host}/team/multi:2 (" in row
    assert row.endswith(" (index narrowed to 2 of 3 manifests)")


async def test_an_interrupted_copy_reports_the_bytes_it_sent_not_those_it_downloaded(
    start: Start, tmp_path: Path
) -> None:
    source, source_host, _, target_host = await registries(start, tmp_path)
    slow = f.random_layer(4 * 1024 * 1024)
    source.add("team/slow", "1", f.make_image([slow], label="slow"))
    source.faults[slow.digest] = Faults(chunk_delay=0.2)
    report_file = tmp_path / "report.json"
    images = ["-i", f"{source_host}/team/one:1", "-i", f"{source_host}/team/slow:1"]
    places = ["--cache", str(tmp_path / "store"), "--state-dir", str(tmp_path / "state")]
    # A second more after the first image: the slow layer's download goes on meanwhile.
    code, _, err = await interrupt_once(
        *images, "--to", target_host, *places, "--report", str(report_file),
        printed=b"pushed  ", settle=1,
    )  # fmt: skip

    assert code == 130, err
    report = json.loads(report_file.read_text())
    one, unfinished = report["images"]
    assert (one["status"], unfinished["status"]) == ("pushed", "interrupted")
    totals = report["totals"]
    # Beside the finished image's blobs, only the slow image's small config can have left.
    assert 0 < one["bytes_uploaded"] <= totals["bytes_sent"] < one["bytes_uploaded"] + 64 * 1024
    assert (totals["blobs_uploaded"], totals["bytes_uploaded"]) == (
        one["blobs_uploaded"],
        one["bytes_uploaded"],
    )


async def test_a_target_refusing_the_login_fails_each_image_naming_the_target_and_why(
    start: Start, tmp_path: Path
) -> None:
    source = FakeRegistry()
    source.add("team/one", "1", ONE)
    source_host = await start(source.app())
    target = FakeUploads(FakeRegistry(auth="basic", username="u", password="right"), tmp_path)
    target_host = await start(target.app())
    wrong = "wr0ng-pa55word"
    places = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state")}
    copy = ("-i", f"{source_host}/team/one:1", "--to", f"{target_host}/m")

    refused = await run_cli(*copy, "--creds", f"{target_host}=u:{wrong}", env=places)
    anonymous = await run_cli(*copy, env=places)

    assert refused[0] == anonymous[0] == 1
    (row,) = [row for row in refused[1].splitlines() if row.startswith("failed")]
    assert f"HEAD http://{target_host}/v2/m/team/one/manifests/1: 401 Unauthorized" in row
    assert row.endswith(f"; {target_host} refused the login sent")
    assert wrong not in refused[1] + refused[2]
    (row,) = [row for row in anonymous[1].splitlines() if row.startswith("failed")]
    assert row.endswith(f"; no login was sent to {target_host}")
    assert target.pushed_manifests == []


async def test_a_copy_pins_the_list_as_a_pull_does_not_the_names_at_the_target(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, _, target_host = await registries(start, tmp_path)
    lines = [
        f"{source_host}/team/one:1",
        f"{source_host}/team/one:1 base/one:stable",
        f"{source_host}/team/multi:2",
        f"{source_host}/team/multi:2 base/multi:all platform=all",
        f"{source_host}/team/gone:1",
    ]
    specs = bulkpull.parse_image_list(lines, "images.txt")
    pull, push = copy_options(tmp_path)

    copied = await bulkpull.copy_images(specs, f"{target_host}/mirror", pull, push=push)
    resolved = await bulkpull.resolve_images(specs, pull)

    assert [r.status for r in copied.results].count(PushStatus.FAILED) == 1
    assert copied.lock_lines() == resolved.lock_lines()


async def test_the_lock_of_a_copy_on_the_command_line_keeps_the_names_of_the_list(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, _, target_host = await registries(start, tmp_path)
    places = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state")}
    listing = tmp_path / "images.txt"
    listing.write_text(f"{source_host}/team/one:1\n{source_host}/team/one:1 base/one:stable\n")
    lock = tmp_path / "images.lock"

    code, out, err = await run_cli(
        str(listing), "--to", f"{target_host}/mirror", "--lock", str(lock), env=places
    )

    assert code == 0, out + err
    assert [line for line in lock.read_text().splitlines() if not line.startswith("#")] == [
        f"{source_host}/team/one:1@{ONE.digest}",
        f"{source_host}/team/one:1@{ONE.digest} docker.io/base/one:stable",
    ]


async def test_force_is_refused_with_to_since_a_copy_has_no_archive_to_rewrite(
    tmp_path: Path,
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("127.0.0.1:1/team/one:1\n")

    code, out, err = await run_cli(str(listing), "--to", "127.0.0.1:1/mirror", "--force")

    assert code == 2, out + err
    assert err.startswith("bulkpull: --force ")


async def test_a_copy_whose_images_failed_before_any_upload_does_not_call_its_blobs_unneeded(
    start: Start, tmp_path: Path
) -> None:
    _, source_host, _, _ = await registries(start, tmp_path)
    target = FakeUploads(FakeRegistry(auth="basic", username="u", password="p"), tmp_path)
    target_host = await start(target.app())
    places = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state")}

    code, out, _ = await run_cli("-i", f"{source_host}/team/one:1", "--to", target_host, env=places)

    assert code == 1
    assert out.splitlines()[-1].startswith(f"0 B sent to {target_host}; no blobs sent; in ")
