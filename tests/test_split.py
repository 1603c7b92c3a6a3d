"""A bundle split into volumes (``--split``): volumes of at most the size asked for, written as
the run goes, that ``cat`` joins into the very bundle an unsplit run writes, with a sha256 list
``sha256sum -c`` reads; read back by push, verify and a rerun without being joined."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from support import imagefactory as f
from support.archives import recorded_progress
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Faults, Start

import bulkpull
from bulkpull import Destination, PullOptions, PullReport, SourceError, Status
from bulkpull.digest import Digest
from bulkpull.output import read_place, read_source

MiB = 1024 * 1024


@dataclasses.dataclass
class Served:
    registry: FakeRegistry
    host: str

    def names(self) -> list[str]:
        return [f"{self.host}/app/n{number}:1" for number in range(3)]


@pytest.fixture
async def served(start: Start) -> Served:
    """Three images of about 1.5 MiB each, sharing a base layer."""
    registry = FakeRegistry()
    base = f.random_layer(700_000)
    for number in range(3):
        image = f.make_image([base, f.random_layer(900_000 + number)], label=str(number))
        registry.add(f"app/n{number}", "1", image)
    return Served(registry, await start(registry.app()))


def joined(path: Path) -> bytes:
    volumes = sorted(path.parent.glob(path.name + ".0*"))
    return b"".join(volume.read_bytes() for volume in volumes)


async def test_volumes_join_into_the_bundle_an_unsplit_run_writes(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    plain, split = tmp_path / "plain" / "b.tar", tmp_path / "split" / "b.tar"

    assert (await bulkpull.pull_images(served.names(), Destination.bundle(plain), options)).ok
    report = await bulkpull.pull_images(
        served.names(), Destination.bundle(split, split=MiB), options
    )

    assert report.ok, report.failed
    volumes = sorted(split.parent.glob("b.tar.0*"))
    assert len(volumes) == -(-plain.stat().st_size // MiB)
    assert all(volume.stat().st_size == MiB for volume in volumes[:-1])
    assert joined(split) == plain.read_bytes()
    assert sorted(p.name for p in split.parent.iterdir()) == [v.name for v in volumes] + [
        "b.tar.sha256"
    ]


async def pull_split(served: Served, bundle: Path, options: PullOptions, volume: int) -> PullReport:
    return await bulkpull.pull_images(
        served.names(), Destination.bundle(bundle, split=volume), options
    )


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


async def test_sha256sum_checks_every_volume_against_the_list(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    report = await pull_split(served, bundle, options, MiB)

    checked = await asyncio.to_thread(
        subprocess.run, ["sha256sum", "-c", "b.tar.sha256"], cwd=tmp_path, capture_output=True
    )

    assert checked.returncode == 0, checked.stderr
    volumes = sorted(tmp_path.glob("b.tar.0*"))
    assert checked.stdout.decode().splitlines() == [f"{v.name}: OK" for v in volumes]
    assert list(report.volumes) == [*volumes, tmp_path / "b.tar.sha256"]
    assert report.to_json()["volumes"] == [str(path) for path in report.volumes]


async def test_a_rerun_with_the_same_split_finds_the_volumes_current(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    await pull_split(served, bundle, options, MiB)
    before = {path: path.stat().st_ino for path in tmp_path.iterdir()}

    again = await pull_split(served, bundle, options, MiB)

    assert {result.status for result in again.results} == {Status.UP_TO_DATE}
    assert {path: path.stat().st_ino for path in tmp_path.iterdir()} == before
    assert again.volumes == tuple(sorted(before))


async def test_a_rerun_with_larger_volumes_leaves_none_of_the_old_set(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    await pull_split(served, bundle, options, MiB)
    whole = joined(bundle)

    report = await pull_split(served, bundle, options, 2 * MiB)

    assert report.ok, report.failed
    volumes = sorted(tmp_path.glob("b.tar.0*"))
    assert len(volumes) == -(-len(whole) // (2 * MiB))
    assert joined(bundle) == whole
    assert sorted(tmp_path.iterdir()) == [*volumes, tmp_path / "b.tar.sha256"]


async def test_a_split_run_removes_the_older_unsplit_bundle_under_its_name(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    await bulkpull.pull_images(served.names()[:2], Destination.bundle(bundle), options)

    report = await pull_split(served, bundle, options, MiB)

    assert report.ok, report.failed
    assert sorted(tmp_path.iterdir()) == list(report.volumes)
    assert len(bulkpull.verify_archive(bundle).names) == 3  # the volumes, not the old bundle


async def test_an_unsplit_run_removes_the_older_volumes_under_its_name(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    await pull_split(served, bundle, options, MiB)

    report = await bulkpull.pull_images(served.names(), Destination.bundle(bundle), options)

    assert report.ok, report.failed
    assert sorted(tmp_path.iterdir()) == [bundle]


async def test_a_current_split_rerun_removes_a_plain_bundle_left_beside_it(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    first = await pull_split(served, bundle, options, MiB)
    bundle.write_bytes(b"an older bundle")

    again = await pull_split(served, bundle, options, MiB)

    assert {result.status for result in again.results} == {Status.UP_TO_DATE}
    assert sorted(tmp_path.iterdir()) == list(first.volumes)


async def test_a_checksum_the_user_wrote_beside_a_plain_bundle_stays(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    await bulkpull.pull_images(served.names(), Destination.bundle(bundle), options)
    checksum = tmp_path / "b.tar.sha256"
    checksum.write_text(f"{Digest.of(bundle.read_bytes()).hex}  b.tar\n")

    again = await bulkpull.pull_images(served.names(), Destination.bundle(bundle), options)

    assert {result.status for result in again.results} == {Status.UP_TO_DATE}
    assert checksum.read_text().endswith("  b.tar\n")


async def test_verify_names_a_damaged_volume_and_a_missing_one(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    await pull_split(served, bundle, options, MiB)
    good = [bulkpull.verify_archive(tmp_path / name) for name in ("b.tar.sha256", "b.tar.001")]
    flip_byte(tmp_path / "b.tar.002", 1000)
    damaged = bulkpull.verify_archive(tmp_path / "b.tar.sha256")
    (tmp_path / "b.tar.003").unlink()
    missing = bulkpull.verify_archive(bundle)

    assert all(check.ok and len(check.names) == 3 for check in good)
    assert damaged.problems[0].startswith("b.tar.002: sha256 ")
    assert damaged.problems[0].endswith("does not match b.tar.sha256 " + listed(tmp_path, 2))
    assert any("content hashes to" in problem for problem in damaged.problems[1:])
    assert missing.problems[-1] == "b.tar.003 is missing"
    assert "b.tar.002: sha256 " in missing.problems[0]


def listed(directory: Path, number: int) -> str:
    line = (directory / "b.tar.sha256").read_text().splitlines()[number - 1]
    return f"({line.split()[0]})"


async def test_a_push_source_reads_blobs_across_volume_boundaries(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    plain, split = tmp_path / "plain" / "b.tar", tmp_path / "split" / "b.tar"
    assert (await bulkpull.pull_images(served.names(), Destination.bundle(plain), options)).ok
    await pull_split(served, split, options, MiB)

    whole = read_source(plain)
    volumes = read_source(split.with_name("b.tar.001"))
    spanning = [p for p in volumes.blobs().values() if p.in_one_file() is None]
    read = {
        digest: b"".join([chunk async for chunk in read_place(place)])
        for digest, place in volumes.blobs().items()
    }

    assert spanning
    assert [entry.descriptor for entry in volumes.entries] == [
        entry.descriptor for entry in whole.entries
    ]
    assert set(read) == set(whole.blobs())
    assert all(Digest.of(data) == digest for digest, data in read.items())


async def test_a_push_names_the_damaged_volume_before_sending_anything(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.tar"
    await pull_split(served, bundle, options, MiB)
    flip_byte(tmp_path / "b.tar.002", 10)

    with pytest.raises(SourceError) as raised:
        bulkpull.plan_push([tmp_path / "b.tar.sha256"], "127.0.0.1:1/mirror")

    assert "b.tar.002: sha256 " in str(raised.value)
    assert "b.tar.001" not in str(raised.value)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--split", "10MiB"], "--split writes the --bundle in volumes: give --bundle FILE"),
        (["--bundle", "{d}/b.tar", "--split", "10 parsecs"], "--split: size '10 parsecs'"),
        (["--bundle", "{d}/b.tar", "--split", "512"], "at least 1048576 bytes"),
        (["--bundle", "{d}/b.tar", "-o", "{d}/o", "--split", "4GiB"], "drop -o/--oci-layout"),
        (["--to", "127.0.0.1:1", "--split", "4GiB"], "drop -o/--bundle/--oci-layout/--split"),
    ],
)
async def test_split_is_refused_as_a_usage_error_unless_it_splits_the_bundle_alone(
    tmp_path: Path, flags: list[str], said: str
) -> None:
    given = [flag.format(d=tmp_path) for flag in flags]
    code, out, err = await run_cli("-i", "127.0.0.1:1/app:1", "--plain-http", *given)

    assert code == 2, out + err
    assert said in " ".join(err.split())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GiB", 4 * 1024**3), ("700MB", 700_000_000), ("10MiB", 10 * MiB), ("2G", 2 * 1024**3)],
)
def test_sizes_are_read_in_si_and_iec_units(text: str, size: int) -> None:
    assert bulkpull.parse_size(text) == size


@dataclasses.dataclass
class Killed:
    """A split pull killed mid-blob: the partial volumes it left, and how to run it again."""

    registry: FakeRegistry
    layer: f.Layer
    bundle: Path
    args: tuple[str, ...]
    partials: list[str]

    def sent(self) -> int:
        return self.registry.bytes_sent[self.layer.digest]


@pytest.fixture
async def killed(start: Start, tmp_path: Path) -> Killed:
    registry = FakeRegistry()
    layer = f.random_layer(6 * MiB)
    registry.add("big/image", "1", f.make_image([layer]))
    registry.faults[layer.digest] = Faults(chunk_delay=0.05)  # 256 KiB every 50 ms
    host = await start(registry.app())
    bundle = tmp_path / "out" / "b.tar"
    args = ("-i", f"{host}/big/image:1", "--plain-http", "-q", "--bundle", str(bundle))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkpull",
        *args,
        "--split",
        "1MiB",
        stderr=asyncio.subprocess.DEVNULL,
    )
    while recorded_progress(bundle.parent, layer.digest) < 3 * MiB:
        assert process.returncode is None, "the pull ended before it could be killed"
        await asyncio.sleep(0.05)
    process.kill()
    await process.wait()
    partials = sorted(path.name for path in bundle.parent.glob("b.tar.volumes.*.partial*"))
    registry.bytes_sent.clear()
    registry.faults.clear()
    return Killed(registry, layer, bundle, args, partials)


async def test_a_split_pull_killed_mid_blob_resumes_its_volumes(
    killed: Killed, tmp_path: Path
) -> None:
    code, out, err = await run_cli(*killed.args, "--split", "1MiB")

    assert code == 0, out + err
    volumes = sorted(killed.bundle.parent.glob("b.tar.0*"))
    head = killed.partials[0]
    others = [f"{head}.{number:03d}" for number in range(2, len(volumes) + 1)]
    assert killed.partials == [head, *others, f"{head}.progress"]  # every volume, its progress
    assert killed.sent() < 3.5 * MiB
    assert not list(killed.bundle.parent.glob("*.partial*"))
    assert bulkpull.verify_archive(killed.bundle.with_name("b.tar.sha256")).ok
    plain = tmp_path / "plain.tar"
    assert (await run_cli(*killed.args[:-1], str(plain)))[0] == 0
    assert joined(killed.bundle) == plain.read_bytes()


@pytest.mark.parametrize("split", [["--split", "2MiB"], []], ids=["other volumes", "unsplit"])
async def test_a_rerun_of_other_volumes_or_none_removes_the_partial_volumes_once_done(
    killed: Killed, split: list[str]
) -> None:
    code, out, err = await run_cli(*killed.args, *split)

    assert code == 0, out + err
    assert killed.sent() == len(killed.layer.compressed)  # started anew
    assert not list(killed.bundle.parent.glob("*.partial*"))
    written_now = sorted(path.name for path in killed.bundle.parent.iterdir())
    assert bulkpull.verify_archive(killed.bundle.parent / written_now[-1]).ok
