"""Shards of one list copying into one registry: where each guesses the others put a blob,
and how one that guessed right mounts it instead of sending it; processes sharing a state
directory find the blob where the first of them put it."""

from __future__ import annotations

import itertools
from pathlib import Path

from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Start
from support.fakeupload import FakeUploads

import bulkpull
from bulkpull import PullOptions, PushOptions, PushStatus, RetryPolicy, Shard
from bulkpull.engine.peers import mount_guesses

TARGET = "internal:5000/mirror"
BASE = f.random_layer(100_000)
ONE = f.make_image([BASE, f.random_layer(5_000)], label="one")
TWO = f.make_image([BASE, f.random_layer(6_000)], label="two")


def plan(*lines: str) -> list[bulkpull.ImageSpec]:
    return bulkpull.copy_plan(bulkpull.parse_image_list(lines, "images.txt"), TARGET)


def shard_of(spec: bulkpull.ImageSpec, count: int) -> Shard:
    return next(Shard(k, count) for k in range(count) if Shard(k, count).takes(spec.source))


def test_a_repository_guesses_the_nearest_image_another_shard_copies() -> None:
    listed = plan(*(f"team/app{number}:1" for number in range(30)))
    shard = shard_of(listed[10], 3)

    guesses = mount_guesses(listed, shard)

    mine = [spec for spec in listed if shard.takes(spec.source)]
    assert set(guesses) == {spec.target.path for spec in mine}
    for spec in mine:
        at = listed.index(spec)
        others = [i for i, other in enumerate(listed) if not shard.takes(other.source)]
        nearest = min(others, key=lambda i: (abs(i - at), i))
        assert guesses[spec.target.path] == listed[nearest].target.path


def test_every_shard_guesses_alike_and_never_its_own_repository() -> None:
    listed = plan(*(f"team/app{number % 7}:{number}" for number in range(40)))

    for index in range(4):
        guesses = mount_guesses(listed, Shard(index, 4))
        assert guesses == mount_guesses(list(listed), Shard(index, 4))
        assert all(guess != repository for repository, guess in guesses.items())


def test_a_whole_list_makes_no_guess() -> None:
    listed = plan("team/a:1", "team/b:1")

    assert mount_guesses(listed, None) == {}
    assert mount_guesses(listed, Shard(0, 1)) == {}


def options(tmp_path: Path, state: str) -> tuple[PullOptions, PushOptions]:
    pull = PullOptions(
        plain_http=True, retry=RetryPolicy(retries=1, delay=0.0), cache_dir=tmp_path / "store"
    )
    return pull, PushOptions.from_pull(pull, state_dir=tmp_path / state)


def split_pair(host: str) -> tuple[list[str], Shard]:
    """``team/one:1`` and a name of ``TWO`` that the other of two shards takes."""
    one = f"{host}/team/one:1"
    mine = shard_of(bulkpull.image_spec(one), 2)
    for attempt in itertools.count():
        two = f"{host}/team/two{attempt}:1"
        if not mine.takes(bulkpull.parse_reference(two)):
            return [one, two], mine
    raise AssertionError("unreachable")


async def test_a_shard_mounts_a_shared_layer_from_where_another_shard_put_it(
    start: Start, tmp_path: Path
) -> None:
    source = FakeRegistry()
    source.add("team/one", "1", ONE)
    source_host = await start(source.app())
    lines, mine = split_pair(source_host)
    source.add(lines[1].partition("/")[2].rpartition(":")[0], "1", TWO)
    uploads = FakeUploads(FakeRegistry(), tmp_path / "target")
    target = await start(uploads.app())
    other = bulkpull.copy_plan(bulkpull.parse_image_list(lines, "l"), target)[1].target.path
    uploads.link(other, BASE.digest, len(BASE.compressed))  # where the other shard put it

    pull, push = options(tmp_path, "state")
    report = await bulkpull.copy_images(lines, target, pull, push=push, shard=mine)

    (result,) = report.results
    assert result.status is PushStatus.PUSHED
    assert uploads.mounts == [(result.spec.target.path, BASE.digest, other)]
    assert source.count("GET", BASE.digest) == 0


async def test_runs_sharing_a_state_directory_mount_from_where_the_first_put_a_blob(
    start: Start, tmp_path: Path
) -> None:
    source = FakeRegistry()
    source.add("team/one", "1", ONE)
    source.add("team/two", "1", TWO)
    source_host = await start(source.app())
    uploads = FakeUploads(FakeRegistry(), tmp_path / "target")
    target = await start(uploads.app())

    pull, push = options(tmp_path, "shared-state")
    first = await bulkpull.copy_images([f"{source_host}/team/one:1"], target, pull, push=push)
    second = await bulkpull.copy_images([f"{source_host}/team/two:1"], target, pull, push=push)

    assert (first.blobs.uploaded, second.blobs.mounted) == (3, 1)
    assert uploads.mounts == [("team/two", BASE.digest, "team/one")]
