"""The fault-injecting proxy of the benchmark, on 127.0.0.1, in front of the private registry.

:class:`FaultProxy` is an HTTP reverse proxy that answers a share of requests with 503 and cuts a
share of blob downloads in the middle of the body with a TCP reset. Faults follow a seeded
schedule: in every stretch of 1/share requests exactly one, at a random position, so that each
run gets the same number of faults at the same places in its sequence of requests. It counts the
blob bytes it sends, to tell how much a client downloads again. It runs in a thread of its own
(:class:`bench_proxy.LoopThread`), so its CPU time is measured and shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import random
import re
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from bench_proxy import LOOPBACK, LoopThread

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_BLOB_PATH = re.compile(r"/v2/.+/blobs/sha256:[0-9a-f]{64}")


class Fault(enum.Enum):
    UNAVAILABLE = "503"
    RESET = "reset"


@dataclass(frozen=True)
class FaultPlan:
    """Which share of requests gets which fault.

    ``unavailable``: share of all requests answered 503 (registry code UNAVAILABLE) without
    asking the registry. ``reset``: share of the other blob GETs whose connection is reset after
    a random 10 to 90 % of the body. ``max_streak``: a request (method and path, or a blob's
    digest) that failed this many times in a row passes the next time, so a client that retries
    more often than that always gets through.
    """

    unavailable: float
    reset: float
    seed: int
    max_streak: int


class _Schedule:
    """Picks a ``share`` of events: exactly one at a random position in each stretch of
    ``1 / share`` events, drawn from a seeded generator, so the count is steady from run to run
    (a coin per event would give anything from none to twice the share on a few dozen)."""

    def __init__(self, share: float, rng: random.Random) -> None:
        self._stretch = 1 / share if share > 0 else 0.0
        self._rng = rng
        self._block = 0
        self._count = 0
        self._next = self._position() if share > 0 else -1

    def _position(self) -> int:
        return int((self._block + self._rng.random()) * self._stretch)

    def hit(self) -> bool:
        """Whether the next event is picked."""
        event = self._count
        self._count += 1
        if event != self._next:
            return False
        self._block += 1
        self._next = max(self._position(), event + 1)
        return True


NO_FAULTS = FaultPlan(unavailable=0.0, reset=0.0, seed=0, max_streak=0)


@dataclass
class FaultStats:
    requests: int = 0
    faults: Counter[str] = dataclasses.field(default_factory=Counter)
    """Injected faults by kind (``503``, ``reset``)."""
    blob_requests: int = 0
    range_requests: int = 0
    """Blob GETs that asked for a ``Range``: resumed downloads."""
    blob_bytes_sent: int = 0
    """Body bytes of blob GETs written to clients, also those cut short by a reset."""


class FaultProxy:
    """An HTTP reverse proxy to the registry that injects faults according to a :class:`FaultPlan`.

    Requests are forwarded as they are (no redirects followed, bodies streamed unchanged);
    :meth:`reset` sets the plan and starts counting (and counting tries) anew.
    """

    def __init__(self, upstream: str) -> None:
        self._upstream = f"http://{upstream}"
        self._plan = NO_FAULTS
        self._unavailable = _Schedule(0, random.Random())
        self._resets = _Schedule(0, random.Random())
        self._cuts = random.Random()
        self._streaks: Counter[str] = Counter()
        self._stats = FaultStats()
        self._active = 0
        self._idle = asyncio.Event()
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._thread = LoopThread("bench-fault-proxy")

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    def cpu_seconds(self) -> float:
        return self._thread.cpu_seconds()

    def reset(self, plan: FaultPlan) -> None:
        """Use ``plan`` from now on, with counts and schedules from the start."""

        async def reset() -> None:
            self._plan = plan
            self._unavailable = _Schedule(plan.unavailable, random.Random(f"{plan.seed}/503"))
            self._resets = _Schedule(plan.reset, random.Random(f"{plan.seed}/reset"))
            self._cuts = random.Random(f"{plan.seed}/cut")
            self._streaks.clear()
            self._stats = FaultStats()

        self._thread.call(reset())

    def take_stats(self, settle: float = 5.0) -> FaultStats:
        """The counts since :meth:`reset`, once requests still being answered are done."""

        async def take() -> FaultStats:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), settle)
            return dataclasses.replace(self._stats, faults=Counter(self._stats.faults))

        return self._thread.call(take(), timeout=settle + 10)

    def start(self) -> None:
        self._thread.call(self._start())

    def stop(self) -> None:
        self._thread.stop(self._close())

    async def _start(self) -> None:
        self._idle.set()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _decide(self, request: web.Request, blob_get: bool) -> tuple[Fault | None, float]:
        """The fault for this request, if any, and where to cut the body (a share of it)."""
        # A blob is known by its digest alone: which image's repository a client asks for a
        # shared blob depends on timing.
        path = request.path
        key = f"{request.method} {path.rpartition('/')[2] if blob_get else path}"
        allowed = self._streaks[key] < self._plan.max_streak
        fault: Fault | None = None
        if self._unavailable.hit():
            fault = Fault.UNAVAILABLE if allowed else None
        elif blob_get and self._resets.hit():
            fault = Fault.RESET if allowed else None
        self._streaks[key] = self._streaks[key] + 1 if fault is not None else 0
        return fault, self._cuts.uniform(0.1, 0.9) if fault is Fault.RESET else 0.0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._active += 1
        self._idle.clear()
        try:
            return await self._forward(request)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        blob_get = request.method == "GET" and _BLOB_PATH.fullmatch(request.path) is not None
        fault, cut = self._decide(request, blob_get)
        stats = self._stats
        stats.requests += 1
        if fault is Fault.UNAVAILABLE:
            stats.faults[fault.value] += 1
            error = {"code": "UNAVAILABLE", "message": "injected by the benchmark", "detail": None}
            return web.json_response({"errors": [error]}, status=503)
        if blob_get:
            stats.blob_requests += 1
            if "Range" in request.headers:
                stats.range_requests += 1
        headers = {
            key: value
            for key, value in request.headers.items()
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length"
        }
        async with self._session.request(
            request.method,
            self._upstream + request.path_qs,
            headers=headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            if request.method == "HEAD":
                await response.write_eof()
                return response
            counted = blob_get and upstream.status in (200, 206)
            length = upstream.content_length
            cut_at = max(1, int(length * cut)) if fault is Fault.RESET and length else None
            sent = 0
            async for chunk in upstream.content.iter_chunked(256 * 1024):
                if cut_at is not None and sent + len(chunk) >= cut_at:
                    chunk = chunk[: cut_at - sent]
                    await response.write(chunk)
                    if counted:
                        stats.blob_bytes_sent += len(chunk)
                    stats.faults[Fault.RESET.value] += 1
                    _reset_connection(request)
                    return response
                await response.write(chunk)
                sent += len(chunk)
                if counted:
                    stats.blob_bytes_sent += len(chunk)
            await response.write_eof()
            return response


def _reset_connection(request: web.Request) -> None:
    """Close the client's connection with a TCP reset (RST), not an orderly FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
