"""A pull killed with SIGKILL in the middle of a large blob resumes from what it left on disk."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Faults, Start

BLOB_BYTES = 48 * 1024 * 1024
KILL_AT = 0.85


async def start_cli(listing: Path, out: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkpull",
        str(listing),
        "-o",
        str(out),
        "--plain-http",
        "-q",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_partial(partial: Path, size: int, process: asyncio.subprocess.Process) -> None:
    for _ in range(1200):
        if partial.exists() and partial.stat().st_size >= size:
            return
        assert process.returncode is None, "the pull ended before it could be killed"
        await asyncio.sleep(0.05)
    raise AssertionError(f"{partial} never reached {size} bytes")


async def test_a_killed_pull_resumes_from_the_partial_blob_on_disk(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(BLOB_BYTES)
    size = len(layer.compressed)
    registry.add("big/image", "1", f.make_image([layer]))
    registry.faults[layer.digest] = Faults(chunk_delay=0.02)  # a slow link: ~12 MB/s
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/big/image:1\n")
    out = tmp_path / "out"
    partial = out / ".bulkpull-store" / "sha256" / f"{layer.digest[7:]}.partial"

    killed = await start_cli(listing, out)
    await wait_for_partial(partial, int(size * KILL_AT), killed)
    killed.kill()
    await killed.wait()
    first_run = registry.bytes_sent[layer.digest]
    registry.bytes_sent.clear()
    registry.faults.clear()
    rerun = await start_cli(listing, out)
    _, err = await rerun.communicate()

    assert rerun.returncode == 0, err.decode()
    refetched = registry.bytes_sent[layer.digest] / size
    print(f"\nre-downloaded {refetched:.1%} of a {size} byte blob after SIGKILL")
    assert refetched < 0.2
    assert first_run >= size * KILL_AT
    ranged = [s for s in registry.seen if s.path.endswith(layer.digest) and "Range" in s.headers]
    assert len(ranged) == 1
    assert not partial.exists()
    assert (out / f"127.0.0.1_{host.split(':')[1]}_big_image_1.tar").is_file()


async def test_sigterm_stops_the_pull_keeps_partial_blobs_and_exits_130(
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
    partial = out / ".bulkpull-store" / "sha256" / f"{layer.digest[7:]}.partial"

    process = await start_cli(listing, out)
    await wait_for_partial(partial, 2 * 1024 * 1024, process)
    process.terminate()
    _, err = await process.communicate()

    assert process.returncode == 130
    assert "interrupted: 0 of 1 images pulled" in err.decode()
    assert partial.stat().st_size >= 2 * 1024 * 1024
    assert not list(out.glob("*.tar*"))
