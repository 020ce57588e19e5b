"""The write gate: what stands between the client and an acknowledgement.

*Submission holds* (a peer handshake, a pending fence-peer, a lapsed deadline) queue new
requests before they touch any disk; *acknowledgement holds* (fence, deadline) keep replies
of requests already done back. Nothing held has been acknowledged, so nothing is lost.

The heartbeat deadline (docs/blockrepl.md, "The heartbeat deadline"): once armed, the
monotonic clock passing it is a hold on both, checked on every request (not only by a timer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from hastack_common.ctlsock import EventBus
from hastack_common.logs import kv

log = logging.getLogger(__name__)
Done = Callable[[int], None]
LAPSED = "heartbeat deadline lapsed: writes are not acknowledged until it is refreshed"


class WriteGate:
    def __init__(self, resource: str, events: EventBus, on_change: Callable[[], None]) -> None:
        self.resource, self.events, self.on_change = resource, events, on_change
        self.submit: dict[str, str] = {}  # key -> why
        self.ack: dict[str, str] = {}
        self.held_submits: list[tuple[Callable[[], None], Done]] = []
        self.held_acks: list[tuple[Done, int]] = []
        self.deadline_at: float | None = None
        self.lapses = 0
        self.loop = asyncio.get_event_loop()

    def deadline_lapsed(self) -> bool:
        if self.deadline_at is not None and self.loop.time() >= self.deadline_at and "deadline" not in self.ack:
            self.submit["deadline"] = self.ack["deadline"] = LAPSED
            self.lapses += 1
            log.warning("deadline lapsed", extra=kv(lapses=self.lapses))
            self.events.publish("deadline-lapsed", resource=self.resource)
            self.on_change()
        return "deadline" in self.ack

    def blocked(self) -> bool:
        """New requests must wait."""
        return bool(self.submit) or self.deadline_lapsed()

    def acks_blocked(self) -> bool:
        return bool(self.ack) or self.deadline_lapsed()

    def hold(self, key: str, why: str, acks: bool) -> None:
        self.submit[key] = why
        if acks:
            self.ack[key] = why
        self.on_change()

    def release(self, key: str) -> None:
        self.submit.pop(key, None)
        self.ack.pop(key, None)
        self.drain()
        self.on_change()

    def queue(self, resubmit: Callable[[], None], done: Done) -> None:
        self.held_submits.append((resubmit, done))

    def answer(self, done: Done, err: int) -> None:
        """Deliver a completion, unless acknowledgements are held (errors always pass)."""
        if err == 0 and self.acks_blocked():
            self.held_acks.append((done, err))
        else:
            done(err)

    def drain(self) -> None:
        if not self.acks_blocked():
            acks, self.held_acks = self.held_acks, []
            for cb, err in acks:
                cb(err)
        while self.held_submits and not self.blocked():
            self.held_submits.pop(0)[0]()

    def fail_all(self, err: int) -> None:
        """Demotion: held requests end with ``err`` (never applied, or not acknowledged)."""
        held, self.held_submits = self.held_submits, []
        acks, self.held_acks = self.held_acks, []
        for _, done in held:
            done(err)
        for cb, _ in acks:
            cb(err)

    def set_deadline(self, seconds: float) -> dict[str, Any]:
        if seconds <= 0:
            self.deadline_at = None
        else:
            self.deadline_at = self.loop.time() + seconds
            self.loop.call_later(seconds + 0.001, self.deadline_lapsed)
            if "deadline" in self.ack:
                log.info("deadline refreshed after a lapse: writes resume")
                self.events.publish("deadline-restored", resource=self.resource)
        self.release("deadline")
        return self.deadline_status()

    def deadline_status(self) -> dict[str, Any]:
        lapsed = self.deadline_lapsed()
        rem = None if self.deadline_at is None else round(self.deadline_at - self.loop.time(), 3)
        return {"armed": self.deadline_at is not None, "remaining": rem, "lapsed": lapsed, "lapses": self.lapses}

    def reasons(self) -> list[str]:
        return sorted(set(self.submit.values()) | ({LAPSED} if self.deadline_lapsed() else set()))

    def held_count(self) -> int:
        return len(self.held_submits) + len(self.held_acks)
