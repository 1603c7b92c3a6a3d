"""The fault table: what a hostile network does to one blob, and what bulkpull makes of it.

Each row injects one fault into the fake registry and asserts the outcome (a verified blob, or
the exact error), how many times the blob was requested and how many of its bytes were served.
"""

from __future__ import annotations

import copy
import dataclasses
import email.utils
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Faults, Start

import bulkpull
from bulkpull import DigestMismatchError, NotFoundError, PullOptions, RegistryError

LAYER = f.random_layer(2_000_000)
SIZE = len(LAYER.compressed)
HALF = 1_000_000


def http_date_in(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


@dataclass(frozen=True)
class Row:
    faults: Faults
    gets: int
    bytes_served: int
    error: type[Exception] | None = None
    message: str = ""
    auth: str = "none"
    token_requests: int | None = None


ROWS = {
    "reset mid-body resumes with Range": Row(Faults(reset_after=HALF), 2, SIZE),
    "503 then success": Row(Faults(statuses=[503]), 2, SIZE),
    "resets beyond the retry budget still finish while each brings bytes": Row(
        Faults(reset_after=300_000, reset_times=5), 6, SIZE
    ),
    "429 with Retry-After seconds": Row(Faults(statuses=[429], retry_after="1"), 2, SIZE),
    "429 with Retry-After date": Row(Faults(statuses=[429], retry_after=http_date_in(1)), 2, SIZE),
    "short body with matching Content-Length restarts from zero": Row(
        Faults(truncate_to=HALF), 2, HALF + SIZE
    ),
    "one flipped byte is fetched again": Row(Faults(corrupt_times=1), 2, 2 * SIZE),
    "flipped twice fails with both digests": Row(
        Faults(corrupt_times=2), 2, 2 * SIZE, DigestMismatchError, LAYER.digest
    ),
    "server ignoring Range restarts from zero": Row(
        Faults(reset_after=HALF, ignore_range=True), 2, HALF + SIZE
    ),
    "expired token mid-run is renewed once": Row(
        Faults(expire_tokens=1), 2, SIZE, auth="bearer", token_requests=2
    ),
    "stalled body times out and resumes": Row(Faults(stall_after=HALF, stall_seconds=3.0), 2, SIZE),
    "persistent 503 gives up after the retries": Row(
        Faults(statuses=[503] * 5), 3, 0, RegistryError, "503 UNAVAILABLE: injected 503"
    ),
    "missing blob is not retried": Row(
        Faults(), 1, 0, NotFoundError, "404 BLOB_UNKNOWN: blob unknown"
    ),
}


@pytest.mark.parametrize("cache", [False, True], ids=["into the archive", "into a cache"])
@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
async def test_fault(
    start: Start, options: PullOptions, tmp_path: Path, row: Row, cache: bool
) -> None:
    registry = FakeRegistry(auth=row.auth)
    image = f.make_image([LAYER])
    registry.add("x/y", "1", image)
    registry.faults[LAYER.digest] = copy.deepcopy(row.faults)  # its lists are used up
    if row.error is NotFoundError:
        del registry.blobs[LAYER.digest]
    host = await start(registry.app())
    cache_dir = tmp_path / "cache" if cache else None
    options = dataclasses.replace(options, timeout=1.0, cache_dir=cache_dir)
    out = tmp_path / "out"

    result = await bulkpull.pull_image(f"{host}/x/y:1", out, options)

    assert registry.count("GET", f"/blobs/{LAYER.digest}") == row.gets
    assert registry.bytes_sent[LAYER.digest] == row.bytes_served
    if row.token_requests is not None:
        assert registry.count("GET", "/token") == row.token_requests
    member = f"blobs/sha256/{LAYER.digest.removeprefix('sha256:')}"
    if row.error is None:
        assert result.ok, result.error
        assert result.archive is not None
        with tarfile.open(result.archive) as archive:
            held = archive.extractfile(member)
            assert held is not None
            assert held.read() == LAYER.compressed
    else:
        assert isinstance(result.error, row.error)
        assert row.message in str(result.error)
        assert result.error.tries == row.gets
        assert not list(out.glob("*.tar"))
        if cache_dir is not None:
            assert not (cache_dir / member.removeprefix("blobs/")).exists()


async def test_a_second_mismatch_names_both_digests(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([LAYER]))
    registry.faults[LAYER.digest] = Faults(corrupt_times=2)
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert isinstance(result.error, DigestMismatchError)
    corrupted = LAYER.compressed[:-1] + bytes([LAYER.compressed[-1] ^ 0xFF])
    assert f"expected {LAYER.digest}" in str(result.error)
    assert f"got {f.sha256(corrupted)}" in str(result.error)
