"""Proxies of the benchmark's own, on 127.0.0.1, in front of the private registry.

- :class:`ThrottleProxy` makes loopback look like a wide-area link: a raw TCP proxy that delays
  every byte by half the round-trip time in each direction, caps each connection's rate in each
  direction, and makes a new connection wait one round trip before its first bytes go through
  (the handshake a real link would cost). It does not look into HTTP, so it works the same for
  every tool.
- :class:`FaultProxy` is an HTTP reverse proxy that answers a share of requests with 503 and cuts
  a share of blob downloads in the middle of the body with a TCP reset. Faults follow a seeded
  schedule: in every stretch of 1/share requests exactly one, at a random position, so that
  each run gets the same number of faults at the same places in its sequence of requests. It
  counts the blob bytes it sends, to tell how much a client downloads again.

Each proxy runs an event loop in a thread of its own inside the benchmark process (it moves
bytes, so its CPU time is measured and shown), and both listen and connect on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import os
import random
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
from aiohttp import web

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
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


class ProxyError(RuntimeError):
    """A proxy could not be started or stopped."""


class _LoopThread:
    """An asyncio event loop running in a daemon thread; coroutines are handed to it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._native_id: int | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        self._native_id = threading.get_native_id()
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def cpu_seconds(self) -> float:
        """User plus system seconds this thread has used so far."""
        try:
            stat = Path(f"/proc/self/task/{self._native_id}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, closing: Coroutine[Any, Any, None]) -> None:
        """Run ``closing``, cancel whatever still runs, stop the loop and end the thread."""

        async def finish() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closing, 10)
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.call(finish(), timeout=20)
            self.loop.call_soon_threadsafe(self.loop.stop)
        else:
            closing.close()
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class Proxy(Protocol):
    """What the scenarios need of a proxy."""

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` to pull from instead of the registry."""

    def cpu_seconds(self) -> float: ...


# --------------------------------------------------------------------------------------------
# Latency and a per-connection rate cap


@dataclass
class ThrottleStats:
    connections: int = 0
    """TCP connections clients opened."""
    bytes_to_clients: int = 0
    bytes_from_clients: int = 0


class ThrottleProxy:
    """A TCP proxy adding ``rtt`` seconds of round-trip time and ``rate`` bytes/s per connection.

    Each direction of each connection is a link of its own: bytes enter it when the proxy reads
    them, leave it at ``rate`` (one after the other), and arrive ``rtt / 2`` later. At most a
    window of twice the bandwidth-delay product (at least 1 MiB) is in flight per direction;
    beyond that the proxy stops reading, so the sender feels the cap through TCP flow control.
    """

    def __init__(self, upstream: str, *, rtt: float, rate: float) -> None:
        self._upstream_host, _, port = upstream.rpartition(":")
        self._upstream_port = int(port)
        self.rtt = rtt
        self.rate = rate
        # Reads of about 5 ms of the capped rate keep the pacing smooth.
        self._chunk = int(min(256 * 1024, max(16 * 1024, rate / 200)))
        window = max(1024 * 1024, 2 * rate * rtt)
        self._slots = max(4, int(window // self._chunk))
        self._stats = ThrottleStats()
        self._port = 0
        self._server: asyncio.Server | None = None
        self._thread = _LoopThread("bench-throttle-proxy")

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    def cpu_seconds(self) -> float:
        return self._thread.cpu_seconds()

    def take_stats(self) -> ThrottleStats:
        """The counts since the last call, and start counting anew."""

        async def take() -> ThrottleStats:
            stats, self._stats = self._stats, ThrottleStats()
            return stats

        return self._thread.call(take())

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()

    def start(self) -> None:
        self._thread.call(self._start())

    def stop(self) -> None:
        self._thread.stop(self._close())

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._stats.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(
                self._upstream_host, self._upstream_port
            )
        except OSError:
            client_w.close()
            return
        for writer in (client_w, server_w):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upward = asyncio.create_task(self._link(client_r, server_w, up=True, setup_delay=self.rtt))
        downward = asyncio.create_task(self._link(server_r, client_w, up=False, setup_delay=0))
        try:
            done, pending = await asyncio.wait(
                {upward, downward}, return_when=asyncio.FIRST_EXCEPTION
            )
            # A link that ended cleanly (EOF) has passed the EOF on; wait for the other one,
            # unless something broke, in which case both sides are torn down.
            if pending and not any(task.exception() for task in done):
                await asyncio.wait(pending)
        except asyncio.CancelledError:
            pass
        finally:
            for task in (upward, downward):
                task.cancel()
            await asyncio.gather(upward, downward, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.close()

    async def _link(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        up: bool,
        setup_delay: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(self._slots)
        delay = self.rtt / 2

        async def receive() -> None:
            free_at = loop.time() + setup_delay  # when the link can send its next byte
            while True:
                data = await reader.read(self._chunk)
                if not data:
                    await queue.put(None)
                    return
                free_at = max(loop.time(), free_at) + len(data) / self.rate
                await queue.put((free_at + delay, data))

        receiving = asyncio.create_task(receive())
        try:
            while True:
                item = await queue.get()
                if item is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                if up:
                    self._stats.bytes_from_clients += len(data)
                else:
                    self._stats.bytes_to_clients += len(data)
                await writer.drain()
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await receiving


@contextlib.contextmanager
def throttle_proxy(upstream: str, *, rtt: float, rate: float) -> Iterator[ThrottleProxy]:
    proxy = ThrottleProxy(upstream, rtt=rtt, rate=rate)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()


# --------------------------------------------------------------------------------------------
# Faults


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
        self._thread = _LoopThread("bench-fault-proxy")

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
