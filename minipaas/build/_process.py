"""Running one build step as a subprocess: output passed on line by line as it arrives, a
deadline, and the whole process group killed on timeout or cancellation.

Knows nothing about buildpacks or sandboxes: it takes an argv and an environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

CHUNK = 65536


class StepTimeout(Exception):
    """The step ran past its deadline and was killed."""


@dataclass(frozen=True)
class StepOutput:
    returncode: int
    stdout: str  # only when captured; else ""


async def _pump(
    stream: asyncio.StreamReader, on_line: Callable[[str], None] | None, sink: list[bytes] | None
) -> None:
    pending = b""
    while chunk := await stream.read(CHUNK):
        if sink is not None:
            sink.append(chunk)
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            assert on_line is not None
            on_line(line.rstrip(b"\r").decode("utf-8", "replace"))
    if pending and on_line is not None:
        on_line(pending.rstrip(b"\r").decode("utf-8", "replace"))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_step(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    time_limit: float,
    capture_stdout: bool = False,
    cwd: str | None = None,
) -> StepOutput:
    """Run `argv`; each output line goes to `on_line` (stdout too, unless `capture_stdout`).

    The step gets its own process group (session) so that a timeout or a cancelled build kills
    everything it started, not just the first process. Raises `StepTimeout` after
    `time_limit` seconds.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    assert proc.stdout is not None
    captured: list[bytes] = []
    pumps = [_pump(proc.stdout, on_line, captured if capture_stdout else None)]
    if proc.stderr is not None:
        pumps.append(_pump(proc.stderr, on_line, None))
    try:
        async with asyncio.timeout(time_limit):
            await asyncio.gather(*pumps)
            returncode = await proc.wait()
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise StepTimeout from None
    except BaseException:
        _kill_group(proc)
        await proc.wait()
        raise
    # No killpg once the leader is reaped: its pid (= the group id) may be reused. Whatever a
    # sandboxed step left behind died with its pid namespace.
    return StepOutput(returncode, b"".join(captured).decode("utf-8", "replace"))
