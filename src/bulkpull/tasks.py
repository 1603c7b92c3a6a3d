"""Work that belongs together runs as one :class:`asyncio.TaskGroup`: the images of a run, the
platforms of an image, the blobs of a platform, the downloads of a run. Work several callers
share (one ping per registry, one token request per scope) is owned by what started it
(:class:`SharedTasks`), which cancels what is still under way when it closes.

The first task to fail cancels its siblings, so nothing goes on for an image that has failed,
or for a run that a bug has ended, and no task outlives the group. What comes out is one
exception, not the group: an image fails with the :class:`BulkpullError` (or the ``OSError`` of
one of its files) its work raised, and a bug propagates as itself, ahead of any such error
raised beside it, so that no image's ``except BulkpullError`` can swallow it. Imports ``errors``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from bulkpull.errors import BulkpullError

T = TypeVar("T")

# What an image fails with; anything else raised by bulkpull's own code is a bug.
EXPECTED = (BulkpullError, OSError)


async def all_of(work: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run every coroutine of ``work`` at once, each in a task of one group; their results in
    order. The first failure cancels the others and is raised (see :func:`cause`)."""
    failure: BaseException | None = None
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in work]
    except BaseExceptionGroup as failed:
        failure = cause(failed)
    if failure is not None:
        # Raised outside the handler, so the group does not become its context.
        raise failure
    return [task.result() for task in tasks]


def cause(failed: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception a failed group stands for: its first bug, else its first error."""
    found = list(_leaves(failed))
    bugs = [error for error in found if not isinstance(error, EXPECTED)]
    return (bugs or found)[0]


def _leaves(failed: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for error in failed.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


class SharedTasks:
    """Tasks that several callers await, each through ``asyncio.shield`` so that one caller
    giving up does not stop the work for the others; owned here, so that none outlives its
    owner: :meth:`close` cancels those still under way and waits for them to end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for task in pending:
            if not task.cancelled():
                task.exception()  # seen: whoever shared it has gone
