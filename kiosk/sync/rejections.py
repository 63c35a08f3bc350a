"""Rejected downlink messages: counted per (what, reason), turned into rate-limited alarms.

Owns: the names a rejection goes by (`what`: the kind of topic it came on, bounded and never the
raw topic string; `reason`: an UPPER_SNAKE code from the stage that refused it), the counts per
reason shown in the link counters, and the rate limit that keeps a flood of bad messages from
filling the outbox: at most one alarm per (what, reason) per window (600 s by default,
`sync.rejection_alarm_every_s`), each carrying the number of rejections since the previous alarm
for that pair.

Pure: no I/O, no threads, no locks (the caller serialises access), time from the injected
`Clock` (its monotonic time paces the windows; its wall time is what the alarms show).

The window rule, per pair:
- a rejection of a pair with no alarm in the last window raises an alarm at once (count 1,
  handed out by the next `take()`), and a window starts;
- later rejections within the window are counted; when the window ends, `take()` returns one
  summary alarm with their count (and the next window starts from that alarm);
- `flush()` (clean stop) returns every pending count at once, whatever the window says, so no
  count is lost when the kiosk stops cleanly; after a crash the pending counts are lost, the
  link counters (`mqtt_rejected_*`) of the next start begin at zero again.
Every rejection is in exactly one alarm (`count` adds up), and alarms of one pair are at least
one window apart (`flush()` aside).

Must never: grow without bound (strings are capped, pairs are capped at `max_pairs`, further
pairs share one ("unknown", "OTHER") bucket); raise on odd input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kiosk.clock import Clock
from kiosk.sync.topics import parse_topic

__all__ = [
    "DEFAULT_WINDOW_S",
    "MAX_DETAIL",
    "OVERFLOW",
    "RejectionAlarm",
    "RejectionLimiter",
    "alarm_body",
    "clean_reason",
    "what_of_topic",
    "what_of_trust",
]

DEFAULT_WINDOW_S = 600.0
MAX_DETAIL = 200
MAX_NAME = 48
UNKNOWN = "unknown"
OVERFLOW = (UNKNOWN, "OTHER")  # the pair used once `max_pairs` pairs exist

_REASON_RE = re.compile(r"[^A-Z0-9_]+")
_WHAT_RE = re.compile(r"^[a-z][a-z0-9_/]{0,47}$")

# TrustPolicy's `what` (kiosk.sync.signing) -> the topic kind it arrived on
_TRUST_WHAT = {
    "catalog": "province/catalog",
    "keys": "province/keys",
    "planogram": "desired/planogram",
    "prices": "desired/prices",
    "config": "desired/config",
    "command": "commands",
    "ack": "acks",  # AckVerifier's name (kiosk.sync.acks)
}


def what_of_topic(topic: str, prefix: str) -> str:
    """The kind of a downlink topic, without its kiosk id or image hash: "desired/prices",
    "commands", "acks", "payment/confirm", "orders/status/reply", "images/reply",
    "province/catalog", "province/keys", "province/images", "events/sale", ... and "unknown"
    for anything that is not a topic of our tree (the raw string is never used)."""
    p = parse_topic(topic, prefix) if isinstance(topic, str) else None
    if p is None:
        return UNKNOWN
    if p.kiosk_id is None:
        return f"province/{p.channel}"
    if p.channel == "images" and p.sub.startswith("reply/"):
        return "images/reply"
    what = f"{p.channel}/{p.sub}" if p.sub else p.channel
    return what if _WHAT_RE.match(what) else UNKNOWN


def what_of_trust(what: str) -> str:
    """TrustPolicy's name for what it refused ("catalog", "prices", "command:open_door", ...)
    -> the topic kind ("province/catalog", "desired/prices", "commands", ...)."""
    base = what.split(":", 1)[0] if isinstance(what, str) else ""
    return _TRUST_WHAT.get(base, UNKNOWN)


def clean_reason(reason: object) -> str:
    """An UPPER_SNAKE reason code of at most 48 characters ("" or junk -> "OTHER")."""
    text = _REASON_RE.sub("_", str(reason).upper()).strip("_")[:MAX_NAME]
    return text if text and text[0].isalpha() else "OTHER"


@dataclass(frozen=True, slots=True)
class RejectionAlarm:
    """One alarm: `count` rejections of (what, reason) between `first_at` and `last_at` (wall
    time), `detail` the last one's detail (capped); `raised_at` is the clock's monotonic time
    when the limiter raised it (not sent)."""

    what: str
    reason: str
    count: int
    first_at: float
    last_at: float
    detail: str
    raised_at: float = 0.0


def alarm_body(a: RejectionAlarm) -> dict[str, Any]:
    """The `events/alarm` body (docs/province-guide.md): code SYNC_REJECTED, severity warning."""
    n = "1 message" if a.count == 1 else f"{a.count} messages"
    detail = f"{n} on {a.what} rejected: {a.reason}"
    if a.detail:
        detail += f" (last: {a.detail})"
    return {
        "code": "SYNC_REJECTED",
        "severity": "warning",
        "detail": detail,
        "context": {
            "what": a.what,
            "reason": a.reason,
            "count": a.count,
            "first_at": a.first_at,
            "last_at": a.last_at,
        },
    }


@dataclass(slots=True)
class _Pair:
    next_alarm_at: float  # monotonic: the earliest time the next alarm of this pair may go
    pending: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    detail: str = ""


class RejectionLimiter:
    """Counts rejections and decides which alarms go out (see the module docstring). Not
    thread-safe: the caller holds one lock around every call."""

    def __init__(
        self, clock: Clock, window_s: float = DEFAULT_WINDOW_S, *, max_pairs: int = 256
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if max_pairs < 1:
            raise ValueError("max_pairs must be >= 1")
        self.clock = clock
        self.window_s = float(window_s)
        self.max_pairs = max_pairs
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._ready: list[RejectionAlarm] = []  # raised by record(), handed out by take()
        self._by_reason: dict[str, int] = {}
        self.total = 0

    def record(self, what: str, reason: str, detail: str = "") -> None:
        """One rejected message (any thread, under the caller's lock)."""
        key = (
            what if isinstance(what, str) and _WHAT_RE.match(what) else UNKNOWN,
            clean_reason(reason),
        )
        self.total += 1
        counted = key[1]
        if counted not in self._by_reason and len(self._by_reason) >= self.max_pairs:
            counted = OVERFLOW[1]
        self._by_reason[counted] = self._by_reason.get(counted, 0) + 1
        pair = self._pairs.get(key)
        if pair is None:
            if len(self._pairs) >= self.max_pairs:
                key = OVERFLOW
                pair = self._pairs.get(key)
            if pair is None:
                pair = self._pairs[key] = _Pair(next_alarm_at=float("-inf"))
        wall, now = self.clock.time(), self.clock.monotonic()
        if pair.pending == 0:
            pair.first_at = wall
        pair.pending += 1
        pair.last_at = wall
        pair.detail = str(detail)[:MAX_DETAIL]
        if pair.next_alarm_at <= now:  # no alarm of this pair in the last window: at once
            self._ready.append(self._emit(key, pair, now))
            pair.next_alarm_at = now + self.window_s

    def take(self) -> list[RejectionAlarm]:
        """The alarms to send now: those raised at once by `record()`, and the summary of
        every pair whose window ended with rejections pending. Pairs with nothing pending and
        no window running are forgotten."""
        now = self.clock.monotonic()
        out, self._ready = self._ready, []
        for key, pair in list(self._pairs.items()):
            if pair.next_alarm_at > now:
                continue
            if pair.pending == 0:
                del self._pairs[key]  # quiet for a whole window: the next one alarms at once
                continue
            out.append(self._emit(key, pair, now))
            pair.next_alarm_at = now + self.window_s
        return out

    def flush(self) -> list[RejectionAlarm]:
        """Every alarm not yet taken and every pending count, windows or not (a clean
        stop)."""
        now = self.clock.monotonic()
        out, self._ready = self._ready, []
        out += [self._emit(k, p, now) for k, p in self._pairs.items() if p.pending]
        self._pairs.clear()
        return out

    def pending(self) -> int:
        """Rejections counted but not yet in an alarm handed out by `take()` / `flush()`."""
        return sum(p.pending for p in self._pairs.values()) + sum(a.count for a in self._ready)

    def by_reason(self) -> dict[str, int]:
        """Rejections ever recorded, per reason (for the link counters)."""
        return dict(sorted(self._by_reason.items()))

    @staticmethod
    def _emit(key: tuple[str, str], pair: _Pair, now: float) -> RejectionAlarm:
        a = RejectionAlarm(
            key[0], key[1], pair.pending, pair.first_at, pair.last_at, pair.detail, now
        )
        pair.pending = 0
        pair.detail = ""
        return a
