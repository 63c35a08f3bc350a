"""One MQTT connection attempt of the kiosk's SyncClient, and the counters it shares.

Owns: `Connection` (its own paho client, its in-flight map mid -> outbox seq, its window: how
many QoS 1 messages may be handed to paho and how many may be on the wire) and `SyncStats`, the
counters shown in telemetry and the service menu. `kiosk.sync.client` runs the connections;
`kiosk.sync.drain` fills their windows from the outbox.

Must never: put more QoS 1 messages on the wire than min(our window, the broker's Receive
Maximum); read paho's private state (what paho holds is counted here, from its public API).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["PUBACK_FAILURE", "Connection", "SyncStats"]

PUBACK_FAILURE = 0x80  # MQTT 5: reason codes >= 0x80 are failures


@dataclass
class SyncStats:
    connected: bool = False
    last_connect_at: float | None = None  # wall clock of the last successful CONNACK
    last_ack_at: float | None = None  # wall clock of the last end-to-end ack
    published: int = 0  # outbox records confirmed by a successful PUBACK
    puback_failures: int = 0  # PUBACKs with a failure reason code
    reconnects: int = 0  # successful connections after the first
    connect_failures: int = 0
    inflight: int = 0
    peak_inflight: int = 0  # the most QoS 1 messages ever in flight at once
    window: int = 0  # current in-flight limit: min(our window, broker Receive Maximum)
    bad_messages: int = 0
    handler_errors: int = 0
    acked: int = 0  # outbox records removed by end-to-end acks
    resent: int = 0  # records made due again by resend rounds on the same connection
    next_retry_s: float = 0.0  # the backoff delay being waited out while disconnected

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Connection:
    """One connection attempt: its own paho client and in-flight map (mid -> outbox seq).

    `max_inflight` is our window; `queue_ahead` how many records may be handed to paho beyond
    it (None: the default, see `SyncClient`)."""

    def __init__(
        self, gen: int, client: mqtt.Client, max_inflight: int, queue_ahead: int | None
    ) -> None:
        self.gen = gen
        self.client = client
        self.max_inflight = max_inflight
        self.queue_ahead = queue_ahead
        self.connack = threading.Event()
        self.ended = threading.Event()
        self.refused = False
        self.accepted = False  # a successful CONNACK arrived
        self.ready = False
        self.receive_max = 65535
        # Every QoS 1 publish awaiting its PUBACK: mid -> outbox seq (None: status/direct).
        # The broker's Receive Maximum counts them all. Guarded by `lock`.
        self.inflight: dict[int, int | None] = {}
        self.lock = threading.Lock()
        self.up_since = 0.0
        self.offline_mid: int | None = None
        self.offline_acked = threading.Event()
        # Set at CONNACK: min(our window, the broker's Receive Maximum), and whether paho's own
        # max_inflight_messages was set to it. Only then may we hand paho more than the window
        # (paho sends the surplus as PUBACKs free slots, in its own thread, without waiting for
        # the drain thread); otherwise we count every slot ourselves.
        self.window = 0
        self.paho_limits = False
        self.ahead = 0
        self.ahead_rest = 0  # the part of `ahead` that non-critical records may use
        self.wake_every = 1
        self.unseen = 0  # PUBACKs since the drain thread was last woken (paho's thread only)
        # Our own count of what paho holds, from its public API only: QoS 1 messages handed to
        # `publish()` (under `lock`) and PUBACKs seen in its `on_publish` callback (paho's
        # thread only). paho sends min(handed - pubacked, its in-flight limit) at once and
        # queues the rest, sending one from the queue each time a PUBACK frees a slot.
        self.handed = 0
        self.pubacked = 0

    def on_wire(self) -> int:
        """QoS 1 messages paho has sent and not yet seen PUBACKed: what its in-flight limit
        (set to `window` when `paho_limits`) counts."""
        outstanding = self.handed - self.pubacked
        return min(outstanding, self.window) if self.paho_limits else outstanding

    def window_limit(self) -> int:
        """In-flight limit for everything we publish at QoS 1 on this connection."""
        return max(1, min(self.max_inflight, self.receive_max))

    def limit_paho(self) -> None:
        """At CONNACK, before anything is published on this connection: make paho's own
        in-flight limit the window, so paho never has more than min(our window, the broker's
        Receive Maximum) QoS 1 messages awaiting PUBACK, however many we hand it. The limit
        was set to our `max_inflight` before connecting; only a broker with a smaller Receive
        Maximum needs it lowered now, and paho refuses the public setter once connected (its
        worry is switching between 0 = unlimited and a limit, not this), so then the attribute
        is set directly. All only when nothing is in flight yet (by our own count: nothing
        handed to this client, or all of it PUBACKed), and checked by reading paho's public
        `max_inflight_messages`; otherwise we keep counting every slot ourselves (no
        queue-ahead)."""
        w = self.window_limit()
        self.window = w
        client = self.client
        ok = False
        if self.handed == self.pubacked:
            if client.max_inflight_messages != w:
                try:
                    client.max_inflight_messages_set(w)
                except RuntimeError:
                    client._max_inflight_messages = w
            ok = client.max_inflight_messages == w
        self.paho_limits = ok
        ahead = max(w, 512) if self.queue_ahead is None else self.queue_ahead
        self.ahead = ahead if ok else 0
        # by default only CRITICAL records use a queue ahead longer than one window
        self.ahead_rest = min(self.ahead, w) if self.queue_ahead is None else self.ahead
        # wake the drain thread once per this many PUBACKs (each wake-up is a thread switch)
        self.wake_every = max(1, self.ahead // 2) if ok else 1

    def handed_limit(self) -> int:
        """How many QoS 1 messages may be handed to paho and not yet PUBACKed."""
        return (self.window or self.window_limit()) + self.ahead

    def outbox_limit(self) -> int:
        """Outbox records may use all but one slot: status and direct messages keep one."""
        n = self.handed_limit()
        return n - 1 if n >= 2 else n
