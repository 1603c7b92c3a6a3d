"""Running ``bulkpull`` as users do: a real process, its output and its exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping


async def _started(args: tuple[str, ...], env: dict[str, str]) -> asyncio.subprocess.Process:
    """``python -m bulkpull ARGS`` started with a pipe for each standard stream."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkpull",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def run_cli(
    *args: str,
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    kill_after: float | None = None,
) -> tuple[int, str, str]:
    """Run ``python -m bulkpull ARGS`` with pipes (not a terminal).

    ``env`` adds variables to this process's environment, or with ``inherit_env=False`` is the
    whole environment (a user without proxies or auth files of their own). A run still going
    after ``kill_after`` seconds is killed, and the test fails saying so.
    """
    process = await _started(args, {**(os.environ if inherit_env else {}), **(env or {})})
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), kill_after)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"bulkpull {' '.join(args)} still ran after {kill_after} s") from None
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def interrupt_once(*args: str, printed: bytes, settle: float = 0.0) -> tuple[int, str, str]:
    """Run ``python -m bulkpull ARGS``, send it SIGINT (Ctrl-C) once its standard error has
    a line holding ``printed`` and ``settle`` seconds more have passed, and return its exit
    code and output (standard error from after that line). Fails the test if it ends first,
    or if ``printed`` takes more than a minute."""
    process = await _started(args, dict(os.environ))
    assert process.stderr is not None
    async with asyncio.timeout(60):
        while printed not in (line := await process.stderr.readline()):
            assert line, f"bulkpull ended before it printed {printed!r}"
    await asyncio.sleep(settle)
    process.send_signal(signal.SIGINT)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
