"""``bulkpull LIST --to`` between two real registries: A's images arrive in B unchanged, a
rerun costs a ``HEAD`` at each end, and three shards share one list into one B.

Registry A holds 13 images: twelve in repositories of their own sharing two base layers, in
OCI and Docker media types, and one multi-platform index copied with ``platform=all``. The
access logs of both registries say what each run asked for: no manifest ``GET`` at A and no
write at B when nothing changed, only the new blobs when one tag moved, and across three
processes each blob uploaded at most once into any repository.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from support import imagefactory
from support.imagefactory import Layer
from support.services import Registry, Request, child_env, run, start_registry
from support.testimages import push_over_api

import bulkpull

pytestmark = pytest.mark.real

WRITES = ("POST", "PATCH", "PUT")
ACCEPT = ", ".join(
    (
        imagefactory.OCI_MANIFEST,
        imagefactory.OCI_INDEX,
        imagefactory.DOCKER_MANIFEST,
        imagefactory.DOCKER_LIST,
    )
)


@dataclass(frozen=True)
class Copied:
    """One ``bulkpull LIST --to`` run: exit code, output, report, and both registries' logs."""

    code: int
    output: str
    report: dict[str, object]
    at_source: list[Request]
    at_target: list[Request]

    @property
    def images(self) -> list[dict[str, object]]:
        images = self.report["images"]
        assert isinstance(images, list)
        return images

    @property
    def statuses(self) -> dict[str, str]:
        return {str(image["name"]): str(image["status"]) for image in self.images}


@dataclass
class SourceImages:
    """Registry A and what it serves: each reference with the digest of what it names."""

    registry: Registry
    digests: dict[str, str]
    base: Layer


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("copy")


@pytest.fixture(scope="module")
def source(workdir: Path) -> Iterator[SourceImages]:
    with start_registry(workdir / "a") as registry:
        yield SourceImages(registry, *_fill(registry))


def _fill(registry: Registry) -> tuple[dict[str, str], Layer]:
    base = imagefactory.random_layer(192 * 1024, name="base/one.bin")
    second = imagefactory.random_layer(96 * 1024, name="base/two.bin")
    digests = {}
    for number in range(12):
        top = imagefactory.random_layer(24 * 1024, name=f"top/{number}.bin")
        layers = [base, second, top] if number % 2 else [base, top]
        image = imagefactory.make_image(
            layers, docker_types=number % 3 == 0, label=f"copy-{number}"
        )
        reference = push_over_api(registry, f"src/app{number}", "1", image)
        digests[reference] = image.digest
    children = [
        imagefactory.make_image([base, imagefactory.random_layer(8192, name=arch)], arch=arch)
        for arch in ("amd64", "arm64")
    ]
    index = imagefactory.make_index(children)
    digests[push_over_api(registry, "src/multi", "2024", index)] = index.digest
    return digests, base


def listing(source: SourceImages, path: Path) -> Path:
    lines = [f"{ref} platform=all" if "multi" in ref else ref for ref in source.digests]
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def copy_command(command: list[str], images: Path, to: str, report: Path, *flags: str) -> list[str]:
    return [*command, str(images), "--to", to, "--plain-http", "--report", str(report), *flags]


def environment(cache: Path) -> dict[str, str]:
    """A machine of its own: its own store and upload state."""
    return child_env(XDG_CACHE_HOME=str(cache / "cache"), XDG_STATE_HOME=str(cache / "state"))


def copy(
    command: list[str],
    source: SourceImages,
    target: Registry,
    to: str,
    report: Path,
    cache: Path,
    *flags: str,
) -> Copied:
    since_a, since_b = source.registry.log_offset(), target.log_offset()
    images = listing(source, report.with_suffix(".txt"))
    args = copy_command(command, images, to, report, *flags)
    result = run(args, env=environment(cache), check=False, timeout=300)
    output = f"$ {' '.join(args)}\n{(result.stdout + result.stderr).decode(errors='replace')}"
    time.sleep(0.3)  # a registry logs a request just after answering it
    document = json.loads(report.read_text()) if report.exists() else {}
    return Copied(
        result.returncode,
        output,
        document,
        source.registry.requests(since_a),
        target.requests(since_b),
    )


def served(registry: Registry, repository: str, tag: str) -> str:
    """The digest ``registry`` serves for ``repository:tag`` (HEAD)."""
    url = f"{registry.url}/v2/{repository}/manifests/{tag}"
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": ACCEPT})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request) as response:
        return str(response.headers["Docker-Content-Digest"])


def uploads(requests: list[Request]) -> list[tuple[str, str]]:
    """(repository, digest) of every blob upload that completed (the PUT with ``digest=``)."""
    return blob_answers(requests, "PUT", "digest")


def mounts(requests: list[Request]) -> list[tuple[str, str]]:
    """(repository, digest) of every blob the registry mounted (``POST ?mount=`` answered 201)."""
    return blob_answers(requests, "POST", "mount")


def blob_answers(requests: list[Request], method: str, parameter: str) -> list[tuple[str, str]]:
    """(repository, digest) of each ``method`` to an upload URL whose ``parameter`` names the
    digest, answered 201: a blob now in that repository."""
    found = []
    for request in requests:
        split = urlsplit(request.path)
        digest = parse_qs(split.query).get(parameter)
        if request.method == method and digest and request.status == 201:
            repository = split.path.removeprefix("/v2/").partition("/blobs/uploads/")[0]
            found.append((repository, digest[0]))
    return found


def manifest_gets(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.method == "GET" and "/manifests/" in r.path]


@pytest.fixture(scope="module")
def target(workdir: Path) -> Iterator[Registry]:
    with start_registry(workdir / "b") as registry:
        yield registry


@pytest.fixture(scope="module")
def runs(
    source: SourceImages, target: Registry, bulkpull_command: list[str], workdir: Path
) -> tuple[Copied, Copied]:
    """The list copied into an empty B, then again with nothing changed (and a lock)."""
    to = f"{target.host}/mirror"
    first = copy(bulkpull_command, source, target, to, workdir / "first.json", workdir)
    lock = ["--lock", str(workdir / "images.lock")]
    second = copy(bulkpull_command, source, target, to, workdir / "second.json", workdir, *lock)
    return first, second


def test_every_image_arrives_in_b_with_the_digest_a_serves(
    runs: tuple[Copied, Copied], source: SourceImages, target: Registry
) -> None:
    first, _ = runs
    assert first.code == 0, first.output
    assert set(first.statuses.values()) == {"pushed"}, first.output
    assert len(first.images) == 13
    for reference, digest in source.digests.items():
        path = reference.partition("/")[2]
        repository, _, tag = path.rpartition(":")
        assert served(target, f"mirror/{repository}", tag) == digest, reference
    assert [r for r in first.at_source if r.method in WRITES] == []


def test_a_layer_shared_by_many_images_is_uploaded_once_and_mounted_elsewhere(
    runs: tuple[Copied, Copied], source: SourceImages
) -> None:
    first, _ = runs
    uploaded = uploads(first.at_target)
    assert [digest for _, digest in uploaded].count(source.base.digest) == 1, uploaded
    mounts = [r for r in first.at_target if r.method == "POST" and "mount=" in r.path]
    assert any(source.base.digest in r.path and r.status == 201 for r in mounts), mounts
    base_gets = [r for r in first.at_source if r.blob == source.base.digest]
    assert len(base_gets) == 1, base_gets


def test_a_rerun_with_nothing_changed_gets_no_manifest_and_writes_nothing(
    runs: tuple[Copied, Copied], workdir: Path
) -> None:
    _, second = runs
    assert second.code == 0, second.output
    assert set(second.statuses.values()) == {"up-to-date"}, second.output
    assert manifest_gets(second.at_source) == []
    assert [r for r in second.at_source if r.blob] == []
    assert [r for r in second.at_target if r.method in WRITES] == []
    heads = [r for r in second.at_source if r.method == "HEAD" and "/manifests/" in r.path]
    assert len(heads) == 13, heads
    lock = (workdir / "images.lock").read_text().splitlines()
    pinned = [line for line in lock if not line.startswith("#")]
    assert len(pinned) == 13, lock
    assert all("@sha256:" in line for line in pinned), lock


def test_a_moved_tag_copies_only_the_blobs_the_target_lacks(
    runs: tuple[Copied, Copied],
    source: SourceImages,
    target: Registry,
    bulkpull_command: list[str],
    workdir: Path,
) -> None:
    new_top = imagefactory.random_layer(16 * 1024, name="top/moved.bin")
    moved = imagefactory.make_image([source.base, new_top], label="copy-moved")
    reference = push_over_api(source.registry, "src/app0", "1", moved)
    source.digests[reference] = moved.digest

    # Another machine, its store empty: what the target has is not even downloaded.
    elsewhere = workdir / "elsewhere"
    to = f"{target.host}/mirror"
    third = copy(bulkpull_command, source, target, to, workdir / "third.json", elsewhere)

    assert third.code == 0, third.output
    statuses = third.statuses
    assert statuses.pop(reference) == "pushed"
    assert set(statuses.values()) == {"up-to-date"}
    new = {new_top.digest, moved.config_digest}
    assert {digest for _, digest in uploads(third.at_target)} == new
    assert {r.blob for r in third.at_source if r.blob} == new
    assert served(target, "mirror/src/app0", "1") == moved.digest


def test_a_dry_run_says_what_the_target_lacks_and_writes_nothing(
    source: SourceImages, bulkpull_command: list[str], workdir: Path
) -> None:
    with start_registry(workdir / "empty") as empty:
        checked = copy(
            bulkpull_command, source, empty, empty.host, workdir / "dry.json", workdir, "--dry-run"
        )

    assert checked.code == 0, checked.output
    assert set(checked.statuses.values()) == {"missing"}
    assert [r for r in checked.at_target if r.method in WRITES] == []
    assert [r for r in checked.at_source if r.blob] == []


def retag(registry: Registry, repository: str, tag: str, new_tag: str) -> str:
    """``repository:tag`` of ``registry`` tagged ``new_tag`` too (its manifest's own bytes)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"{registry.url}/v2/{repository}/manifests"
    with opener.open(urllib.request.Request(f"{url}/{tag}", headers={"Accept": ACCEPT})) as got:
        raw, media_type = got.read(), got.headers["Content-Type"]
    put = urllib.request.Request(
        f"{url}/{new_tag}", data=raw, method="PUT", headers={"Content-Type": media_type}
    )
    opener.open(put).close()
    return f"{registry.host}/{repository}:{new_tag}"


def dealt(source: SourceImages, parts: int) -> dict[str, int]:
    """The twelve app images, each under a tag that puts it in the shard ``number % parts``,
    and the index: each shard has images with both shared layers (the second in odd ones)."""
    dealt = {}
    for number in range(12):
        repository = f"src/app{number}"
        tag = next(
            f"part-{attempt}"
            for attempt in itertools.count()
            if part_of(f"{source.registry.host}/{repository}:part-{attempt}", parts)
            == number % parts
        )
        dealt[retag(source.registry, repository, "1", tag)] = number % parts
    (multi,) = (reference for reference in source.digests if "multi" in reference)
    dealt[multi] = part_of(multi, parts)
    return dealt


def part_of(reference: str, parts: int) -> int:
    """The shard of ``parts`` that takes the image ``reference`` names."""
    found = bulkpull.parse_reference(reference)
    return next(part for part in range(parts) if bulkpull.Shard(part, parts).takes(found))


def copy_in_shards(
    command: list[str], images: Path, shared: Registry, homes: list[Path]
) -> tuple[list[dict[str, object]], list[Request]]:
    """One ``--shard K/N`` process per home (its store and state), all started at once; the
    images of their reports, and what the target was asked."""
    since, started = shared.log_offset(), []
    for part, home in enumerate(homes):
        report = home / f"report-{part}.json"
        args = copy_command(
            command, images, shared.host, report, "--shard", f"{part}/{len(homes)}", "-q"
        )
        process = subprocess.Popen(
            args, env=environment(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        started.append((report, process))
    for _, process in started:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output.decode(errors="replace")
    time.sleep(0.3)  # a registry logs a request just after answering it
    reports = [json.loads(report.read_text()) for report, _ in started]
    return [image for document in reports for image in document["images"]], shared.requests(since)


@pytest.mark.parametrize("machines", ["one machine", "three machines"])
def test_three_shards_at_once_copy_every_image_once_into_one_registry(
    source: SourceImages, bulkpull_command: list[str], workdir: Path, machines: str
) -> None:
    images = dealt(source, 3)
    assert set(images.values()) == {0, 1, 2}
    path = workdir / f"dealt-{machines.replace(' ', '-')}.txt"
    path.write_text("".join(f"{r} platform=all\n" if "multi" in r else f"{r}\n" for r in images))
    # One machine: the three share a store and a state directory; else each has its own.
    homes = [workdir / machines.replace(" ", "-") / str(part) for part in range(3)]
    if machines == "one machine":
        homes = [homes[0]] * 3
    with start_registry(workdir / f"sharded-{machines.replace(' ', '-')}") as shared:
        copied, requests = copy_in_shards(bulkpull_command, path, shared, homes)

    assert sorted(str(image["name"]) for image in copied) == sorted(images)
    assert {image["status"] for image in copied} == {"pushed"}
    uploaded, mounted = uploads(requests), mounts(requests)
    assert [pair for pair, count in Counter(uploaded).items() if count > 1] == []
    repositories = {str(image["target"]).partition("/")[2].rpartition(":")[0] for image in copied}
    # Every repository got the base layer once, sent there or mounted from where it was.
    placed = Counter(repo for repo, digest in uploaded + mounted if digest == source.base.digest)
    assert placed == dict.fromkeys(repositories, 1), (uploaded, mounted)
    sent = [repo for repo, digest in uploaded if digest == source.base.digest]
    if machines == "one machine":
        # They meet in the state directory: the base layer goes up once for all three.
        assert len(sent) == 1, uploaded
    else:
        # Started at once with nothing shared, each may send it once, never more.
        assert 1 <= len(sent) <= 3, uploaded
