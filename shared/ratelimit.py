"""Per-client token buckets, kept in the memory of one function instance.

Note: each instance counts on its own, so the effective limit scales with the
number of instances. That bounds a single client hammering one instance (the
common abuse: a script in a loop) without a shared counter document, which
would itself be a write hot spot. Volumetric attacks belong to Cloud Armor in
front of the functions (see docs/architecture.md).
"""

from __future__ import annotations

import threading
import time

# Buckets idle this long are dropped so memory stays bounded.
IDLE_S = 600.0
MAX_KEYS = 50_000


class TokenBuckets:
    def __init__(self, per_min: int, burst: int, clock=time.monotonic) -> None:
        self.rate = per_min / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> float:
        """0 when the call may go ahead, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, seen = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - seen) * self.rate)
            if len(self._buckets) > MAX_KEYS:
                self._buckets = {
                    k: v for k, v in self._buckets.items() if now - v[1] < IDLE_S
                }
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
