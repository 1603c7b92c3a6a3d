"""End to end: the CLI pulls from a real registry; docker, containerd and skopeo read the result.

One CLI run pulls the whole test set (tags, a digest-only reference, a renamed image, a
multi-platform index); each archive is then checked on its own: its layout, ``docker load`` and
the image ID, ``ctr images import`` with unpacking, ``skopeo inspect`` through both the
docker-archive and the oci-archive transport. The registry's access log shows what was downloaded.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
from support.archives import Archive, blob_path, normalize_tagged, read_archives, sha256
from support.services import DockerEngine, Request, run
from support.testimages import BUSYBOX_GREETING, DEFAULT_PLATFORM_ARCH, PushedImage, PushedImages

pytestmark = pytest.mark.real

RENAMED = "renamed/oci-b:copy"
ROLES = ["oci-a", "oci-b", "docker-types", "by-digest", "busybox", "multi-platform", "renamed"]


@dataclass(frozen=True)
class Line:
    """One line of the images list and what its archive must hold."""

    role: str
    text: str
    repo_tag: str
    """The expected RepoTags entry, normalized."""
    pushed: PushedImage


def list_lines(images: PushedImages) -> list[Line]:
    pinned = images.pinned
    pinned_hex = pinned.manifest_digest.removeprefix("sha256:")
    tagged = {
        "oci-a": images.shared_oci_a,
        "oci-b": images.shared_oci_b,
        "docker-types": images.shared_docker,
        "busybox": images.busybox,
        "multi-platform": images.multi,
    }
    specs = [(role, pushed.reference, pushed.reference, pushed) for role, pushed in tagged.items()]
    specs.insert(
        3, ("by-digest", pinned.by_digest, f"{pinned.repository}:sha256-{pinned_hex}", pinned)
    )
    specs.append(
        ("renamed", f"{images.shared_oci_b.reference} {RENAMED}", RENAMED, images.shared_oci_b)
    )
    lines = [Line(role, text, normalize_tagged(tag), pushed) for role, text, tag, pushed in specs]
    assert [line.role for line in lines] == ROLES
    return lines


@dataclass
class Pull:
    """One CLI run over the whole list."""

    command: list[str]
    result: subprocess.CompletedProcess[bytes]
    out_dir: Path
    lines: list[Line]
    blob_downloads: list[Request]
    """The registry's blob GETs during the run."""

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.command)}\nexit code {self.result.returncode}\n"
            f"--- stdout ---\n{self.result.stdout.decode(errors='replace')}\n"
            f"--- stderr ---\n{self.result.stderr.decode(errors='replace')}"
        )

    def require_success(self) -> None:
        if self.result.returncode != 0:
            pytest.fail(f"the CLI did not succeed:\n{self.describe()}", pytrace=False)

    @cached_property
    def archives(self) -> list[Archive]:
        self.require_success()
        return read_archives(self.out_dir)

    def line(self, role: str) -> Line:
        return next(line for line in self.lines if line.role == role)

    def archive(self, role: str) -> Archive:
        """The archive whose RepoTags name the image of ``role``'s line."""
        expected = self.line(role).repo_tag
        found = [archive for archive in self.archives if expected in archive.normalized_repo_tags]
        assert len(found) == 1, (
            f"expected one archive with RepoTags {expected}, found {len(found)}; all RepoTags: "
            f"{ {archive.path.name: archive.repo_tags for archive in self.archives} }"
        )
        return found[0]


def pull_list(
    command: list[str], lines: list[str], workdir: Path, *extra: str
) -> tuple[list[str], subprocess.CompletedProcess[bytes], Path]:
    """Run the CLI on a list file holding ``lines``; returns the command, result, output dir."""
    workdir.mkdir(parents=True, exist_ok=True)
    list_file = workdir / "images.txt"
    list_file.write_text("".join(f"{line}\n" for line in lines))
    out_dir = workdir / "out"
    argv = [*command, str(list_file), "-o", str(out_dir), "--plain-http", *extra]
    return argv, run(argv, check=False, timeout=300), out_dir


@pytest.fixture(scope="module")
def pull(
    pushed_images: PushedImages,
    bulkpull_command: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Pull:
    lines = list_lines(pushed_images)
    workdir = tmp_path_factory.mktemp("roundtrip")
    registry = pushed_images.registry
    log_start = registry.log_offset()
    argv, result, out_dir = pull_list(bulkpull_command, [line.text for line in lines], workdir)
    # The registry logs a request just after answering it: give the last lines a moment.
    needed = {blob for line in lines for blob in line.pushed.image.blobs}
    deadline = time.monotonic() + 3
    downloads = registry.blob_downloads(log_start)
    while {d.blob for d in downloads} < needed and time.monotonic() < deadline:
        time.sleep(0.1)
        downloads = registry.blob_downloads(log_start)
    return Pull(argv, result, out_dir, lines, downloads)


def test_cli_pulls_every_line_into_one_archive(pull: Pull) -> None:
    pull.require_success()
    archives = pull.archives
    assert len(archives) == len(pull.lines), pull.describe()
    assert sorted(tag for archive in archives for tag in archive.normalized_repo_tags) == sorted(
        line.repo_tag for line in pull.lines
    )
    leftovers = [path.name for path in pull.out_dir.glob("*.partial")]
    assert leftovers == [], f"unfinished files left in the output directory: {leftovers}"


def test_each_needed_blob_is_downloaded_once(pull: Pull) -> None:
    pull.require_success()
    needed = {blob for line in pull.lines for blob in line.pushed.image.blobs}
    counts = Counter(download.blob for download in pull.blob_downloads)
    # The base layer is in five lines from four repositories; the store fetches it once.
    assert {digest: counts[digest] for digest in needed} == dict.fromkeys(needed, 1), (
        f"blob GETs: {pull.blob_downloads}"
    )
    multi = pull.line("multi-platform").pushed
    assert multi.index is not None
    other_platforms = {
        blob for image in multi.index.images if image is not multi.image for blob in image.blobs
    } - needed
    assert other_platforms, "the other platform's image should have blobs of its own"
    fetched = other_platforms & set(counts)
    assert not fetched, f"blobs of platforms not asked for were downloaded: {fetched}"


@pytest.mark.parametrize("role", ROLES)
def test_archive_is_oci_layout_and_docker_archive(pull: Pull, role: str) -> None:
    archive = pull.archive(role)
    image = pull.line(role).pushed.image
    name = archive.path.name

    not_regular = [m for m, info in archive.members.items() if not (info.isfile() or info.isdir())]
    assert not_regular == [], f"{name}: entries that are neither files nor directories"
    for member, data in archive.files.items():
        if member.startswith("blobs/"):
            assert member == blob_path(sha256(data)), f"{name}: {member} holds other content"

    assert archive.json("oci-layout") == {"imageLayoutVersion": "1.0.0"}
    index = archive.json("index.json")
    assert index["schemaVersion"] == 2
    assert len(index["manifests"]) == 1, f"{name}: index.json should describe one image"
    descriptor = index["manifests"][0]
    top = archive.blob(descriptor["digest"])
    assert len(top) == descriptor["size"]
    pushed = pull.line(role).pushed
    allowed = {image.digest} | ({pushed.index.digest} if pushed.index else set())
    assert descriptor["digest"] in allowed, f"{name}: index.json points at {descriptor['digest']}"

    # Blobs are the registry's exact bytes: manifest, config and compressed layers.
    assert archive.blob(image.digest) == image.manifest
    assert archive.blob(image.config_digest) == image.config
    for layer in image.layers:
        assert archive.blob(layer.digest) == layer.compressed

    (item,) = archive.manifest_json
    assert item["Config"] == blob_path(image.config_digest)
    assert item["Layers"] == [blob_path(layer.digest) for layer in image.layers]
    assert {normalize_tagged(tag) for tag in item["RepoTags"]} == {pull.line(role).repo_tag}


@pytest.mark.parametrize("role", ROLES)
def test_docker_loads_archive_with_the_pushed_image_id(
    pull: Pull, dockerd: DockerEngine, role: str
) -> None:
    archive = pull.archive(role)
    # docker skips reading a layer file when it has that layer already; start from nothing so
    # that every layer is read and checked against its diff_id.
    dockerd.remove_all_images()
    loaded = dockerd.docker("load", "--input", str(archive.path))
    assert b"Loaded image" in loaded.stdout
    for tag in archive.repo_tags:
        image_id = dockerd.docker("image", "inspect", tag, "--format", "{{.Id}}")
        assert image_id.stdout.decode().strip() == pull.line(role).pushed.config_digest, tag


def test_docker_runs_the_pulled_busybox(pull: Pull, dockerd: DockerEngine) -> None:
    archive = pull.archive("busybox")
    dockerd.docker("load", "--input", str(archive.path))
    (tag,) = archive.repo_tags
    ran = dockerd.docker("run", "--rm", "--network", "none", "--pull", "never", tag)
    assert ran.stdout.decode() == f"{BUSYBOX_GREETING}\n"
    shell = dockerd.docker(
        "run", "--rm", "--network", "none", "--pull", "never", tag, "/bin/sh", "-c", "echo $((6*7))"
    )
    assert shell.stdout.decode() == "42\n"


@pytest.mark.parametrize("role", ROLES)
def test_containerd_imports_and_unpacks_archive(
    pull: Pull, dockerd: DockerEngine, real_tool: Callable[[str], str], role: str
) -> None:
    real_tool("ctr")
    archive = pull.archive(role)
    line = pull.line(role)
    namespace = f"bulkpull-ctr-{ROLES.index(role)}"
    # Unpacking with the native snapshotter checks every layer against its diff_id.
    dockerd.ctr(namespace, "images", "import", "--snapshotter", "native", str(archive.path))
    listed = dockerd.ctr(namespace, "images", "list").stdout.decode().splitlines()
    rows = {row.split()[0]: row.split() for row in listed[1:]}
    assert line.repo_tag in rows, f"ctr images list:\n{chr(10).join(listed)}"
    allowed = {line.pushed.image.digest} | (
        {line.pushed.index.digest} if line.pushed.index else set()
    )
    assert rows[line.repo_tag][2] in allowed


def skopeo_inspect(transport: str, path: Path, *flags: str) -> bytes:
    return run(["skopeo", "inspect", *flags, f"{transport}:{path}"]).stdout


@pytest.mark.parametrize("role", ROLES)
def test_skopeo_reads_docker_archive(pull: Pull, role: str) -> None:
    archive = pull.archive(role)
    image = pull.line(role).pushed.image
    inspected = json.loads(skopeo_inspect("docker-archive", archive.path))
    # Through docker-archive, skopeo describes layers by their uncompressed digests.
    assert inspected["Layers"] == [layer.diff_id for layer in image.layers]
    assert inspected["Architecture"] == image.platform[1]
    config = skopeo_inspect("docker-archive", archive.path, "--config", "--raw")
    assert sha256(config) == image.config_digest


@pytest.mark.parametrize("role", ROLES)
def test_skopeo_reads_oci_archive(pull: Pull, role: str) -> None:
    archive = pull.archive(role)
    pushed = pull.line(role).pushed
    image = pushed.image
    inspected = json.loads(skopeo_inspect("oci-archive", archive.path))
    allowed = {image.digest} | ({pushed.index.digest} if pushed.index else set())
    assert inspected["Digest"] in allowed
    assert inspected["Layers"] == [layer.digest for layer in image.layers]
    assert inspected["Architecture"] == image.platform[1]
    raw = skopeo_inspect("oci-archive", archive.path, "--raw")
    assert sha256(raw) == inspected["Digest"]
    config = skopeo_inspect("oci-archive", archive.path, "--config", "--raw")
    assert sha256(config) == image.config_digest


def test_multi_platform_archive_holds_the_default_platform_child(pull: Pull) -> None:
    pushed = pull.line("multi-platform").pushed
    assert pushed.index is not None
    archive = pull.archive("multi-platform")
    child = pushed.image
    assert child.platform == ("linux", DEFAULT_PLATFORM_ARCH, "")
    assert archive.blob(child.digest) == child.manifest
    (item,) = archive.manifest_json
    assert item["Config"] == blob_path(child.config_digest)
    others = [image for image in pushed.index.images if image.digest != child.digest]
    assert others, "the index should have children for other platforms"
    for other in others:
        assert item["Config"] != blob_path(other.config_digest)


def test_same_list_pulled_again_gives_the_same_bytes(
    pull: Pull, bulkpull_command: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = {archive.path.name: sha256(archive.path.read_bytes()) for archive in pull.archives}
    argv, result, out_dir = pull_list(
        bulkpull_command, [line.text for line in pull.lines], tmp_path_factory.mktemp("again")
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    second = {
        archive.path.name: sha256(archive.path.read_bytes()) for archive in read_archives(out_dir)
    }
    assert second == first, f"$ {' '.join(argv)} wrote different archives"
