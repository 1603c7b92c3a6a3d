"""Runs racing on one output directory, and runs stopped while they write.

Two bulkpull processes pull into the same directory at the same moment, round after round: per
image with and without ``--force``, into one bundle, and into one OCI layout. Every run must
succeed, and every archive a run reports must verify afterwards. A run stopped by SIGTERM while
it writes an archive either reports the archive, or leaves none under a final name (at most a
partial archive, with its progress, for the next run to resume).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Faults, Start

import bulkpull

ROUNDS = 3
IMAGES = 6


@pytest.fixture
async def host(start: Start) -> str:
    """Six images sharing a large base layer, each with a small layer of its own: archives
    large enough that two runs are writing them at the same time."""
    registry = FakeRegistry()
    base = raw_layer(os.urandom(20_000_000))
    for number in range(IMAGES):
        image = f.make_image([base, raw_layer(os.urandom(100_000))], label=str(number))
        registry.add(f"race/app{number}", "1", image)
    return await start(registry.app())


def raw_layer(data: bytes) -> f.Layer:
    """Bytes as a layer of their own diff_id, as an uncompressed layer is: no gzip keeps the
    setup quick."""
    return f.Layer(data, f.sha256(data))


def listing(path: Path, host: str, numbers: range) -> Path:
    path.write_text("".join(f"{host}/race/app{number}:1\n" for number in numbers))
    return path


async def pull(images: Path, report: Path, *flags: str) -> list[dict[str, object]]:
    code, out, err = await run_cli(str(images), *flags, "--report", str(report), kill_after=120)
    assert code == 0, f"{out}\n{err}"
    records: list[dict[str, object]] = json.loads(report.read_text())["images"]
    return records


MODES = {
    "per image": ((), "*.tar"),
    "per image --force": (("--force",), ""),
    "bundle": (("--bundle", "{out}/all.tar"), "all.tar"),
    "bundle --force": (("--bundle", "{out}/all.tar", "--force"), ""),
    "layout, each run its own images": (("--oci-layout", "{out}/layout"), "layout/index.json"),
}


@pytest.mark.parametrize(("flags", "written"), MODES.values(), ids=MODES.keys())
async def test_two_runs_racing_on_one_directory_both_succeed_and_leave_verified_archives(
    host: str, tmp_path: Path, flags: tuple[str, ...], written: str
) -> None:
    out = tmp_path / "out"
    layout = "--oci-layout" in flags
    everything = listing(tmp_path / "images.txt", host, range(IMAGES))
    halves = (range(IMAGES // 2), range(IMAGES // 2, IMAGES)) if layout else (range(IMAGES),) * 2
    lists = [listing(tmp_path / f"images{n}.txt", host, half) for n, half in enumerate(halves)]
    arguments = ["-o", str(out), *(flag.format(out=out) for flag in flags)]
    await pull(everything, tmp_path / "report.json", *arguments)  # blobs in the store: runs write
    for round_number in range(ROUNDS):
        if written and (layout or round_number % 2 == 0):  # else they race to find them current
            for path in out.glob(written):
                path.unlink()

        runs = await asyncio.gather(
            *(
                pull(images, tmp_path / f"report{n}.json", *arguments)
                for n, images in enumerate(lists)
            )
        )

        for records in runs:
            assert {record["status"] for record in records} <= {"pulled", "up-to-date"}
            for record in records:
                check_output(Path(str(record["archive"])), str(record["name"]))
        leftovers = [p for p in out.rglob("*") if p.name.endswith((".partial", ".lock"))]
        assert leftovers == [], f"round {round_number}"


def check_output(path: Path, name: str) -> None:
    """The archive verifies and holds ``name``; a layout names it and holds its blobs whole."""
    if path.is_dir():
        index = json.loads((path / "index.json").read_bytes())
        names = [entry["annotations"]["io.containerd.image.name"] for entry in index["manifests"]]
        assert name in names
        for blob in (path / "blobs" / "sha256").iterdir():
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
        return
    check = bulkpull.verify_archive(path)
    assert check.ok, check.problems
    assert name in check.names


async def test_sigterm_while_an_archive_is_written_installs_it_only_if_it_is_reported(
    start: Start, tmp_path: Path
) -> None:
    # A layer large enough that writing the archive takes a while, already in the cache:
    # the run downloads nothing and goes straight to copying it into the archive.
    layer = raw_layer(bytes(range(256)) * (1024 * 1024))
    image = f.make_image([layer])
    registry = FakeRegistry()
    registry.add("big/app", "1", image)
    host = await start(registry.app())
    out, cache = tmp_path / "out", tmp_path / "cache"
    store = cache / "sha256"
    store.mkdir(parents=True)
    for digest, blob in image.blobs.items():
        (store / digest.removeprefix("sha256:")).write_bytes(blob)
    images = listing(tmp_path / "images.txt", host, range(0))
    images.write_text(f"{host}/big/app:1\n")
    archive = out / f"127.0.0.1_{host.split(':')[1]}_big_app_1.tar"

    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bulkpull", str(images), "-o", str(out), "-q"),
        *("--cache", str(cache)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    while not list(out.glob("*.partial")):
        assert process.returncode is None, "the run ended before it wrote anything"
        await asyncio.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 60)

    message = err.decode()
    print(f"\n{message.strip()}; archive installed: {archive.exists()}")
    if archive.exists():
        assert "interrupted: 1 of 1 images pulled" in message
        assert bulkpull.verify_archive(archive).ok
    else:
        assert "interrupted: 0 of 1 images pulled" in message
    assert process.returncode == 130
    # Nothing else under a final name: at most the partial archive and its progress, which
    # the next run resumes.
    leftovers = sorted(path.name for path in out.iterdir() if path != archive)
    if leftovers:
        partial, progress = leftovers
        assert not archive.exists()
        assert partial.startswith(f"{archive.name}.")
        assert partial.endswith(".partial")
        assert progress == f"{partial}.progress"


async def test_two_runs_writing_the_same_archives_at_once_download_each_layer_once(
    start: Start, tmp_path: Path
) -> None:
    # Each archive is written by one of the runs; the other waits for it and finds it in
    # place. (Layers shared between different archives are coordinated by --cache, whose
    # store locks each blob.)
    registry = FakeRegistry()
    layers = set()
    for number in range(IMAGES):
        layer = raw_layer(os.urandom(4_000_000))
        registry.add(f"race/app{number}", "1", f.make_image([layer], label=str(number)))
        registry.faults[layer.digest] = Faults(chunk_delay=0.01)  # both runs start meanwhile
        layers.add(layer.digest)
    host = await start(registry.app())
    images = listing(tmp_path / "images.txt", host, range(IMAGES))
    out = tmp_path / "out"

    runs = await asyncio.gather(
        *(pull(images, tmp_path / f"report{n}.json", "-o", str(out)) for n in range(2))
    )

    # Layers, that is: each run reads the (small) configs it checks before it writes.
    gets = [s.path.rsplit("/", 1)[1] for s in registry.seen if s.method == "GET"]
    assert sorted(digest for digest in gets if digest in layers) == sorted(layers)
    for records in runs:
        assert {record["status"] for record in records} <= {"pulled", "up-to-date"}
        for record in records:
            check_output(Path(str(record["archive"])), str(record["name"]))
