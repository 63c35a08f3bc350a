"""Messages from the province, as the kiosk's MQTT client receives them.

Owns: the first look at every downlink message: its topic (ours, a known kind, not one the
kiosk itself sends), its payload decoded and schema-checked (`kiosk.sync.topics`), end-to-end
acks verified (`kiosk.sync.acks.AckVerifier`: signed, for this kiosk, fresh) and applied to the
outbox by (event id, seq), the clock offset observed from a verified ack's signed `issued_at`
(never from an unsigned `sent_at`), and the count of bad messages by reason. Everything else
goes to the receiver (`deliver(topic, body)`), whose job the signature checks are
(kiosk.sync.signing). Without a verifier every ack is refused: nothing unsigned empties the
outbox. Each bad message also goes to `on_reject(topic, reason, detail)` (the sync bridge counts
it and raises rate-limited alarms, kiosk.sync.rejections).

Must never: crash on a bad payload (it is logged with its reason and counted); let a failing
receiver take paho's network thread down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kiosk.clock import Clock
from kiosk.log import log_event
from kiosk.sync.acks import AckVerifier
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.connection import SyncStats
from kiosk.sync.drain import OutboxLike
from kiosk.sync.signing import TrustError
from kiosk.sync.topics import MessageError, Topics, check_image, decode, parse_topic

__all__ = ["Downlink"]

log = logging.getLogger("kiosk.sync.client")

# Messages the kiosk sends, never receives: arriving on a kiosk subscription they are bad input.
_UPLINK_KINDS = frozenset(
    {"event", "telemetry", "status", "reported", "order_status_request", "image_request"}
)


class Downlink:
    """Checks, decodes and routes the messages of one kiosk's subscriptions. `stats` and `lock`
    are the client's (the lock guards the stats and the bad-message counts); `offset()` is the
    clock offset to feed (None: none); `acks` checks acks (None: every ack is refused);
    `on_reject(topic, reason, detail)` hears of every bad message (paho's thread: it must not
    block)."""

    def __init__(
        self,
        kiosk_id: str,
        topics: Topics,
        outbox: OutboxLike,
        clock: Clock,
        stats: SyncStats,
        lock: threading.Lock,
        deliver: Callable[[str, dict[str, Any]], None],
        offset: Callable[[], ClockOffset | None],
        acks: AckVerifier | None = None,
        on_reject: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.kiosk_id = kiosk_id
        self.topics = topics
        self.outbox = outbox
        self.clock = clock
        self._stats = stats
        self._lock = lock
        self._deliver = deliver
        self._offset = offset
        self._acks = acks
        self._bad_by_reason: dict[str, int] = {}
        self._on_reject = on_reject

    def bad_message_reasons(self) -> dict[str, int]:
        with self._lock:
            return dict(self._bad_by_reason)

    # --- incoming messages (paho's network thread) ---------------------------------------------

    def bad(self, reason: str, topic: str, detail: str = "") -> None:
        with self._lock:
            self._stats.bad_messages += 1
            self._bad_by_reason[reason] = self._bad_by_reason.get(reason, 0) + 1
            count = self._bad_by_reason[reason]
        log_event(
            log,
            "sync.bad_message",
            logging.WARNING,
            reason=reason,
            topic=topic[:200],
            detail=detail[:200],
            count=count,
        )
        if self._on_reject is not None:
            try:
                self._on_reject(topic, reason, detail)
            except Exception:  # counting must never take paho's thread down
                log.exception("sync: on_reject failed")

    def handle(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic, self.topics.prefix)
        if parsed is None:
            self.bad("unknown_topic", topic)
            return
        if parsed.kiosk_id not in (None, self.kiosk_id):
            self.bad("foreign_topic", topic)
            return
        kind = parsed.message_kind
        if kind is None or kind in _UPLINK_KINDS:
            self.bad("unexpected_kind", topic, str(kind))
            return
        body: dict[str, Any]
        try:
            if kind == "image":
                sha = topic.rsplit("/", 1)[-1]
                body = {"sha256": sha, "data": check_image(sha, payload)}
            else:
                body = decode(kind, payload)
        except MessageError as e:
            self.bad(e.reason.value, topic, e.detail)
            return
        if kind == "ack":
            self._ack(topic, body)
            return
        try:
            self._deliver(topic, body)
        except Exception as e:
            with self._lock:
                self._stats.handler_errors += 1
            log.exception("sync: on_message handler failed for %s", topic)
            log_event(log, "sync.handler_error", logging.ERROR, topic=topic, error=repr(e))

    def _ack(self, topic: str, env: dict[str, Any]) -> None:
        """A signed ack: verified, then the clock observes its signed time and the outbox drops
        the records it names by (event id, seq). A refused ack is counted by its reason (the
        verifier has logged it and reported it on the kiosk's rejection path)."""
        if self._acks is None:
            self.bad("UNVERIFIED_ACK", topic, "no province key to check acks with")
            return
        try:
            acked = self._acks.verify(env)
        except TrustError as e:
            self.bad(e.reason.value, topic, e.detail)
            return
        now = self.clock.time()
        offset = self._offset()
        if offset is not None:
            offset.observe(acked.issued_at, now)
        n = self.outbox.ack_records(acked.records)
        with self._lock:
            self._stats.acked += n
            self._stats.last_ack_at = now
