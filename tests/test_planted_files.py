"""Links, FIFOs and hard links planted where bulkpull writes or reads: never followed, never
waited on, never written through.

Someone who can write into the output directory (a shared cache, a careless script) may put a
link at a name bulkpull uses. A file outside the output, ``victim``, must keep its bytes, no file
may be created through a link, and a FIFO must never hang the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start

import bulkpull

PRECIOUS = b"precious bytes that are not bulkpull's"
# Long enough for a run of two small images; a run that hangs on a FIFO never ends.
RUN_TIMEOUT = 60.0


@dataclass
class Setup:
    registry: FakeRegistry
    host: str
    image: f.Image
    tmp: Path

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    @property
    def layout(self) -> Path:
        return self.tmp / "layout"

    @property
    def archive(self) -> Path:
        return self.out / f"127.0.0.1_{self.host.split(':')[1]}_x_y_1.tar"

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"

    def stored(self, suffix: str, store: Path | None = None) -> Path:
        hex_digest = self.image.layers[0].digest.removeprefix("sha256:")
        return (store or self.cache) / "sha256" / f"{hex_digest}{suffix}"


@pytest.fixture
async def setup(start: Start, tmp_path: Path) -> Setup:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(300_000)])
    registry.add("x/y", "1", image)
    return Setup(registry, await start(registry.app()), image, tmp_path)


async def pull(setup: Setup, *flags: str) -> tuple[int, str, str]:
    listing = setup.tmp / "images.txt"
    listing.write_text(f"{setup.host}/x/y:1\n")
    return await run_cli(str(listing), *flags, kill_after=RUN_TIMEOUT)


def symlink_to_victim(victim: Path) -> Callable[[Path], None]:
    return lambda at: at.symlink_to(victim)


def hard_link_to_victim(victim: Path) -> Callable[[Path], None]:
    return lambda at: at.hardlink_to(victim)


# Where a link is planted (given the setup), and the flags of the run that meets it.
PLANTED: dict[str, tuple[Callable[[Setup], Path], tuple[str, ...]]] = {
    "the archive's old fixed temporary name": (
        lambda s: s.archive.with_name(s.archive.name + ".partial"),
        (),
    ),
    "a partial archive as an earlier run leaves one": (
        lambda s: s.archive.with_name(s.archive.name + ".0123456789ab.partial"),
        (),
    ),
    "the cache's partial blob": (lambda s: s.stored(".partial"), ("cache",)),
    "the layout's partial blob": (lambda s: s.stored(".partial", s.layout / "blobs"), ("layout",)),
    "the layout's old fixed index temporary": (
        lambda s: s.layout / "index.json.partial",
        ("layout",),
    ),
    "the report's old fixed temporary": (lambda s: s.tmp / "report.json.partial", ()),
    "the lock file's old fixed temporary": (lambda s: s.tmp / "images.lock.partial", ()),
}


def run_flags(setup: Setup, kind: tuple[str, ...]) -> list[str]:
    """The flags of a run into an OCI layout (``layout``), or into archives, with a cache
    (``cache``) or without."""
    target = ["--oci-layout", str(setup.layout)] if "layout" in kind else ["-o", str(setup.out)]
    cache = ["--cache", str(setup.cache)] if "cache" in kind else []
    written = ["--report", str(setup.tmp / "report.json"), "--lock", str(setup.tmp / "images.lock")]
    return [*target, *cache, *written]


@pytest.mark.parametrize("link", [symlink_to_victim, hard_link_to_victim], ids=["symlink", "hard"])
@pytest.mark.parametrize(("where", "kind"), PLANTED.values(), ids=PLANTED.keys())
async def test_a_link_planted_at_a_name_bulkpull_writes_is_never_written_through(
    setup: Setup,
    where: Callable[[Setup], Path],
    kind: tuple[str, ...],
    link: Callable[[Path], Callable[[Path], None]],
) -> None:
    victim = setup.tmp / "victim"
    victim.write_bytes(PRECIOUS)
    planted = where(setup)
    planted.parent.mkdir(parents=True, exist_ok=True)
    link(victim)(planted)

    code, _, err = await pull(setup, *run_flags(setup, kind))

    assert code == 0, err
    assert victim.read_bytes() == PRECIOUS
    written = setup.layout / "index.json" if "layout" in kind else setup.archive
    for final in (written, setup.tmp / "report.json", setup.tmp / "images.lock"):
        assert final.is_file()
        assert not final.is_symlink()
    if "layout" not in kind:
        assert bulkpull.verify_archive(setup.archive).ok


async def test_a_link_at_the_lock_file_name_creates_nothing_where_it_points(setup: Setup) -> None:
    target = setup.tmp / "elsewhere" / "created-through-a-link"
    target.parent.mkdir()
    lock = setup.stored(".lock")
    lock.parent.mkdir(parents=True)
    lock.symlink_to(target)

    code, _, err = await pull(setup, "-o", str(setup.out), "--cache", str(setup.cache))

    assert code == 0, err
    assert not target.exists()
    assert not lock.is_symlink()


FIFOS: dict[str, tuple[Callable[[Setup], Path], tuple[str, ...], bool]] = {
    # where, run flags, whether the image fails (a FIFO at a final name) or is pulled
    "the archive's final name": (lambda s: s.archive, (), True),
    "the layout's index.json": (lambda s: s.layout / "index.json", ("layout",), True),
    "the cache's partial blob": (lambda s: s.stored(".partial"), ("cache",), False),
    "the cache's lock file": (lambda s: s.stored(".lock"), ("cache",), False),
    "a partial archive as an earlier run leaves one": (
        lambda s: s.archive.with_name(s.archive.name + ".0123456789ab.partial"),
        (),
        False,
    ),
}


@pytest.mark.parametrize(("where", "kind", "fails"), FIFOS.values(), ids=FIFOS.keys())
async def test_a_fifo_where_bulkpull_reads_never_hangs_the_run(
    setup: Setup, where: Callable[[Setup], Path], kind: tuple[str, ...], fails: bool
) -> None:
    fifo = where(setup)
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)

    code, _, err = await pull(setup, *run_flags(setup, kind))

    report = json.loads((setup.tmp / "report.json").read_text())
    (record,) = report["images"]
    if fails:
        assert code == 1, err
        assert record["error"]["message"] == f"{fifo} is a FIFO, not a regular file"
    else:
        assert code == 0, err
        assert record["status"] == "pulled"
    assert "Traceback" not in err


async def test_a_stored_blob_named_by_a_lying_head_is_not_read_as_a_manifest(
    setup: Setup,
) -> None:
    cached = ("-o", str(setup.out), "--cache", str(setup.cache))
    code, _, err = await pull(setup, *cached)
    assert code == 0, err
    # A layer of 512 MiB in the cache (sparse: it costs no disk), and a registry whose
    # Docker-Content-Digest names it as the manifest of x/y:1.
    large = bulkpull.Digest.of(b"a large layer")
    with (setup.cache / "sha256" / large.hex).open("wb") as layer:
        layer.truncate(512 * 1024 * 1024)
    setup.registry.content_digest_override = str(large)

    listing = setup.tmp / "images.txt"
    code, err, peak_kib = await run_measuring_memory(str(listing), *cached, "--force")

    assert code == 1, err
    assert "Docker-Content-Digest" in err
    print(f"\npeak RSS {peak_kib // 1024} MiB with a 512 MiB blob named as the manifest")
    assert peak_kib < 256 * 1024


async def run_measuring_memory(*args: str) -> tuple[int, str, int]:
    """Run the command line; its exit code, standard error, and its peak RSS in KiB (from a
    parent of its own, whose only child it is)."""
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'bulkpull', *sys.argv[1:]],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "sys.stderr.buffer.write(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(done.returncode)\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        measure,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode(), int(out)
