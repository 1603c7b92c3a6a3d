"""Shared fixtures: fake registries on loopback and quick pull options."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiohttp import web
from support.fakeregistry import Start, serve
from support.terminal import OpenPane, tmux_panes

from bulkpull import PullOptions, RetryPolicy


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start aiohttp apps on free loopback ports for the test; yields ``host:port`` per app."""
    async with AsyncExitStack() as stack:

        async def _start(app: web.Application) -> str:
            return await stack.enter_async_context(serve(app))

        yield _start


@pytest.fixture
def options() -> PullOptions:
    """Plain HTTP and retries without waiting, so fault tests take milliseconds."""
    return PullOptions(plain_http=True, retry=RetryPolicy(retries=2, delay=0.0))


@pytest.fixture
async def terminal(tmp_path: Path) -> AsyncIterator[OpenPane]:
    """Start ``bulkpull ARGS`` in a tmux pane (160x40 unless ``size`` says), in ``tmp_path``;
    the pane stays after the command ends."""
    async with tmux_panes(tmp_path) as open_pane:
        yield open_pane
