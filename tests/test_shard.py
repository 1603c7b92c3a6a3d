"""``--shard K/N``: N processes given one list each take a disjoint part, and together all of it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start

from bulkpull import InvalidOptionError, Shard, image_spec, parse_reference

NAMES = [f"registry.example:5000/team/app-{number}:{number % 7}" for number in range(300)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_the_parts_are_disjoint_and_together_are_the_list(count: int) -> None:
    specs = [image_spec(name) for name in NAMES]

    parts = [Shard(index, count).select(specs) for index in range(count)]

    taken = [spec.source for part in parts for spec in part]
    assert sorted(map(str, taken)) == sorted(map(str, (spec.source for spec in specs)))
    assert len(taken) == len(set(taken))


def test_each_part_of_a_long_list_gets_a_fair_share() -> None:
    specs = [image_spec(name) for name in NAMES]

    sizes = [len(Shard(index, 3).select(specs)) for index in range(3)]

    assert all(60 <= size <= 140 for size in sizes), sizes  # 100 each, give or take


def test_a_part_keeps_the_order_of_the_list() -> None:
    specs = [image_spec(name) for name in NAMES]

    part = Shard(1, 4).select(specs)

    assert part == [spec for spec in specs if spec in part]


def test_one_image_written_two_ways_lands_in_one_part() -> None:
    short, long = parse_reference("alpine"), parse_reference("docker.io/library/alpine:latest")

    assert [Shard(index, 5).takes(short) for index in range(5)] == [
        Shard(index, 5).takes(long) for index in range(5)
    ]


def test_every_line_naming_one_source_lands_in_one_part() -> None:
    specs = [image_spec("alpine:3.20"), image_spec("alpine:3.20", "mirror/alpine:stable")]

    parts = [len(Shard(index, 4).select(specs)) for index in range(4)]

    assert sorted(parts) == [0, 0, 0, 2]


def test_the_partition_is_the_same_in_another_process() -> None:
    """Python salts ``hash`` per process; the parts must not depend on it."""
    here = [Shard(2, 5).takes(parse_reference(name)) for name in NAMES]
    program = (
        "import json, sys; from bulkpull import Shard, parse_reference; "
        "print(json.dumps([Shard(2, 5).takes(parse_reference(n)) for n in json.load(sys.stdin)]))"
    )

    there = subprocess.run(
        [sys.executable, "-c", program],
        input=json.dumps(NAMES),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )

    assert json.loads(there.stdout) == here


@pytest.mark.parametrize("text", ["0/3", " 2/3 ", "0/1"])
def test_a_shard_reads_as_people_write_it(text: str) -> None:
    assert str(Shard.parse(text)) == text.strip()


@pytest.mark.parametrize(
    "text", ["3/3", "0/0", "-1/3", "1", "a/b", "1/3/5", "", "1.0/3", "\u0663/5", "1/\uff13"]
)
def test_a_shard_outside_its_count_is_refused(text: str) -> None:
    with pytest.raises(InvalidOptionError, match="expected K/N"):
        Shard.parse(text)


async def test_three_processes_on_one_list_pull_every_image_exactly_once(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    base = f.random_layer(2000, name="base.bin")
    for number in range(9):
        registry.add(f"team/app{number}", "1", f.make_image([base, f.random_layer(900)]))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{host}/team/app{number}:1\n" for number in range(9)))
    outputs = [tmp_path / f"shard{index}" for index in range(3)]

    runs = await asyncio.gather(
        *(
            run_cli(str(listing), "-o", str(out), "--plain-http", "--shard", f"{index}/3")
            for index, out in enumerate(outputs)
        )
    )

    assert [code for code, _, _ in runs] == [0, 0, 0], runs
    archives = [path.name for out in outputs for path in out.glob("*.tar")]
    assert len(archives) == len(set(archives)) == 9
    manifest_gets = Counter(
        seen.path for seen in registry.seen if seen.method == "GET" and "/manifests/" in seen.path
    )
    assert len(manifest_gets) == 9
    assert set(manifest_gets.values()) == {1}
    for index, (_, out, err) in enumerate(runs):
        assert f"(shard {index}/3 of 9 images)" in out + err


async def test_a_part_the_list_leaves_empty_succeeds_with_nothing_to_do(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("team/app", "1", f.make_image([f.random_layer(900)]))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/team/app:1\n")
    empty = next(
        index
        for index in range(3)
        if not Shard(index, 3).takes(parse_reference(f"{host}/team/app:1"))
    )

    code, out, err = await run_cli(
        str(listing),
        "-o",
        str(tmp_path / "out"),
        "--report",
        str(tmp_path / "report.json"),
        env={"BULKPULL_SHARD": f"{empty}/3"},
    )

    assert code == 0, err
    assert f"pulling 0 images (shard {empty}/3 of 1 image)" in out + err
    assert json.loads((tmp_path / "report.json").read_text())["images"] == []
    assert registry.seen == []


async def test_a_bad_shard_is_a_usage_error_before_any_request(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/team/app:1\n")

    code, _, err = await run_cli(str(listing), "--shard", "3/3")

    assert code == 2
    assert "--shard: shard 3/3: K must be below N; expected K/N, a part K (from 0) of N" in err
    assert registry.seen == []


@pytest.mark.parametrize(
    ("text", "why"), [("3/3", "K must be below N"), ("0/0", "N must be at least 1")]
)
def test_a_shard_outside_its_count_says_which_number_is_wrong(text: str, why: str) -> None:
    with pytest.raises(InvalidOptionError, match=f"^shard {text}: {why}; expected K/N"):
        Shard.parse(text)


async def test_a_bad_shard_from_the_environment_is_named_as_the_variable(tmp_path: Path) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("127.0.0.1:1/team/app:1\n")

    code, _, err = await run_cli(str(listing), env={"BULKPULL_SHARD": "5/3"})

    assert code == 2
    assert err.startswith("bulkpull: BULKPULL_SHARD: shard 5/3: K must be below N;")
