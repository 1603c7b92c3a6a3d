"""The throttling proxy of the benchmark, on 127.0.0.1, in front of the private registry.

:class:`ThrottleProxy` makes loopback look like a wide-area link: a raw TCP proxy that delays
every byte by half the round-trip time in each direction, caps each connection's rate in each
direction, and makes a new connection wait one round trip before its first bytes go through (the
handshake a real link would cost). It does not look into HTTP, so it works the same for every
tool. The fault-injecting proxy is in ``bench_faultproxy.py``.

Each proxy runs an event loop in a thread of its own inside the benchmark process (it moves
bytes, so its CPU time is measured and shown), and listens and connects on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


class LoopThread:
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
        self._thread = LoopThread("bench-throttle-proxy")

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
