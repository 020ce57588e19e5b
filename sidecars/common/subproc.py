"""Running a short command from asyncio: to its end, or killed at a deadline."""

from __future__ import annotations

import asyncio
import contextlib


async def run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``argv`` to its end: (exit code, its stdout and stderr together, decoded and stripped).

    Raises OSError when it cannot start, and TimeoutError once it has been killed and reaped at
    ``timeout``."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace").strip()
