"""A registry that misbehaves on purpose (aiohttp.web on loopback), one switch per misbehaviour.

It is the fake registry of ``fakeregistry`` with switches for what hostile or broken servers do:
error bodies carrying terminal escapes, answers trickled a byte at a time, a ``/v2/`` that never
answers, blob redirects that loop or point at ``file:``, and Docker Hub's pull limit (the
``RateLimit-*`` headers, then ``429 TOOMANYREQUESTS`` once it is spent). Everything it does is
recorded in ``seen`` like the fake's. :func:`serve_trickling` is a bare TCP server for what
aiohttp.web cannot do: trickle the status line and headers themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from support.fakeregistry import FakeRegistry
from support.imagefactory import Image

# A terminal escape that clears the screen, and a line that would pass for bulkpull's own.
CLEAR_SCREEN = "\x1b[2J\x1b[H"
FORGED_LINE = "\npulled  fake/image:1  sha256:0123456789ab  linux/amd64  1.0 MiB\n"


@dataclass
class Misbehaviour:
    """Switches; all off by default, so a fresh one serves like the fake registry."""

    error_body: tuple[int, bytes, str] | None = None
    """Status, body and Content-Type every manifest request is answered with."""
    trickle: frozenset[str] = frozenset()
    """Bodies sent a byte at a time: any of ``token``, ``manifest``."""
    trickle_seconds: float = 0.2
    hang: frozenset[str] = frozenset()
    """What never answers: any of ``ping``, ``manifest``."""
    blob_location: str | None = None
    """Where every blob GET is redirected; ``"loop"`` redirects a blob to itself."""
    pull_limit: int | None = None
    """Manifest GETs allowed; answers announce the limit, and once spent a 429 refuses."""
    limit_window: int = 21600
    spent_retry_after: str | None = None
    bytes_trickled: dict[str, int] = field(default_factory=dict)


class HostileRegistry(FakeRegistry):
    """The fake registry, misbehaving as ``misbehaviour`` says."""

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)
        self.misbehaviour = Misbehaviour()
        self._gets = 0

    async def _ping(self, request: web.Request) -> web.Response:
        if "ping" in self.misbehaviour.hang:
            await asyncio.sleep(3600)
        return await super()._ping(request)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        answer = await super()._token(request)
        if "token" not in self.misbehaviour.trickle or answer.status != 200:
            return answer
        assert isinstance(answer, web.Response)
        assert isinstance(answer.body, bytes)
        return await self._trickled(request, "token", answer.body, "application/json")

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        behave = self.misbehaviour
        if "manifest" in behave.hang:
            await asyncio.sleep(3600)
        if behave.error_body is not None:
            status, body, content_type = behave.error_body
            return web.Response(status=status, body=body, content_type=content_type)
        if behave.pull_limit is not None:
            return await self._limited(request)
        answer = await super()._manifest(request)
        if "manifest" in behave.trickle and isinstance(answer, web.Response) and answer.body:
            assert isinstance(answer.body, bytes)
            return await self._trickled(request, "manifest", answer.body, answer.content_type)
        return answer

    async def _limited(self, request: web.Request) -> web.StreamResponse:
        """Docker Hub's pull limit: GETs count, HEADs do not; a 429 once it is spent."""
        behave = self.misbehaviour
        assert behave.pull_limit is not None
        if request.method == "GET":
            self._gets += 1
        remaining = max(behave.pull_limit - self._gets, 0)
        window = f";w={behave.limit_window}"
        headers = {
            "RateLimit-Limit": f"{behave.pull_limit}{window}",
            "RateLimit-Remaining": f"{remaining}{window}",
        }
        if self._gets > behave.pull_limit:
            if behave.spent_retry_after is not None:
                headers["Retry-After"] = behave.spent_retry_after
            body = {
                "errors": [
                    {
                        "code": "TOOMANYREQUESTS",
                        "message": "You have reached your pull rate limit.",
                    }
                ]
            }
            return web.json_response(body, status=429, headers=headers)
        answer = await super()._manifest(request)
        answer.headers.update(headers)
        return answer

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        location = self.misbehaviour.blob_location
        if location is None:
            return await super()._blob(request)
        if location == "loop":
            location = str(request.url)
        raise web.HTTPFound(location)

    async def _trickled(
        self, request: web.Request, what: str, body: bytes, content_type: str
    ) -> web.StreamResponse:
        """``body`` a byte at a time, each after a pause shorter than any read timeout."""
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.content_length = len(body)
        await response.prepare(request)
        for offset in range(len(body)):
            await asyncio.sleep(self.misbehaviour.trickle_seconds)
            await response.write(body[offset : offset + 1])
            trickled = self.misbehaviour.bytes_trickled
            trickled[what] = trickled.get(what, 0) + 1
        await response.write_eof()
        return response


def hostile_error_body(*, json_body: bool) -> bytes:
    """An error body whose text would clear the screen and forge a "pulled" line if shown."""
    text = f"denied{CLEAR_SCREEN}{FORGED_LINE}\x1b]0;owned\x07"
    if not json_body:
        return text.encode()
    entry = {"code": f"DENIED{CLEAR_SCREEN}", "message": text, "detail": {"why": text}}
    return json.dumps({"errors": [entry]}).encode()


def with_layer_size(image: Image, size: int) -> bytes:
    """``image``'s manifest, claiming ``size`` bytes for its first layer."""
    document = json.loads(image.manifest)
    document["layers"][0]["size"] = size
    return json.dumps(document).encode()


@dataclass
class Trickler:
    """A server that answers every request with ``answer``, one byte per ``seconds``, until the
    client hangs up."""

    answer: bytes
    seconds: float
    requests: int = 0
    bytes_sent: int = 0
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            for offset in range(len(self.answer)):
                await asyncio.sleep(self.seconds)
                if reader.at_eof():
                    break  # the client gave up, which is the point
                writer.write(self.answer[offset : offset + 1])
                await writer.drain()
                self.bytes_sent += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serve_trickling(trickler: Trickler) -> AsyncIterator[str]:
    """Run ``trickler`` on a free loopback port; yields ``host:port``."""
    server = await asyncio.start_server(trickler.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
        # Handlers end a byte after their client hung up; one still talking is stopped.
        if trickler.handlers:
            _, talking = await asyncio.wait(trickler.handlers, timeout=5)
            for handler in talking:
                handler.cancel()


def trickled_ping_answer() -> bytes:
    """A ``/v2/`` 200 whose status line and headers alone take minutes at a byte a second."""
    padding = "x" * 300
    return (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"X-Padding: {padding}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
