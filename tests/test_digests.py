"""Which digest each output names an image by, and docker's platform rule.

Every platform (``all``): the registry's index byte for byte, with every manifest it lists.
One platform of an index: that platform's manifest, in every output. Several platforms in a
bundle or layout: an index narrowed to them, the one digest bulkpull makes, and it says so.
An image that is no index and of another platform than asked for: refused, as docker does.
"""

from __future__ import annotations

import dataclasses
import json
import tarfile
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start

import bulkpull
from bulkpull import Destination, Platform, PlatformNotFoundError, PullOptions, PullReport, Status

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
OUTPUTS = ("archive", "bundle", "layout")


class Multi:
    """A three-platform index with BuildKit's attestation for each platform."""

    def __init__(self, *, docker_types: bool = False) -> None:
        base = f.random_layer(3000)

        def image(arch: str, variant: str = "") -> f.Image:
            top = f.random_layer(1000)
            return f.make_image(
                [base, top], arch=arch, variant=variant, docker_types=docker_types, label=arch
            )

        self.amd64, self.arm64, self.armv7 = image("amd64"), image("arm64"), image("arm", "v7")
        self.images = (self.amd64, self.arm64, self.armv7)
        self.index = f.make_index(list(self.images), docker_types=docker_types, attestation=True)


@pytest.fixture(params=["oci", "docker"])
async def served(request: pytest.FixtureRequest, start: Start) -> tuple[FakeRegistry, str, Multi]:
    registry = FakeRegistry()
    multi = Multi(docker_types=request.param == "docker")
    registry.add("multi/app", "1", multi.index)
    return registry, await start(registry.app()), multi


async def pull(
    refs: list[str], output: str, tmp_path: Path, options: PullOptions
) -> tuple[PullReport, Path]:
    """Pull into ``output``; returns the report and what was written (archive, bundle, layout)."""
    if output == "bundle":
        bundle = tmp_path / "bundle.tar"
        return await bulkpull.pull_images(refs, Destination.bundle(bundle), options), bundle
    if output == "layout":
        layout = tmp_path / "layout"
        return await bulkpull.pull_images(refs, Destination.oci_layout(layout), options), layout
    report = await bulkpull.pull_images(refs, tmp_path / "out", options)
    archives = {result.archive for result in report.results}
    assert len(archives) == 1, archives
    (archive,) = archives
    assert archive is not None
    return report, archive


async def pull_entry(
    host: str, output: str, tmp_path: Path, options: PullOptions
) -> tuple[PullReport, Path, dict[str, bytes], dict[str, object]]:
    """Pull multi/app:1 into ``output``: the report, the target, its files and its one entry."""
    report, target = await pull([f"{host}/multi/app:1"], output, tmp_path, options)
    assert report.ok, report.failed
    files = files_of(target)
    return report, target, files, entry_of(files)


def files_of(target: Path) -> dict[str, bytes]:
    """Every file of an archive or layout directory by name."""
    if target.is_dir():
        return {
            path.relative_to(target).as_posix(): path.read_bytes()
            for path in target.rglob("*")
            if path.is_file()
        }
    with tarfile.open(target) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def blob(files: dict[str, bytes], digest: str) -> bytes:
    return files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]


def entry_of(files: dict[str, bytes]) -> dict[str, object]:
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert isinstance(entry, dict)
    return entry


@pytest.mark.parametrize("output", OUTPUTS)
async def test_every_platform_keeps_the_registry_index_and_every_manifest_it_lists(
    served: tuple[FakeRegistry, str, Multi], options: PullOptions, tmp_path: Path, output: str
) -> None:
    _, host, multi = served
    options = dataclasses.replace(options, all_platforms=True)

    report, target, files, entry = await pull_entry(host, output, tmp_path, options)

    assert (entry["digest"], entry["mediaType"]) == (multi.index.digest, multi.index.media_type)
    assert blob(files, multi.index.digest) == multi.index.manifest
    for child in multi.index.children:  # attestations included
        assert blob(files, child.digest) == child.manifest
        for digest, data in child.blobs.items():
            assert blob(files, digest) == data
    assert [str(r.manifest_digest) for r in report.results] == [
        c.digest for c in multi.index.children
    ]
    assert {(str(r.written_digest), r.narrowed) for r in report.results} == {
        (multi.index.digest, None)
    }
    assert report.results[-1].platform == Platform("unknown", "unknown")
    check = bulkpull.verify_archive(target)
    assert (check.problems, check.notes) == ((), ())


@pytest.mark.parametrize(
    ("preferred", "docker_gets"),
    [("linux/amd64", "amd64"), ("linux/arm64", "arm64"), ("linux/s390x", "amd64")],
    ids=["default", "first-platform", "no-match-first-image"],
)
async def test_every_platform_in_an_archive_is_one_archive_and_docker_gets_one_platform(
    served: tuple[FakeRegistry, str, Multi],
    options: PullOptions,
    tmp_path: Path,
    preferred: str,
    docker_gets: str,
) -> None:
    _, host, multi = served
    # A list line's platform=all; the run's platforms only say which entry docker load gets.
    spec = dataclasses.replace(bulkpull.image_spec(f"{host}/multi/app:1"), all_platforms=True)
    options = dataclasses.replace(options, platforms=(Platform.parse(preferred), AMD64))

    report = await bulkpull.pull_images([spec], tmp_path, options)

    (archive,) = {result.archive for result in report.results}
    assert archive is not None
    assert archive.name == f"127.0.0.1_{host.split(':')[1]}_multi_app_1.tar"
    (docker,) = json.loads(files_of(archive)["manifest.json"])
    chosen = multi.amd64 if docker_gets == "amd64" else multi.arm64
    assert docker["Config"] == f"blobs/sha256/{chosen.config_digest[7:]}"


@pytest.mark.parametrize("output", OUTPUTS)
async def test_one_platform_of_an_index_is_its_manifest_in_every_output(
    served: tuple[FakeRegistry, str, Multi], options: PullOptions, tmp_path: Path, output: str
) -> None:
    _, host, multi = served
    options = dataclasses.replace(options, platforms=(ARM64,))

    report, target, files, entry = await pull_entry(host, output, tmp_path, options)

    assert (entry["digest"], entry["mediaType"]) == (multi.arm64.digest, multi.arm64.media_type)
    # The registry's index travels with it, so the far side can check the lock's digest.
    assert blob(files, multi.index.digest) == multi.index.manifest
    (result,) = report.results
    assert (str(result.written_digest), result.narrowed) == (multi.arm64.digest, None)
    assert str(result.source_digest) == multi.index.digest
    assert bulkpull.verify_archive(target).ok


@pytest.mark.parametrize("output", ["bundle", "layout"])
async def test_several_platforms_kept_together_narrow_the_index_and_say_so(
    served: tuple[FakeRegistry, str, Multi], options: PullOptions, tmp_path: Path, output: str
) -> None:
    _, host, multi = served
    options = dataclasses.replace(options, platforms=(ARM64, AMD64))

    report, target, files, entry = await pull_entry(host, output, tmp_path, options)

    written = str(entry["digest"])
    narrowed = json.loads(blob(files, written))
    original = json.loads(multi.index.manifest)
    assert written != multi.index.digest
    assert narrowed["manifests"] == original["manifests"][:2]  # index order, attestations out
    assert {**narrowed, "manifests": []} == {**original, "manifests": []}
    assert {(str(r.written_digest), r.narrowed) for r in report.results} == {(written, (2, 6))}
    assert {str(r.source_digest) for r in report.results} == {multi.index.digest}
    assert bulkpull.verify_archive(target).ok


async def test_the_summary_and_the_lock_say_the_index_was_narrowed(
    served: tuple[FakeRegistry, str, Multi], tmp_path: Path
) -> None:
    _, host, multi = served
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/multi/app:1 platform=linux/arm64,linux/amd64\n")
    lock = tmp_path / "images.lock"

    code, out, err = await run_cli(
        str(listing), "--bundle", str(tmp_path / "b.tar"), "--lock", str(lock)
    )

    assert code == 0, err
    assert out.count("(index narrowed to 2 of 6 manifests)") == 2
    line = f"{host}/multi/app:1@{multi.index.digest} platform=linux/arm64,linux/amd64"
    assert line in lock.read_text().splitlines()


@pytest.mark.parametrize(
    ("arch", "variant", "wanted", "refused"),
    [
        ("amd64", "", "linux/arm64", True),
        ("amd64", "", "linux/amd64", False),
        ("arm64", "v8", "linux/arm64", False),  # v8 is what arm64 means
        ("arm", "v7", "linux/arm64", False),  # containerd: arm64 runs 32-bit arm
        ("arm", "v7", "linux/arm/v6", True),  # an arm v6 cannot run v7 code
        ("arm", "v6", "linux/arm/v7", False),
        ("386", "", "linux/amd64", False),
    ],
)
async def test_an_image_of_another_platform_is_refused_before_its_layers_are_fetched(
    start: Start,
    options: PullOptions,
    tmp_path: Path,
    arch: str,
    variant: str,
    wanted: str,
    refused: bool,
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)], arch=arch, variant=variant)
    registry.add("one/app", "1", image)
    host = await start(registry.app())
    options = dataclasses.replace(options, platforms=(Platform.parse(wanted),))

    result = await bulkpull.pull_image(f"{host}/one/app:1", tmp_path, options)

    assert (result.error is not None) is refused
    if refused:
        platform = Platform("linux", arch, variant).normalized()
        assert isinstance(result.error, PlatformNotFoundError)
        assert str(result.error) == f"{host}/one/app:1 is {platform} only; asked for {wanted}"
        assert registry.count("GET", image.layers[0].digest) == 0
        assert list(tmp_path.glob("*.tar")) == []


async def test_every_platform_takes_an_image_of_any_platform(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)], arch="amd64")
    registry.add("one/app", "1", image)
    host = await start(registry.app())
    options = dataclasses.replace(options, platforms=(ARM64,), all_platforms=True)

    result = await bulkpull.pull_image(f"{host}/one/app:1", tmp_path, options)

    assert result.ok, result.error
    assert str(result.written_digest) == image.digest


async def test_a_refused_platform_fails_only_that_image_and_the_report_says_why(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("one/amd", "1", f.make_image([f.random_layer(1000)], arch="amd64"))
    registry.add("one/arm", "1", f.make_image([f.random_layer(1000)], arch="arm64"))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/one/amd:1\n{host}/one/arm:1\n")
    report_file = tmp_path / "report.json"

    code, out, _ = await run_cli(
        str(listing), "-o", str(tmp_path / "out"), "--platform", "linux/arm64",
        "--report", str(report_file),
    )  # fmt: skip

    images = json.loads(report_file.read_text())["images"]
    assert code == 1
    assert [image["status"] for image in images] == ["failed", "pulled"]
    assert images[0]["error"]["type"] == "PlatformNotFoundError"
    assert images[0]["error"]["message"].endswith("is linux/amd64 only; asked for linux/arm64")
    assert "is linux/amd64 only; asked for linux/arm64" in out
    assert [p.name for p in (tmp_path / "out").glob("*.tar")] == [
        f"127.0.0.1_{host.split(':')[1]}_one_arm_1.tar"
    ]


async def test_all_platforms_from_the_command_line_the_environment_and_a_list_line(
    served: tuple[FakeRegistry, str, Multi], tmp_path: Path
) -> None:
    _, host, multi = served
    ways = {
        "flag": ([f"{host}/multi/app:1"], ["--platform", "all"], {}),
        "environment": ([f"{host}/multi/app:1"], [], {"BULKPULL_PLATFORM": "all"}),
        "line": ([f"{host}/multi/app:1 platform=all"], ["--platform", "linux/arm64"], {}),
    }
    for way, (lines, flags, env) in ways.items():
        listing = tmp_path / f"{way}.txt"
        listing.write_text("".join(f"{line}\n" for line in lines))
        lock = tmp_path / f"{way}.lock"
        out_dir = tmp_path / way

        code, out, err = await run_cli(
            str(listing), "-o", str(out_dir), "--lock", str(lock), *flags, env=env
        )

        assert code == 0, (way, err)
        assert [p.name for p in out_dir.glob("*.tar")] == [
            f"127.0.0.1_{host.split(':')[1]}_multi_app_1.tar"
        ], way
        rows = [line for line in out.splitlines() if line.startswith("pulled  ")]
        assert len(rows) == len(multi.index.children), way
        if way != "line":
            assert "(all platforms)" in err, way
        pinned = f"{host}/multi/app:1@{multi.index.digest} platform=all"
        assert pinned in lock.read_text().splitlines(), way


async def test_the_lock_of_every_platform_pulls_the_same_index_again(
    served: tuple[FakeRegistry, str, Multi], tmp_path: Path
) -> None:
    _, host, multi = served
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/multi/app:1\n")
    lock = tmp_path / "images.lock"
    await run_cli(str(listing), "--platform", "all", "--dry-run", "--lock", str(lock))
    report_file = tmp_path / "report.json"

    code, _, err = await run_cli(
        str(lock), "--bundle", str(tmp_path / "b.tar"), "--report", str(report_file)
    )

    images = json.loads(report_file.read_text())["images"]
    assert code == 0, err
    assert {image["written_digest"] for image in images} == {multi.index.digest}


@pytest.mark.parametrize(
    ("flags", "line", "message"),
    [
        (["--platform", "all", "--platform", "linux/amd64"], "", "cannot be combined"),
        ([], " platform=all,linux/arm64", "images.txt:1: platform 'all' keeps every platform"),
    ],
    ids=["flags", "line"],
)
async def test_all_with_other_platforms_is_a_usage_error(
    tmp_path: Path, flags: list[str], line: str, message: str
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text(f"127.0.0.1:1/x/y:1{line}\n")

    code, _, err = await run_cli(str(listing), "-o", str(tmp_path / "out"), *flags)

    assert code == 2
    assert message in err


async def test_a_dry_run_of_every_platform_resolves_each_manifest_and_fetches_no_blob(
    served: tuple[FakeRegistry, str, Multi], options: PullOptions
) -> None:
    registry, host, multi = served
    options = dataclasses.replace(options, all_platforms=True)

    report = await bulkpull.resolve_images([f"{host}/multi/app:1"], options)

    assert [r.status for r in report.results] == [Status.RESOLVED] * len(multi.index.children)
    assert [str(r.manifest_digest) for r in report.results] == [
        c.digest for c in multi.index.children
    ]
    assert not [s for s in registry.seen if "/blobs/" in s.path]


async def test_a_rerun_of_every_platform_finds_the_archive_current(
    served: tuple[FakeRegistry, str, Multi], options: PullOptions, tmp_path: Path
) -> None:
    _, host, _ = served
    options = dataclasses.replace(options, all_platforms=True)
    await bulkpull.pull_images([f"{host}/multi/app:1"], tmp_path, options)

    again = await bulkpull.pull_images([f"{host}/multi/app:1"], tmp_path, options)

    assert {result.status for result in again.results} == {Status.UP_TO_DATE}
