"""A full disk, for real: a small tmpfs mounted for the test and filled up.

When an archive (or the cache) cannot be written for lack of space, each image fails naming
the file and the reason, the run still prints its summary and writes its report (elsewhere), and no
temporary file is left to fill the disk further. Mounting needs root; without it the test is
skipped (failed under ``CI=true``).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start
from support.services import unavailable

import bulkpull
from bulkpull import OutputError, PullOptions, RetryPolicy

NO_SPACE = os.strerror(errno.ENOSPC)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``tmp_path / "disk"``, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs for a full disk needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Write a file that leaves at most ``leave`` bytes free on ``disk``."""
    with (disk / "filler").open("wb", buffering=0) as filler:
        while _free(disk) > leave:
            try:
                filler.write(b"\0" * min(4096, max(_free(disk) - leave, 1)))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


def _free(disk: Path) -> int:
    status = os.statvfs(disk)
    return status.f_bavail * status.f_frsize


def leftovers(disk: Path) -> list[str]:
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file())


@pytest.fixture
async def host(start: Start) -> str:
    """Two indexes of one image each: their manifests are stored before any blob is fetched."""
    registry = FakeRegistry()
    for name in ("one", "two"):
        image = f.make_image([f.random_layer(600_000)], label=name)
        registry.add(f"x/{name}", "1", f.make_index([image]))
    return await start(registry.app())


async def test_a_full_disk_fails_each_image_naming_the_file_and_the_run_still_reports(
    host: str, disk: Path, tmp_path: Path
) -> None:
    fill(disk)
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/one:1\n{host}/x/two:1\n")
    report = tmp_path / "report.json"

    code, out, err = await run_cli(str(listing), "-o", str(disk), "--report", str(report))

    assert code == 1, err
    assert "Traceback" not in err
    assert "2 images: 2 failed" in out
    records = json.loads(report.read_text())["images"]
    for record in records:
        assert record["error"]["type"] == "OutputError"
        message = record["error"]["message"]
        assert message.startswith(f"cannot write {disk}/127.0.0.1_")
        assert message.endswith(f".tar: {NO_SPACE}")
    assert leftovers(disk) == ["filler"]


@pytest.mark.parametrize("cached", [False, True], ids=["no cache", "a cache elsewhere"])
async def test_an_archive_that_does_not_fit_fails_its_image_and_leaves_no_temporary(
    host: str, disk: Path, tmp_path: Path, cached: bool
) -> None:
    cache = tmp_path / "cache" if cached else None
    options = PullOptions(plain_http=True, retry=RetryPolicy(retries=0), cache_dir=cache)
    fill(disk, leave=200_000)  # room for part of the archive

    report = await bulkpull.pull_images([f"{host}/x/one:1"], disk, options)

    (result,) = report.results
    assert isinstance(result.error, OutputError)
    archive = disk / f"127.0.0.1_{host.split(':')[1]}_x_one_1.tar"
    assert str(result.error) == f"cannot write {archive}: {NO_SPACE}"
    assert leftovers(disk) == ["filler"]
    # The archive is allocated whole before its layer (600 kB) is asked for: no download is
    # wasted on an archive that cannot fit.
    assert report.bytes_downloaded < 600_000
    again = await bulkpull.pull_images([f"{host}/x/one:1"], tmp_path / "roomy", options)
    assert again.ok
