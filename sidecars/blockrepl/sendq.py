"""Outgoing replication frames: ``sendmsg`` of header, payload and MAC as they are (no join).

asyncio's transports in Python 3.11 join the buffers of ``writelines`` (a copy of every
1 MiB payload); this queue hands them to the kernel as an I/O vector instead. What the socket
does not take at once stays queued and is sent when the socket is writable; a queued part
that is a view of a reused receive buffer is copied first (rxbuf.stable), so nothing here
refers to memory its owner may overwrite. Above ``high`` bytes queued the link reports
itself congested (the NBD frontend stops reading requests) until the queue drains below
``low``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Callable

from hastack_blockrepl.rxbuf import BIG, stable

IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 512) if hasattr(os, "sysconf") else 512
Part = bytes | bytearray | memoryview


class SendQueue:
    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        congested: Callable[[bool], None],
        failed: Callable[[OSError], None],
    ) -> None:
        self.sock, self.loop, self.congested_cb, self.failed = sock, loop, congested, failed
        self.parts: deque[Part] = deque()
        self.size = 0
        self.fresh = 0  # parts at the tail not yet made stable
        self.high, self.low = 8 << 20, 4 << 20
        self.congested = False
        self.waiting = False  # registered for writability
        self.closed = False

    def empty(self) -> bool:
        """Nothing queued: a frame sent straight to the socket now keeps the order."""
        return not self.parts and not self.waiting and not self.closed

    def set_limits(self, high: int, low: int) -> None:
        self.high, self.low = high, low

    def add(self, parts: list[Part]) -> int:
        """Queue ``parts``; returns their size. Small views of reused buffers are copied now;
        a large one must be flushed before its owner regains control (LinkProtocol does)."""
        added = 0
        for part in parts:
            n = len(part)
            if n:
                keep = part if type(part) is bytes or n >= BIG or stable(part) else bytes(part)
                added += n
                self.parts.append(keep)
                self.fresh += 1
        self.size += added
        return added

    def flush(self) -> None:
        """Send what the socket takes now; keep (stable copies of) the rest for later."""
        if self.closed or not self.parts:
            self.fresh = 0
            return
        if not self.waiting:
            self._send()
        n = len(self.parts)
        for i in range(max(n - self.fresh, 0), n):
            if not stable(self.parts[i]):
                self.parts[i] = bytes(self.parts[i])
        self.fresh = 0
        if self.parts and not self.waiting and not self.closed:
            self.waiting = True
            self.loop.add_writer(self.sock.fileno(), self._writable)
        self._check_congestion()

    def _send(self) -> None:
        parts = self.parts
        while parts:
            batch = [parts[i] for i in range(min(len(parts), IOV_MAX))]
            try:
                n = self.sock.sendmsg(batch)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.close()
                self.failed(exc)
                return
            self.size -= n
            while n:
                head = parts[0]
                if n >= len(head):
                    n -= len(head)
                    parts.popleft()
                else:
                    parts[0] = memoryview(head)[n:]
                    n = 0
            if len(batch) < IOV_MAX and parts:  # a partial send: the socket is full
                return

    def _writable(self) -> None:
        self._send()
        if not self.parts or self.closed:
            self._unwatch()
        self._check_congestion()

    def _check_congestion(self) -> None:
        if not self.congested and self.size > self.high:
            self.congested = True
            self.congested_cb(True)
        elif self.congested and self.size <= self.low:
            self.congested = False
            self.congested_cb(False)

    def _unwatch(self) -> None:
        if self.waiting:
            self.waiting = False
            try:
                self.loop.remove_writer(self.sock.fileno())
            except (ValueError, OSError):
                pass

    def close(self) -> None:
        if self.closed:
            return
        self._unwatch()
        self.closed = True
        self.parts.clear()
        self.size = 0
        self.sock.close()
