"""No file call runs on the event loop: a FIFO, a slow disk or a network file system there would
stall every download (and SIGTERM) of the run.

Two checks. One reads the source: no ``async def`` calls a blocking file function itself. The
other watches a real run: an audit hook records every file opened, renamed, removed or listed
under the test's directory from the thread that runs the event loop, over pulls of many small
images into each kind of output, reruns and ``--force`` included.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Start

import bulkpull
from bulkpull import Destination, PullOptions

SOURCE = Path(bulkpull.__file__).parent
# Methods and functions that touch the file system and wait for it.
BLOCKING_METHODS = frozenset(
    {
        "read_bytes",
        "read_text",
        "write_bytes",
        "write_text",
        "stat",
        "lstat",
        "exists",
        "is_file",
        "is_dir",
        "mkdir",
        "makedirs",
        "unlink",
        "remove",
        "rmdir",
        "iterdir",
        "scandir",
        "listdir",
        "glob",
        "touch",
        "rename",
        "replace",
        "fsync",
        "truncate",
        "copyfileobj",
        "copy_file_range",
    }
)
BLOCKING_FUNCTIONS = frozenset({"open", "archive_digests", "verify_archive"})
# Receivers whose calls hand the work to a worker thread.
OFF_THE_LOOP = ("aiofiles", "asyncio")


def blocking_calls(source: str) -> list[str]:
    """``function line: call`` for each blocking file call made directly in an ``async def``
    (not in a function nested in it, which may well run in a thread)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AsyncFunctionDef):
            found += [
                f"{node.name} line {call.lineno}: {ast.unparse(call)}" for call in _calls(node)
            ]
    return found


def _calls(function: ast.AsyncFunctionDef) -> Iterator[ast.Call]:
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call) and _is_blocking(node.func):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def _is_blocking(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in BLOCKING_FUNCTIONS
    if isinstance(func, ast.Attribute):
        receiver = ast.unparse(func.value)
        return func.attr in BLOCKING_METHODS | {"open"} and not receiver.startswith(OFF_THE_LOOP)
    return False


@pytest.mark.parametrize("module", sorted(path.stem for path in SOURCE.glob("*.py")))
def test_no_async_function_calls_a_blocking_file_function(module: str) -> None:
    source = (SOURCE / f"{module}.py").read_text(encoding="utf-8")

    assert blocking_calls(source) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "async def f(p):\n    p.read_bytes()", ["f line 2: p.read_bytes()"], id="path"
        ),
        pytest.param("async def f(p):\n    open(p)", ["f line 2: open(p)"], id="open"),
        pytest.param(
            "async def f(p):\n    os.replace(p, q)", ["f line 2: os.replace(p, q)"], id="os"
        ),
        pytest.param(
            "async def f(p):\n    return held.get(archive_digests(p))",
            ["f line 2: archive_digests(p)"],
            id="nested-in-an-expression",
        ),
        pytest.param("async def f(p):\n    await aiofiles.os.stat(p)", [], id="aiofiles"),
        pytest.param("async def f(p):\n    await asyncio.to_thread(p.stat)", [], id="to-thread"),
        pytest.param("async def f(p):\n    def g():\n        p.stat()", [], id="nested-def"),
        pytest.param("def f(p):\n    p.stat()", [], id="plain-def"),
    ],
)
def test_the_checker_finds_blocking_calls_in_async_functions_only(
    source: str, expected: list[str]
) -> None:
    assert blocking_calls(source) == expected


# Audited events that are file system calls (see the audit events table of the Python docs).
FILE_EVENTS = frozenset(
    {"open", "os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.listdir", "os.scandir"}
)


class LoopWatch:
    """Records file events under ``root`` raised by a thread that is running an event loop.

    Audit hooks cannot be removed, so one hook is installed for the session and records only
    while a watch is active.
    """

    active: LoopWatch | None = None
    installed = False

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.seen: list[str] = []

    @classmethod
    def hook(cls, event: str, args: tuple[object, ...]) -> None:
        watch = cls.active
        if watch is None or event not in FILE_EVENTS or not args:
            return
        if not isinstance(args[0], str | bytes | Path) or watch.root not in os.fsdecode(args[0]):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a worker thread: where file work belongs
        stack = "".join(traceback.format_stack(limit=8)[:-1])
        watch.seen.append(
            f"{event} {os.fsdecode(args[0])} in {threading.current_thread().name}\n{stack}"
        )


@contextmanager
def watching(root: Path) -> Iterator[LoopWatch]:
    if not LoopWatch.installed:
        sys.addaudithook(LoopWatch.hook)
        LoopWatch.installed = True
    watch = LoopWatch(root)
    LoopWatch.active = watch
    try:
        yield watch
    finally:
        LoopWatch.active = None


async def test_a_pull_makes_no_file_call_on_the_event_loop(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    base = f.random_layer(20_000)
    for number in range(12):
        image = f.make_image([base, f.random_layer(2_000)], label=str(number))
        registry.add(f"many/app{number}", "1", image)
    host = await start(registry.app())
    references = [f"{host}/many/app{number}:1" for number in range(12)]
    forced = dataclasses.replace(options, force=True)
    out = tmp_path / "out"

    with watching(tmp_path) as watch:
        reports = [
            await bulkpull.pull_images(references, out, options),
            await bulkpull.pull_images(references, out, options),  # up to date: reads archives
            await bulkpull.pull_images(references, out, forced),
            await bulkpull.pull_images(references, Destination.bundle(out / "all.tar"), options),
            await bulkpull.pull_images(references, Destination.bundle(out / "all.tar"), forced),
            await bulkpull.pull_images(references, Destination.oci_layout(out / "layout"), options),
            await bulkpull.pull_images(references, Destination.oci_layout(out / "layout"), options),
            await bulkpull.resolve_images(references, options, destination=out),
        ]
        await bulkpull.write_atomically(tmp_path / "report.json", b"{}")

    assert all(report.ok for report in reports), [report.failed for report in reports]
    assert reports[1].count(bulkpull.Status.UP_TO_DATE) == 12
    assert watch.seen == []


def test_the_watch_sees_a_file_opened_on_the_event_loop(tmp_path: Path) -> None:
    async def opens_on_the_loop() -> None:
        (tmp_path / "x").write_bytes(b"x")

    async def opens_in_a_thread() -> None:
        await asyncio.to_thread((tmp_path / "y").write_bytes, b"y")

    with watching(tmp_path) as watch:
        asyncio.run(opens_in_a_thread())
        assert watch.seen == []
        asyncio.run(opens_on_the_loop())

    assert len(watch.seen) == 1
    assert watch.seen[0].startswith(f"open {tmp_path / 'x'} in MainThread")
