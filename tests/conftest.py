"""Shared fixtures: fake registries on loopback and quick pull options."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from aiohttp import web
from support.fakeregistry import Start, serve

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
