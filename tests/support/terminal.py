"""A terminal of a test's own: ``bulkpull`` run in a pane of a private tmux server, read back
while it runs, and a fake registry slow enough to catch the display mid-run."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Faults, Start
from support.services import child_env, unavailable

MIB = 1024 * 1024
WAIT_SECONDS = 60
T = TypeVar("T")


@dataclass
class Pane:
    """One tmux pane running one command, on a tmux server of the test's own."""

    tmux: str
    socket: Path
    status_file: Path

    async def tmux_command(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            self.tmux,
            "-S",
            str(self.socket),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_terminal_env(),
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode()

    async def screen(self) -> str:
        return await self.tmux_command("capture-pane", "-p", "-t", "run")

    async def exit_status(self) -> int | None:
        """The command's exit status once it has ended, else None.

        Written to a file by the pane's shell: tmux's own ``pane_dead_status`` stays empty
        when its server misses the child's exit.
        """
        text = self.status_file.read_text() if self.status_file.exists() else ""
        return int(text) if text.endswith("\n") else None

    async def wait_for(self, condition: Callable[[str], bool]) -> str:
        """The screen once ``condition`` holds for it; the registry keeps serving meanwhile."""
        return await self._until(self.screen, condition, "the expected screen")

    async def wait_for_exit(self) -> int:
        status = await self._until(self.exit_status, lambda status: status is not None, "exit")
        assert status is not None
        return status

    async def _until(
        self, read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str
    ) -> T:
        """Read until ``done``: tmux can only be asked, it never tells."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while True:
                    value = await read()
                    if done(value):
                        return value
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(f"waited {WAIT_SECONDS} s for {what}; the screen:\n{await self.screen()}")


def _terminal_env() -> dict[str, str]:
    """No proxies, and no COLUMNS/LINES: the pane's own size must decide the layout."""
    env = child_env()
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    env.setdefault("TERM", "xterm-256color")
    return env


OpenPane = Callable[..., Awaitable[Pane]]


@asynccontextmanager
async def tmux_panes(tmp_path: Path) -> AsyncIterator[OpenPane]:
    """Start ``bulkpull ARGS`` in a tmux pane (160x40 unless ``size`` says), in ``tmp_path``;
    the pane stays after the command ends."""
    tmux = shutil.which("tmux") or unavailable("'tmux' is not installed (not found on PATH)")
    socket = tmp_path / "tmux.sock"
    config = tmp_path / "tmux.conf"
    config.write_text("set -g remain-on-exit on\nset -g history-limit 5000\n")
    pane = Pane(tmux, socket, tmp_path / "exit-status")

    async def open_pane(*args: str, size: tuple[int, int] = (160, 40)) -> Pane:
        shell = 'status=$1; shift; "$@"; echo $? > "$status"'
        command = ["sh", "-c", shell, "sh", str(pane.status_file), sys.executable, "-m", "bulkpull"]
        width, height = map(str, size)
        session = ["new-session", "-d", "-s", "run", "-c", str(tmp_path), "-x", width, "-y", height]
        await pane.tmux_command("-f", str(config), *session, *command, *args)
        return pane

    try:
        yield open_pane
    finally:
        if socket.exists():
            await pane.tmux_command("kill-server")


async def slow_registry(
    start: Start, tmp_path: Path, images: int = 3, own: int = 2 * MIB, delay: float = 0.15
) -> tuple[str, Path]:
    """``images`` images sharing a 1 MiB base layer, each with a layer of its own of ``own``
    bytes, every blob sent 256 KiB at a time with ``delay`` between, and a list naming them;
    returns the registry's ``host:port`` and the list."""
    registry = FakeRegistry()
    base = f.random_layer(MIB, name="base.bin")
    for number in range(images):
        registry.add(f"team/app{number}", "1", f.make_image([base, f.random_layer(own)]))
    for digest in registry.blobs:
        registry.faults[digest] = Faults(chunk_delay=delay)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{host}/team/app{number}:1\n" for number in range(images)))
    return host, listing
