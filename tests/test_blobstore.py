"""The content-addressed store: verified blobs or nothing, partial files resumed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bulkpull.digest import Digest
from bulkpull.errors import DigestMismatchError, RegistryError, TransportError
from bulkpull.store import BlobStore
from bulkpull.store.partials import WRITE_BUFFER_BYTES

BLOB = os.urandom(1000)
DIGEST = Digest.of(BLOB)
WHAT = f"blob {DIGEST} of docker.io/library/alpine"


@dataclass
class Registry:
    """Serves one blob body as a registry does: from the asked offset, or whole if it ignores
    ``Range``; can break the stream once it has sent ``fail_at`` bytes."""

    body: bytes
    chunk: int = 10
    honour_range: bool = True
    fail_at: int | None = None
    offsets: list[int] = field(default_factory=list)
    chunks_sent: int = 0

    @asynccontextmanager
    async def open(self, offset: int) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        self.offsets.append(offset)
        if self.honour_range and offset and offset >= len(self.body):
            raise RegistryError("GET", "http://registry/v2/a/blobs/x", 416)
        start = offset if self.honour_range else 0
        yield start, self._chunks(start)

    async def _chunks(self, start: int) -> AsyncIterator[bytes]:
        position = start
        while position < len(self.body):
            if self.fail_at is not None and position >= self.fail_at:
                raise TransportError("connection reset by peer")
            piece = self.body[position : position + self.chunk]
            self.chunks_sent += 1
            yield piece
            position += len(piece)
            await asyncio.sleep(0)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


def stored_names(store: BlobStore) -> list[str]:
    directory = store.root / "sha256"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def partial_of(store: BlobStore, digest: Digest) -> Path:
    return store.path(digest).with_name(f"{digest.hex}.partial")


async def test_verified_blob_lands_under_sha256_hex(store: BlobStore) -> None:
    registry = Registry(BLOB, chunk=64)

    path = await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert path == store.root / "sha256" / DIGEST.hex
    assert path.read_bytes() == BLOB
    assert await store.has(DIGEST)
    assert stored_names(store) == [DIGEST.hex]
    assert registry.offsets == [0]


async def test_empty_blob_is_stored(store: BlobStore) -> None:
    empty = Digest.of(b"")

    path = await store.ingest(empty, 0, Registry(b"").open, "empty blob")

    assert path.read_bytes() == b""
    assert stored_names(store) == [empty.hex]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(bytes(reversed(BLOB)), id="same-size-other-bytes"),
        pytest.param(BLOB[:-1], id="one-byte-short"),
        pytest.param(b"", id="empty-body"),
    ],
)
async def test_mismatching_body_is_refused_and_leaves_nothing(
    store: BlobStore, body: bytes
) -> None:
    with pytest.raises(DigestMismatchError) as caught:
        await store.ingest(DIGEST, len(BLOB), Registry(body).open, WHAT)

    assert str(caught.value).startswith(f"{WHAT}: digest mismatch: expected {DIGEST}")
    assert caught.value.size == len(body)
    assert stored_names(store) == []
    assert not await store.has(DIGEST)


async def test_overlong_body_is_cut_off_and_refused(store: BlobStore) -> None:
    registry = Registry(BLOB + b"\0" * 1_000_000, chunk=100)

    with pytest.raises(DigestMismatchError, match=r"\(1000 bytes\)"):
        await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert registry.chunks_sent <= len(BLOB) // 100 + 1
    assert stored_names(store) == []


async def test_broken_stream_keeps_partial_and_next_ingest_resumes_from_it(
    store: BlobStore,
) -> None:
    registry = Registry(BLOB, chunk=10, fail_at=400)

    with pytest.raises(TransportError):
        await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    partial = partial_of(store, DIGEST)
    assert partial.read_bytes() == BLOB[:400]
    assert not await store.has(DIGEST)

    registry.fail_at = None
    path = await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert registry.offsets == [0, 400]
    assert path.read_bytes() == BLOB
    assert stored_names(store) == [DIGEST.hex]


async def test_partial_survives_several_breaks_and_each_resume_asks_for_the_rest(
    store: BlobStore,
) -> None:
    registry = Registry(BLOB, chunk=50)

    for fail_at in (150, 600, 900):
        registry.fail_at = fail_at
        with pytest.raises(TransportError):
            await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)
    registry.fail_at = None
    path = await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert registry.offsets == [0, 150, 600, 900]
    assert path.read_bytes() == BLOB


async def test_bytes_buffered_before_a_break_are_all_kept(store: BlobStore) -> None:
    big = os.urandom(3 * WRITE_BUFFER_BYTES)
    digest = Digest.of(big)
    kept = WRITE_BUFFER_BYTES + WRITE_BUFFER_BYTES // 2 + 4096
    registry = Registry(big, chunk=4096, fail_at=kept)

    with pytest.raises(TransportError):
        await store.ingest(digest, len(big), registry.open, "big blob")

    assert partial_of(store, digest).read_bytes() == big[:kept]

    registry.fail_at = None
    path = await store.ingest(digest, len(big), registry.open, "big blob")

    assert registry.offsets == [0, kept]
    assert path.read_bytes() == big


async def test_cancelled_download_leaves_a_partial_that_resumes(store: BlobStore) -> None:
    chunk = 2 * WRITE_BUFFER_BYTES
    big = os.urandom(3 * chunk)
    digest = Digest.of(big)
    first_chunk_sent = asyncio.Event()

    @asynccontextmanager
    async def stalls_after_one_chunk(
        offset: int,
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        async def chunks() -> AsyncIterator[bytes]:
            first_chunk_sent.set()
            yield big[:chunk]
            await asyncio.Event().wait()  # the rest never comes
            yield big[chunk:]

        yield 0, chunks()

    loop = asyncio.get_running_loop()
    workers = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(workers)
    download = asyncio.create_task(store.ingest(digest, len(big), stalls_after_one_chunk, "big"))
    await first_chunk_sent.wait()
    # The first chunk's write, handed to a worker thread, completes; the cancellation (Ctrl-C)
    # reaches the download before it has resumed to learn so.
    workers.shutdown(wait=True)
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    download.cancel()
    with pytest.raises(asyncio.CancelledError):
        await download

    held = partial_of(store, digest).read_bytes()
    assert len(held) <= len(big)
    assert held == big[: len(held)], "the partial file is not a prefix of the blob"

    registry = Registry(big, chunk=chunk)
    path = await store.ingest(digest, len(big), registry.open, "big")

    assert registry.offsets == [len(held)]
    assert path.read_bytes() == big


async def test_server_ignoring_range_restarts_from_zero(store: BlobStore) -> None:
    registry = Registry(BLOB, chunk=10, fail_at=300)
    with pytest.raises(TransportError):
        await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    registry.fail_at = None
    registry.honour_range = False
    path = await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert registry.offsets == [0, 300]
    assert path.read_bytes() == BLOB
    assert stored_names(store) == [DIGEST.hex]


async def test_corrupt_partial_is_dropped_after_the_mismatch_and_the_next_try_starts_over(
    store: BlobStore,
) -> None:
    partial = partial_of(store, DIGEST)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\xff" * 300)
    registry = Registry(BLOB)

    with pytest.raises(DigestMismatchError):
        await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)
    assert stored_names(store) == []

    path = await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert registry.offsets == [300, 0]
    assert path.read_bytes() == BLOB


async def test_partial_longer_than_the_blob_is_discarded(store: BlobStore) -> None:
    partial = partial_of(store, DIGEST)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(BLOB + b"trailing junk")
    registry = Registry(BLOB)

    path = await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert registry.offsets == [0]
    assert path.read_bytes() == BLOB
    assert stored_names(store) == [DIGEST.hex]


async def test_partial_holding_the_whole_blob_is_promoted_without_asking_the_registry(
    store: BlobStore,
) -> None:
    # What a run leaves behind when it stops between the last write and the rename; a registry
    # answers a Range starting at the blob's size with 416.
    partial = partial_of(store, DIGEST)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(BLOB)
    registry = Registry(BLOB)

    path = await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert path.read_bytes() == BLOB
    assert registry.offsets == []
    assert stored_names(store) == [DIGEST.hex]


async def test_partial_of_full_size_with_wrong_bytes_is_discarded_and_downloaded_again(
    store: BlobStore,
) -> None:
    partial = partial_of(store, DIGEST)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(bytes(reversed(BLOB)))
    registry = Registry(BLOB)

    path = await store.ingest(DIGEST, len(BLOB), registry.open, WHAT)

    assert registry.offsets == [0]
    assert path.read_bytes() == BLOB
    assert stored_names(store) == [DIGEST.hex]


async def test_blob_already_stored_is_not_downloaded_again(store: BlobStore) -> None:
    first = Registry(BLOB)
    await store.ingest(DIGEST, len(BLOB), first.open, WHAT)
    second = Registry(b"would not verify")

    path = await store.ingest(DIGEST, len(BLOB), second.open, WHAT)

    assert second.offsets == []
    assert path.read_bytes() == BLOB


async def test_put_bytes_stores_under_the_digest(store: BlobStore) -> None:
    manifest = b'{"schemaVersion":2}'
    digest = Digest.of(manifest)

    path = await store.put_bytes(digest, manifest)

    assert path == store.path(digest)
    assert path.read_bytes() == manifest
    assert await store.has(digest)
    assert stored_names(store) == [digest.hex]


async def test_put_bytes_keeps_a_blob_already_stored(store: BlobStore) -> None:
    await store.ingest(DIGEST, len(BLOB), Registry(BLOB).open, WHAT)
    before = store.path(DIGEST).stat()

    path = await store.put_bytes(DIGEST, BLOB)

    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


async def test_concurrent_put_bytes_of_one_digest_all_succeed(store: BlobStore) -> None:
    manifest = os.urandom(256 * 1024)
    digest = Digest.of(manifest)

    paths = await asyncio.gather(*(store.put_bytes(digest, manifest) for _ in range(8)))

    assert set(paths) == {store.path(digest)}
    assert store.path(digest).read_bytes() == manifest
    assert stored_names(store) == [digest.hex]


async def test_two_stores_on_one_directory_download_a_blob_once(tmp_path: Path) -> None:
    """Two processes sharing a store (two BlobStores here: each lock is its own open file)."""
    blob = os.urandom(3 * WRITE_BUFFER_BYTES)
    digest = Digest.of(blob)
    first, second = BlobStore(tmp_path), BlobStore(tmp_path)
    release = asyncio.Event()
    opened: list[int] = []

    @asynccontextmanager
    async def slow(offset: int) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        opened.append(offset)

        async def chunks() -> AsyncIterator[bytes]:
            yield blob[offset : offset + WRITE_BUFFER_BYTES]
            await release.wait()
            yield blob[offset + WRITE_BUFFER_BYTES :]

        yield offset, chunks()

    downloading = asyncio.create_task(first.ingest(digest, len(blob), slow, "blob"))
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(second.ingest(digest, len(blob), slow, "blob"))
    await asyncio.sleep(0.5)
    release.set()

    paths = await asyncio.gather(downloading, waiting)

    assert opened == [0]
    assert paths[0] == paths[1]
    assert paths[0].read_bytes() == blob
    assert sorted(p.name for p in (tmp_path / "sha256").iterdir()) == [digest.hex]


async def test_a_descriptor_of_size_zero_with_a_digest_fails_as_a_mismatch(
    store: BlobStore,
) -> None:
    with pytest.raises(DigestMismatchError, match=r"expected .* \(0 bytes\)"):
        await store.ingest(DIGEST, 0, Registry(BLOB).open, WHAT)

    assert stored_names(store) == []


async def test_read_small_gives_nothing_for_a_blob_larger_than_asked_for(
    store: BlobStore,
) -> None:
    await store.ingest(DIGEST, len(BLOB), Registry(BLOB).open, WHAT)

    assert await store.read_small(DIGEST, len(BLOB)) == BLOB
    assert await store.read_small(DIGEST, len(BLOB) - 1) is None
    assert await store.read_small(Digest.of(b"absent"), 1000) is None


async def test_a_link_at_a_final_name_is_not_a_stored_blob(
    store: BlobStore, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(BLOB)
    store.path(DIGEST).parent.mkdir(parents=True)
    store.path(DIGEST).symlink_to(elsewhere)

    assert not await store.has(DIGEST)
    assert await store.read_small(DIGEST, 10_000) is None
    path = await store.ingest(DIGEST, len(BLOB), Registry(BLOB).open, WHAT)

    assert not path.is_symlink()
    assert path.read_bytes() == BLOB
