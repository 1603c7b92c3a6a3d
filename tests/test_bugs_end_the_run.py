"""A bug ends the whole run at once; a :class:`BulkpullError` stays with its image.

The bug is an exception from the ``on_event`` callback (library code a user writes, run inside
an image's work); the image left waiting is on a registry whose manifests never answer, so only
a cancellation can end it. The run must raise the bug itself, report nothing more, and leave no
task of bulkpull's running and no exception unretrieved.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import types
from pathlib import Path

import pytest
from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Faults, Start
from support.hostileregistry import HostileRegistry

import bulkpull
from bulkpull import Destination, Event, ImageDone, ImageStage, PullOptions, Stage

# A watchdog for a run that would not end, not a timing assertion.
WATCHDOG_SECONDS = 60
SOURCE = Path(bulkpull.__file__).parent


class CallbackBug(Exception):
    """What the callback raises: an exception that is no BulkpullError."""


def bulkpull_tasks() -> list[asyncio.Task[object]]:
    """Tasks still running code of bulkpull's (the servers of the test run their own)."""
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and SOURCE in _code_path(task).parents
    ]


def _code_path(task: asyncio.Task[object]) -> Path:
    coroutine = task.get_coro()
    return Path(coroutine.cr_code.co_filename if isinstance(coroutine, types.CoroutineType) else "")


async def two_registries(start: Start) -> tuple[str, str]:
    """``good/app:1`` on a registry that answers, ``held/app:1`` on one that never does."""
    good = FakeRegistry()
    good.add("good/app", "1", f.make_image([f.random_layer(1000)]))
    held = HostileRegistry()
    held.add("held/app", "1", f.make_image([f.random_layer(1000)]))
    held.misbehaviour.hang = frozenset({"manifest"})
    return f"{await start(good.app())}/good/app:1", f"{await start(held.app())}/held/app:1"


def raising_at(stage: Stage, repository: str, heard: list[Event]) -> bulkpull.EventCallback:
    """A callback that raises once the image of ``repository`` enters ``stage``."""

    def on_event(event: Event) -> None:
        heard.append(event)
        if not isinstance(event, ImageStage) or event.stage is not stage:
            return
        if event.spec.source.path == repository:
            raise CallbackBug(f"{repository} {stage}")

    return on_event


@pytest.mark.parametrize(
    "destination",
    [
        pytest.param("archives", id="archives"),
        pytest.param("bundle", id="bundle"),
    ],
)
async def test_a_bug_in_one_images_work_cancels_the_others_and_propagates(
    start: Start,
    options: PullOptions,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    destination: str,
) -> None:
    good, held = await two_registries(start)
    to = Destination.bundle(tmp_path / "all.tar") if destination == "bundle" else tmp_path
    heard: list[Event] = []
    on_event = raising_at(Stage.DOWNLOADING, "good/app", heard)

    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(CallbackBug):
        await asyncio.wait_for(
            bulkpull.pull_images([held, good], to, options, on_event=on_event),
            WATCHDOG_SECONDS,
        )
    left = bulkpull_tasks()
    gc.collect()  # unretrieved task exceptions are logged when their task is collected

    assert left == []
    assert not [event for event in heard if isinstance(event, ImageDone)]
    assert not caplog.records, [record.getMessage() for record in caplog.records]


async def test_a_bug_in_a_dry_run_cancels_the_other_images_and_propagates(
    start: Start, options: PullOptions, caplog: pytest.LogCaptureFixture
) -> None:
    good, held = await two_registries(start)
    on_event = raising_at(Stage.RESOLVING, "good/app", [])

    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(CallbackBug):
        await asyncio.wait_for(
            bulkpull.resolve_images([held, good], options, on_event=on_event), WATCHDOG_SECONDS
        )
    left = bulkpull_tasks()
    gc.collect()

    assert left == []
    assert not caplog.records, [record.getMessage() for record in caplog.records]


async def test_a_bulkpull_error_fails_its_image_and_the_others_are_pulled(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    broken = f.make_image([f.random_layer(1000), f.random_layer(2000)])
    registry.add("x/broken", "1", broken)
    registry.add("x/fine", "1", f.make_image([f.random_layer(3000)]))
    registry.faults[broken.layers[0].digest] = Faults(corrupt_times=10)
    host = await start(registry.app())

    report = await bulkpull.pull_images(
        [f"{host}/x/broken:1", f"{host}/x/fine:1"], tmp_path, options
    )

    assert [result.ok for result in report.results] == [False, True]
    assert isinstance(report.results[0].error, bulkpull.DigestMismatchError)
    assert bulkpull_tasks() == []
