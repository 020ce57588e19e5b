"""Coalescing: many triggers for one key while its work runs become one more run, not many.

The members of a HACluster change together (a StatefulSet creates them at once, the scheduler
places them, each reports), and each pod event asks for the same refresh of the same cluster.
Run it for the first event; events that arrive meanwhile mark the key dirty, and the running
caller runs it once more when it finishes. No waiting, no timers: a caller that finds the key
busy returns at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable


class Coalescer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Hashable] = set()
        self._dirty: set[Hashable] = set()

    def run(self, key: Hashable, work: Callable[[], None]) -> bool:
        """Run ``work`` now (True), or leave it to the caller already running it for ``key`` (False)."""
        with self._lock:
            if key in self._running:
                self._dirty.add(key)
                return False
            self._running.add(key)
        try:
            while True:
                work()
                with self._lock:
                    if key not in self._dirty:
                        self._running.discard(key)
                        return True
                    self._dirty.discard(key)
        except BaseException:
            with self._lock:
                self._running.discard(key)
                self._dirty.discard(key)
            raise
