"""Resource agents: started in order on promotion, stopped in reverse on demotion.

Each agent is idempotent and bounded by a timeout. A failed start stops the agents already
started (in reverse) and reports the failure, so the core demotes and lets another member try.
The app itself is started last by the start gate, when the state file says ``serve`` (written by
the node once the role is active); on demotion the node first makes the gate stop the app and
waits for its acknowledgement, then the agents stop in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from hastack_common.logs import kv
from hastack_heartbeat.status import Timeline

log = logging.getLogger(__name__)


class AgentError(Exception):
    """A resource agent failed; the message says which step and what to look at."""


class Agent(Protocol):
    name: str
    timeout: float
    phase: str  # timeline phase recorded when the start succeeded ("" for none)

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class ResourceGroup:
    """The resource group of one member (``spec.resources`` turned into agents by ``__main__``)."""

    def __init__(self, agents: Sequence[Agent], clock: Callable[[], float]) -> None:
        self.agents = list(agents)
        self.clock = clock
        self.started: list[Agent] = []
        self.mounted = not any(a.phase == "mounted" for a in self.agents)

    async def _run(self, agent: Agent, what: str, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await asyncio.wait_for(fn(), agent.timeout)
        except TimeoutError as exc:
            raise AgentError(f"{agent.name} {what} timed out after {agent.timeout:.0f}s") from exc
        except AgentError:
            raise
        except Exception as exc:
            raise AgentError(f"{agent.name} {what} failed: {exc}") from exc

    @property
    def device(self) -> str | None:
        """The block device an agent exposed (the volume's, for fsinit), or None."""
        return next((a.device for a in self.agents if getattr(a, "device", None)), None)  # type: ignore[attr-defined]

    async def promote(self, reason: str, timeline: Timeline) -> None:
        for agent in self.agents:
            if agent in self.started:
                continue
            log.info("agent start", extra=kv(agent=agent.name, reason=reason))
            began = self.clock()
            try:
                await self._run(agent, "start", agent.start)
            except AgentError:
                await self._stop_started()
                raise
            log.info("agent started", extra=kv(agent=agent.name, seconds=round(self.clock() - began, 3)))
            self.started.append(agent)
            if agent.phase:
                timeline.phase(self.clock(), agent.phase)
            if agent.phase == "mounted":
                self.mounted = True

    async def demote(self, reason: str, stop_app: Callable[[], Any], fenced: bool = False) -> None:
        """Stop the app through the gate, then the agents in reverse. ``fenced``: the right to stay
        active is already lost, so agents that can cut writes at once (``fence()``) do that first."""
        await stop_app()
        if fenced:
            for agent in self.agents:
                fence = getattr(agent, "fence", None)
                if fence is not None:
                    try:
                        await asyncio.wait_for(fence(), agent.timeout)
                    except Exception as exc:
                        log.error("agent fence failed", extra=kv(agent=agent.name, error=str(exc)))
        await self._stop_started()

    async def check(self) -> None:
        """Pacemaker's monitor operation: every started agent that can tell checks itself."""
        for agent in list(self.started):
            check = getattr(agent, "check", None)
            if check is not None:
                await self._run(agent, "check", check)

    async def _stop_started(self) -> None:
        errors = []
        for agent in reversed(list(self.agents)):  # every agent: a crashed predecessor may have left state
            if agent.phase == "mounted":
                self.mounted = False
            try:
                await self._run(agent, "stop", agent.stop)
            except AgentError as exc:
                log.error("agent stop failed", extra=kv(agent=agent.name, error=str(exc)))
                errors.append(str(exc))
        self.started.clear()
        if errors:
            raise AgentError("; ".join(errors))
