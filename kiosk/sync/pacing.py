"""Pacing for anything that talks to the province: exponential backoff with jitter, token buckets,
and the resend schedule of records the province has not acknowledged.

Owns: the small timing rules shared by the MQTT client (reconnects, backlog drain, resends) and
the media fetcher (image requests). Pure: time comes in as an argument, randomness from an injected
`random.Random`; no clock reads, no I/O.
"""

from __future__ import annotations

import math
import random

__all__ = ["Backoff", "ResendSchedule", "TokenBucket"]


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


IDLE_LOOK = 0.25  # after a round that found nothing overdue: this part of the base gap


class ResendSchedule:
    """When records sent on the current connection, and not acknowledged, are sent again.

    A record the province has not acknowledged `base_s` after it was sent is overdue. Resends
    come in rounds, each making a bounded number of overdue records due again:
    - when the province acknowledged something since the previous round (`take_round()` is
      True), at most `window` records that an acknowledged record overtook (sent before it:
      lost on the way, not waiting in a queue the province is still reading); the next round
      one base gap later;
    - otherwise, a probe: at most `probe` records, the oldest in due order; after each probe
      that resent something the gap grows, `min(cap_s, base_s * 2**level)`.
    Every gap is jittered by a factor uniform(1 - jitter, 1). A round that found nothing
    overdue looks again after a quarter of the base gap, so a record that turns overdue waits
    at most that much beyond `base_s`. An end-to-end ack sets the level back to 0 and brings
    the next round forward to at most one base gap away. A new connection resends everything
    at once (the client's `reset_sent`, paced by the drain), so `reconnected` only restarts the
    round timer.
    Why (docs/sync.md, "Resends"): with the province away and the broker up, the broker already
    holds every copy for the province's session; resending the whole backlog every `base_s`
    from every kiosk only piled duplicates into that queue.

    Pure: time comes in as an argument (monotonic seconds), randomness from `rng`.
    """

    def __init__(
        self,
        base_s: float,
        cap_s: float,
        window: int,
        now: float,
        rng: random.Random | None = None,
        jitter: float = 0.5,
        probe: int | None = None,
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        if window < 1 or (probe is not None and probe < 1):
            raise ValueError("need window >= 1 and probe >= 1")
        if not 0 <= jitter < 1:
            raise ValueError("need 0 <= jitter < 1")
        self.base_s = base_s
        self.cap_s = cap_s
        self.window = window
        self.probe = window if probe is None else probe
        self.jitter = jitter
        self.level = 0
        self.heard = False  # an ack arrived since the last round
        self._rng = rng or random.Random()
        self.next_at = now + self._delay(0)

    def limit(self, heard: bool) -> int:
        """How many records a round may resend (`heard`: what `take_round` said)."""
        return self.window if heard else self.probe

    def interval(self, level: int | None = None) -> float:
        """The un-jittered gap after a round at `level` (default: the current one)."""
        n = self.level if level is None else level
        return float(min(self.cap_s, self.base_s * 2.0 ** min(n, 62)))

    def _delay(self, level: int) -> float:
        return self.interval(level) * self._rng.uniform(1.0 - self.jitter, 1.0)

    def due(self, now: float) -> bool:
        """Is a round due now?"""
        return now >= self.next_at

    def take_round(self) -> bool:
        """A round is due and starts: did the province acknowledge anything since the last
        one? Then the round resends only overdue records that an acknowledged record
        overtook (sent before it: lost on the way, not waiting in a queue the province is
        still reading); otherwise the oldest overdue ones."""
        heard, self.heard = self.heard, False
        return heard

    def resent(self, now: float, n: int, heard: bool = False) -> None:
        """A round ran at `now` and made `n` records due again (`heard`: what `take_round`
        said)."""
        if n > 0 and heard:  # the province is there: the base pace
            self.next_at = now + self._delay(0)
        elif n > 0:
            self.next_at = now + self._delay(self.level)
            if self.interval(self.level) < self.cap_s:
                self.level += 1
        else:  # look again soon: the oldest record sent may become overdue any moment
            self.next_at = now + self._delay(0) * IDLE_LOOK

    def acked(self, now: float) -> None:
        """The province acknowledged something: back to the base pace."""
        self.heard = True
        if self.level > 0:
            self.level = 0
            self.next_at = min(self.next_at, now + self._delay(0))

    def reconnected(self, now: float) -> None:
        """A new connection just made everything due at once: the next round is one interval
        (at the current level) away."""
        self.next_at = now + self._delay(self.level)
