"""Token buckets per key (a client address, a user name): how often a key may fail.

Each key starts with ``burst`` tokens; one comes back every ``60 / per_minute`` seconds
up to ``burst``. :meth:`Buckets.take` spends one (or says how long until one is back);
:meth:`Buckets.give_back` returns it when the attempt turned out fine, so only failures
count. The table is bounded: full buckets are forgotten first (they hold nothing a new
bucket would not), then the oldest.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

MAX_KEYS = 10_000


class Buckets:
    def __init__(
        self,
        burst: int,
        per_minute: float,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.burst = burst
        self.rate = per_minute / 60.0  # tokens per second
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of when)
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate)

    def take(self, key: str) -> float | None:
        """Spend a token of ``key``: None if there was one, else seconds until there is."""
        now = self._clock()
        with self._lock:
            tokens = self._level(key, now)
            if tokens < 1:
                return (1 - tokens) / self.rate if self.rate > 0 else math.inf
            self._buckets.pop(key, None)  # re-insert: the dict's order is last use
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > self.max_keys:
                self._shrink(now)
        return None

    def exhausted(self, key: str) -> bool:
        """The next :meth:`take` would be refused."""
        with self._lock:
            return self._level(key, self._clock()) < 1

    def give_back(self, key: str) -> None:
        """Undo one :meth:`take` (the attempt succeeded)."""
        now = self._clock()
        with self._lock:
            if key in self._buckets:
                self._buckets[key] = (min(self.burst, self._level(key, now) + 1), now)

    def _shrink(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]
