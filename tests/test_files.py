"""The file primitives every writer shares: unique temporaries, and cancellation that neither
leaks what a worker thread opened nor leaves work half done."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from bulkpull.files import (
    NAME_MAX,
    Stopped,
    Temporary,
    check,
    opened,
    run_stoppable,
    temporary_name,
    write_atomically,
)


def test_a_temporary_name_is_unique_and_fits_a_file_name_however_long_the_final_one(
    tmp_path: Path,
) -> None:
    final = tmp_path / ("a" * NAME_MAX)

    names = {temporary_name(final) for _ in range(100)}

    assert len(names) == 100
    assert all(len(os.fsencode(name.name)) <= NAME_MAX for name in names)
    assert all(name.parent == tmp_path and name.name.endswith(".partial") for name in names)


def test_a_temporary_left_without_install_is_removed_and_the_final_name_kept(
    tmp_path: Path,
) -> None:
    final = tmp_path / "archive.tar"
    final.write_bytes(b"earlier")

    def write_half() -> None:
        with Temporary(final) as temporary:
            temporary.file.write(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_half()

    assert final.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.tar"]


async def test_write_atomically_replaces_the_file_whole_and_leaves_nothing_else(
    tmp_path: Path,
) -> None:
    final = tmp_path / "report.json"
    final.write_bytes(b"old")

    await write_atomically(final, b"new")
    with pytest.raises(FileNotFoundError):
        await write_atomically(tmp_path / "missing" / "report.json", b"x")

    assert final.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


async def test_a_file_opened_in_a_thread_for_a_cancelled_task_is_closed() -> None:
    release = threading.Event()
    read, write = os.pipe()
    closed: list[int] = []

    def slow_open() -> int:
        release.wait()
        return read

    async def close(fd: int) -> None:
        os.close(fd)
        closed.append(fd)

    task = asyncio.create_task(opened(asyncio.to_thread(slow_open), close))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert closed == [read]
    os.close(write)


async def test_stoppable_work_stopped_by_a_cancellation_ends_before_the_task_does() -> None:
    started, finished = threading.Event(), threading.Event()

    def work(stop: threading.Event) -> str:
        started.set()
        try:
            while True:
                check(stop)
                stop.wait(0.01)
        finally:
            finished.set()

    task = asyncio.create_task(run_stoppable(work))
    await asyncio.to_thread(started.wait)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert finished.is_set()


async def test_stoppable_work_past_its_last_check_is_returned_and_the_task_still_cancelled() -> (
    None
):
    past_the_check, go_on = threading.Event(), threading.Event()
    reported: list[str] = []

    def work(stop: threading.Event) -> str:
        check(stop)
        past_the_check.set()
        go_on.wait()
        return "installed"

    async def caller() -> None:
        reported.append(await run_stoppable(work))
        await asyncio.sleep(1)  # the cancellation lands here
        reported.append("went on")

    task = asyncio.create_task(caller())
    await asyncio.to_thread(past_the_check.wait)
    task.cancel()
    await asyncio.sleep(0.05)
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert reported == ["installed"]


def test_check_raises_only_once_stop_is_set() -> None:
    stop = threading.Event()
    check(stop)
    check(None)
    stop.set()

    with pytest.raises(Stopped):
        check(stop)
