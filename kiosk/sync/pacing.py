"""Pacing for anything that talks to the province: exponential backoff with jitter, token buckets.

Owns: the two small timing rules shared by the MQTT client (reconnects, backlog drain) and the
media fetcher (image requests). Pure: time comes in as an argument, randomness from an injected
`random.Random`; no clock reads, no I/O.
"""

from __future__ import annotations

import math
import random

__all__ = ["Backoff", "TokenBucket"]


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
    Jitter"): the n-th delay is uniform(0, min(cap, base * 2**n))."""

    def __init__(self, base_s: float = 1.0, cap_s: float = 60.0, rng: random.Random | None = None):
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        return float(min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, 62)))

    def next_delay(self) -> float:
        delay = self._rng.uniform(0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. `math.inf` rate: never limits."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._t = now

    def _refill(self, now: float) -> None:
        if now > self._t:
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
        self._t = now

    def take(self, now: float) -> bool:
        if math.isinf(self.rate):
            return True
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until the next token."""
        if math.isinf(self.rate):
            return 0.0
        self._refill(now)
        return max(0.0, (1 - self._tokens) / self.rate)
