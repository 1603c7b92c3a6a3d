"""A pull killed with SIGKILL in the middle of a large blob, or of an archive, resumes from what
it left on disk: the partial archive (and its progress file), or the cache's partial blob."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import imagefactory as f
from support.archives import recorded_progress
from support.fakeregistry import FakeRegistry, Faults, Start

import bulkpull

BLOB_BYTES = 48 * 1024 * 1024
KILL_AT = 0.85
Progress = Callable[[str], int]


async def start_cli(listing: Path, out: Path, *flags: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkpull",
        str(listing),
        "-o",
        str(out),
        "--plain-http",
        "-q",
        *flags,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def archive_progress(out: Path) -> Progress:
    """How many bytes of a blob the partial archive in ``out`` records as written."""

    return functools.partial(recorded_progress, out)


def cache_progress(cache: Path) -> Progress:
    """How many bytes of a blob the cache's partial file holds."""

    def written(digest: str) -> int:
        partial = cache / "sha256" / f"{digest.removeprefix('sha256:')}.partial"
        return partial.stat().st_size if partial.exists() else 0

    return written


async def wait_for(
    progress: Progress, digest: str, size: int, process: asyncio.subprocess.Process
) -> None:
    for _ in range(1200):
        if progress(digest) >= size:
            return
        assert process.returncode is None, "the pull ended before it could be killed"
        await asyncio.sleep(0.05)
    raise AssertionError(f"{digest} never reached {size} bytes")


@pytest.mark.parametrize("cached", [False, True], ids=["into the archive", "into a cache"])
async def test_a_killed_pull_resumes_from_what_it_wrote(
    start: Start, tmp_path: Path, cached: bool
) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(BLOB_BYTES)
    size = len(layer.compressed)
    registry.add("big/image", "1", f.make_image([layer]))
    registry.faults[layer.digest] = Faults(chunk_delay=0.02)  # a slow link: ~12 MB/s
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/big/image:1\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    flags = ("--cache", str(cache)) if cached else ()
    progress = cache_progress(cache) if cached else archive_progress(out)

    killed = await start_cli(listing, out, *flags)
    await wait_for(progress, layer.digest, int(size * KILL_AT), killed)
    killed.kill()
    await killed.wait()
    first_run = registry.bytes_sent[layer.digest]
    registry.bytes_sent.clear()
    registry.faults.clear()
    rerun = await start_cli(listing, out, *flags)
    _, err = await rerun.communicate()

    assert rerun.returncode == 0, err.decode()
    refetched = registry.bytes_sent[layer.digest] / size
    print(f"\nre-downloaded {refetched:.1%} of a {size} byte blob after SIGKILL")
    assert refetched < 0.2
    assert first_run >= size * KILL_AT
    ranged = [s for s in registry.seen if s.path.endswith(layer.digest) and "Range" in s.headers]
    assert len(ranged) == 1
    archive = out / f"127.0.0.1_{host.split(':')[1]}_big_image_1.tar"
    assert sorted(out.iterdir()) == [archive]  # no partial, no progress file, no store
    assert bulkpull_verifies(archive)


async def test_an_archive_killed_between_its_blobs_keeps_the_verified_one(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    done, slow = f.random_layer(BLOB_BYTES // 2), f.random_layer(BLOB_BYTES // 2)
    registry.add("big/image", "1", f.make_image([done, slow]))
    registry.faults[slow.digest] = Faults(chunk_delay=0.05)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/big/image:1\n")
    out = tmp_path / "out"
    progress = archive_progress(out)

    killed = await start_cli(listing, out)
    await wait_for(progress, done.digest, len(done.compressed), killed)
    await wait_for(progress, slow.digest, len(slow.compressed) // 2, killed)
    killed.kill()
    await killed.wait()
    arrived = sum(registry.bytes_sent.values())
    registry.bytes_sent.clear()
    registry.faults.clear()
    rerun = await start_cli(listing, out)
    _, err = await rerun.communicate()

    assert rerun.returncode == 0, err.decode()
    assert registry.bytes_sent[done.digest] == 0
    never_arrived = len(done.compressed) + len(slow.compressed) - arrived
    refetched = (sum(registry.bytes_sent.values()) - never_arrived) / arrived
    print(f"\nre-downloaded {refetched:.1%} of what had arrived before SIGKILL")
    assert refetched < 0.2
    (archive,) = out.iterdir()
    assert bulkpull_verifies(archive)


async def test_sigterm_stops_the_pull_keeps_the_partial_archive_and_exits_130(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(16 * 1024 * 1024)
    registry.add("big/image", "1", f.make_image([layer]))
    registry.faults[layer.digest] = Faults(chunk_delay=0.05)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/big/image:1\n")
    out = tmp_path / "out"

    process = await start_cli(listing, out)
    await wait_for(archive_progress(out), layer.digest, 2 * 1024 * 1024, process)
    process.terminate()
    _, err = await process.communicate()

    assert process.returncode == 130
    assert "interrupted: 0 of 1 images pulled" in err.decode()
    assert archive_progress(out)(layer.digest) >= 2 * 1024 * 1024
    assert not list(out.glob("*.tar"))  # only the partial, under no final name


def bulkpull_verifies(archive: Path) -> bool:
    return bulkpull.verify_archive(archive).ok
