"""The kiosk's MQTT connection: TLS, reconnects with backoff, and draining the outbox.

Owns: the paho client (one per connection attempt), the connection supervisor thread, the drain
thread, the in-flight window, the backlog token bucket, and the counters shown in telemetry and
the service menu. Knows nothing about what messages mean: topics and payloads come from
`kiosk.sync.topics`, records from `kiosk.sync.outbox`, and every decoded downlink message goes
to `on_message(topic, dict)` (signature checks are the receiver's job, kiosk.sync.signing).

Must never:
- connect in plaintext unless `sync.allow_plaintext` says so (demo and tests only);
- count a record as sent before the broker's PUBACK says success (reason code < 0x80);
- have more records in flight than min(our window, the broker's Receive Maximum);
- let a backlog delay a live sale record: CRITICAL records bypass the token bucket and the
  outbox hands them out first;
- crash on a bad payload: it is logged with its reason and counted.

Reconnects: exponential backoff with full jitter (delay = uniform(0, min(cap, base * 2**n))), so
30,000 kiosks coming back after a province outage spread out instead of stampeding. The
supervisor owns this loop; paho's own reconnect is switched off (`reconnect_on_failure=False`).
A record whose PUBACK was lost with the connection is simply handed out again by the outbox: the
province deduplicates by event id, so "at least once" plus dedupe is "exactly once" end to end.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk import __version__
from kiosk.clock import Clock
from kiosk.config import SyncConfig
from kiosk.log import log_event
from kiosk.sync import messages
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.outbox import OutboxRecord, Priority
from kiosk.sync.pacing import Backoff, TokenBucket
from kiosk.sync.topics import MessageError, Topics, check_image, decode, encode, parse_topic

__all__ = [  # Backoff and TokenBucket live in kiosk.sync.pacing; re-exported here
    "Backoff",
    "BrokerAddress",
    "SyncClient",
    "SyncConfigError",
    "SyncStats",
    "TokenBucket",
    "broker_address",
    "sync_problem",
    "tls_context",
]

log = logging.getLogger("kiosk.sync.client")

PUBACK_FAILURE = 0x80  # MQTT 5: reason codes >= 0x80 are failures
# Messages the kiosk sends, never receives: arriving on a kiosk subscription they are bad input.
_UPLINK_KINDS = frozenset(
    {"event", "telemetry", "status", "reported", "order_status_request", "image_request"}
)


_Row = tuple[int, str, bytes, int]  # a due outbox record: (seq, topic, payload, priority)


class SyncConfigError(ValueError):
    """The sync configuration cannot be used (e.g. plaintext without allow_plaintext)."""


class OutboxLike(Protocol):
    """What the client always calls on kiosk.sync.outbox.Outbox (which satisfies this; mypy
    checks it where the app passes one in).

    The client also uses these when the object has them (looked up with getattr, so a minimal
    outbox works too; Outbox has them all): `due_rows(limit, now, *, after)` (the fast read,
    preferred over `due`), `due_after(priority, seq, limit, now)` (a cursor read without
    `due_rows`), `last_seq()` (for the birth message and to notice appends), `last_ack_at()`
    (for `stats()`), `reset_sent()` (after a reconnect).
    """

    def due(self, limit: int, now: float) -> Sequence[OutboxRecord]: ...
    def mark_sent(self, seqs: Iterable[int], now: float) -> None: ...
    def ack(self, event_ids: Iterable[str]) -> int: ...


# --- pure helpers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def broker_address(config: SyncConfig) -> BrokerAddress:
    """Parse `mqtt(s)://host:port`; refuse plaintext unless explicitly allowed."""
    u = urlsplit(config.broker_url)
    if u.scheme not in ("mqtt", "mqtts"):
        raise SyncConfigError(f"broker_url must be mqtt:// or mqtts://, got {config.broker_url!r}")
    if not u.hostname:
        raise SyncConfigError(f"broker_url has no host: {config.broker_url!r}")
    tls = u.scheme == "mqtts"
    if not tls and not config.allow_plaintext:
        raise SyncConfigError(
            "plaintext MQTT is refused; use mqtts:// or set sync.allow_plaintext = true "
            "(demo/tests only)"
        )
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError as e:
        raise SyncConfigError(f"bad port in broker_url {config.broker_url!r}: {e}") from None
    return BrokerAddress(u.hostname, port, tls)


def tls_context(config: SyncConfig) -> ssl.SSLContext:
    """TLS 1.2+, the broker's certificate checked against `ca_file` and its host name, and our
    client certificate presented when configured."""
    if config.ca_file is None:
        raise SyncConfigError("mqtts:// needs sync.ca_file (the province CA certificate)")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(config.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if config.cert_file is not None:
            key = str(config.key_file) if config.key_file is not None else None
            ctx.load_cert_chain(str(config.cert_file), key)
    except (OSError, ssl.SSLError) as e:
        raise SyncConfigError(f"cannot load TLS files: {e}") from e
    return ctx


def sync_problem(config: SyncConfig) -> str | None:
    """Why `config` cannot be used (None: it can): a bad or plaintext URL without
    allow_plaintext, or TLS files that do not load. Used by the kiosk and by the degraded
    kiosk (kiosk/degraded.py), which must not import the composition root."""
    try:
        if broker_address(config).tls:
            tls_context(config)
    except SyncConfigError as e:
        return str(e)
    return None


# --- the client -------------------------------------------------------------------------------


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
    next_retry_s: float = 0.0  # the backoff delay being waited out while disconnected

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Conn:
    """One connection attempt: its own paho client and in-flight map (mid -> outbox seq)."""

    def __init__(self, gen: int, client: mqtt.Client) -> None:
        self.gen = gen
        self.client = client
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


class SyncClient:
    """The kiosk's side of the province link. `start()` returns at once; `stop()` publishes the
    retained "offline" status and disconnects.

    Tuning (all keyword-only, tests use small values): `backoff_base_s`/`backoff_cap_s`
    (reconnect backoff), `stable_after_s` (a connection that lasted this long resets the
    backoff), `max_inflight` (our window), `backlog_rate`/`backlog_burst` (token bucket for
    non-critical records, per second), `poll_s` (how often the drain looks for new records when
    nobody calls `wake()`), `mark_batch`/`mark_delay_s` (PUBACKed seqs are written back in
    batches; a crash before the write only means the province sees a duplicate it drops),
    `queue_ahead` (records handed to paho beyond the window; paho's own in-flight limit is set
    to the window at CONNACK, so it holds them and sends each as a PUBACK frees a slot, without
    a round trip through the drain thread; default: max(one window, 512) for CRITICAL records,
    so the drain thread wakes once per a few hundred PUBACKs; other records never have more
    than one window queued ahead, so a new sale record is not stuck behind a queued backlog).
    """

    def __init__(
        self,
        config: SyncConfig,
        kiosk_id: str,
        outbox: OutboxLike,
        topics: Topics,
        clock: Clock,
        on_message: Callable[[str, dict[str, Any]], None],
        boot_counter: int,
        *,
        software_version: str = __version__,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        stable_after_s: float = 30.0,
        max_inflight: int = 20,
        backlog_rate: float = 50.0,
        backlog_burst: float = 100.0,
        poll_s: float = 0.25,
        connack_timeout_s: float = 10.0,
        session_expiry_s: int = 24 * 3600,
        mark_batch: int = 256,
        mark_delay_s: float = 0.05,
        prefetch: int = 256,
        queue_ahead: int | None = None,
        rng: random.Random | None = None,
        clock_offset: ClockOffset | None = None,
        reset_sent_on_connect: bool = True,
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        if config.mqtt_version not in ("5", "3.1.1"):
            raise SyncConfigError(f"mqtt_version must be 5 or 3.1.1, got {config.mqtt_version!r}")
        self.config = config
        self.kiosk_id = kiosk_id
        self.outbox = outbox
        self.topics = topics
        self.clock = clock
        self.on_message = on_message
        self.boot_counter = boot_counter
        self.software_version = software_version
        self.clock_offset = clock_offset
        self._reset_sent_on_connect = reset_sent_on_connect
        self.address = broker_address(config)
        self._tls = tls_context(config) if self.address.tls else None
        self._v5 = config.mqtt_version == "5"
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rng)
        self._stable_after_s = stable_after_s
        self._max_inflight = max_inflight
        self._bucket = TokenBucket(backlog_rate, backlog_burst, clock.monotonic())
        self._poll_s = poll_s
        self._connack_timeout_s = connack_timeout_s
        self._session_expiry_s = session_expiry_s
        self._mark_batch = mark_batch
        self._mark_delay_s = mark_delay_s

        self._lock = threading.Lock()  # guards stats and _conn
        self._stats = SyncStats()
        self._bad_by_reason: dict[str, int] = {}
        self._conn: _Conn | None = None
        self._gen = 0
        self._connected_once = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pubacks: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        # PUBACKed but not yet written back with mark_sent: kept out of due() results.
        self._unmarked: list[int] = []
        self._unmarked_set: set[int] = set()
        self._unmarked_since = 0.0
        # Records the broker refused (PUBACK failure): seq -> (retry not before, failures).
        self._held: dict[int, tuple[float, int]] = {}
        self._token_wait_s = 0.0  # > 0: records are waiting for the backlog token bucket
        # Due records read ahead (one query per `prefetch` records, not one per publish).
        self._prefetch = prefetch
        # Records handed to paho beyond the window (queued inside paho, sent by paho's thread as
        # PUBACKs arrive). None: one window's worth. 0: never more than the window.
        if queue_ahead is not None and queue_ahead < 0:
            raise ValueError("queue_ahead must be >= 0")
        self._queue_ahead = queue_ahead
        # (seq, topic, payload, priority) of due records, in due order
        self._buffer: collections.deque[_Row] = collections.deque()
        self._buffer_at = 0.0
        self._buffer_gen = -1
        # (priority, seq) of the last record read: where the next batch continues from
        self._cursor: tuple[int, int] | None = None
        # The full due() read skips every record sent but not yet acknowledged, row by row: it
        # runs at once after wake(), on a new connection, when records were appended (the
        # outbox's last seq moved), and at least every `_rescan_s` for records that became due
        # again behind the cursor (ack timeout, a PUBACK failure's hold ended).
        self._rescan_s = max(poll_s, 1.0)
        self._full_at = 0.0
        self._seen_seq = -1
        self._refresh = False
        self._pending_conn: _Conn | None = None
        self._threads: list[threading.Thread] = []

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("SyncClient already started")
        self._stop.clear()
        for name, target in (("sync-conn", self._supervise), ("sync-drain", self._drain_loop)):
            t = threading.Thread(target=target, name=f"{name}-{self.kiosk_id}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say "offline" (retained), disconnect, write back PUBACKed records, join threads."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._threads = []
        self._flush_marks(force=True)

    def wake(self) -> None:
        """Something was appended to the outbox: look now instead of at the next poll."""
        self._refresh = True
        self._wake.set()

    def publish_direct(self, topic: str, body: dict[str, Any], *, retain: bool = False) -> bool:
        """Publish a message that is not an outbox record (an order-status or image request):
        QoS 1, not retried by us. False when not connected (the caller asks again later)."""
        conn = self._conn
        if conn is None or not conn.ready:
            return False
        return self._publish(conn, topic, encode(body), None, retain=retain) is not None

    def stats(self) -> SyncStats:
        with self._lock:
            s = SyncStats(**asdict(self._stats))
            conn = self._conn
        if conn is not None:
            s.inflight = len(conn.inflight)
        last_ack = getattr(self.outbox, "last_ack_at", None)
        if callable(last_ack):
            try:
                value = last_ack()
                if value is not None:
                    s.last_ack_at = value
            except Exception:  # stats must never take the caller down
                log.debug("outbox.last_ack_at failed", exc_info=True)
        return s

    def bad_message_reasons(self) -> dict[str, int]:
        with self._lock:
            return dict(self._bad_by_reason)

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.ready

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected:
                return True
            time.sleep(0.01)
        return self.connected

    # --- the connection supervisor ------------------------------------------------------------

    def _new_client(self, conn_gen: int) -> mqtt.Client:
        if self._v5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.kiosk_id,
                protocol=mqtt.MQTTv5,
                reconnect_on_failure=False,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.kiosk_id,
                clean_session=False,
                protocol=mqtt.MQTTv311,
                reconnect_on_failure=False,
            )
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.connect_timeout = min(10.0, self._connack_timeout_s)
        client.max_inflight_messages_set(self._max_inflight)
        client.max_queued_messages_set(0)
        client.will_set(self.topics.status, self._status_payload("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.user_data_set(conn_gen)
        return client

    def _status_payload(self, state: str) -> bytes:
        now = self.clock.time()
        if state == "offline":
            return encode(messages.will(self.kiosk_id, self.boot_counter, now))
        last_seq = getattr(self.outbox, "last_seq", None)
        return encode(
            messages.birth(
                self.kiosk_id,
                self.boot_counter,
                now,
                self.software_version,
                self.clock_offset.offset() if self.clock_offset is not None else None,
                last_seq() if callable(last_seq) else 0,
            )
        )

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                lasted = self._one_connection()
            except Exception:  # never let the supervisor die: log and back off
                log.exception("sync connection attempt crashed")
                lasted = 0.0
            if self._stop.is_set():
                break
            if lasted >= self._stable_after_s:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            with self._lock:
                self._stats.next_retry_s = delay
            log_event(log, "sync.backoff", delay_s=round(delay, 3), attempt=self._backoff.attempt)
            self._stop.wait(delay)
        with self._lock:
            self._stats.next_retry_s = 0.0

    def _one_connection(self) -> float:
        """Connect, run until the connection ends; return how long it was up (0 if never)."""
        self._gen += 1
        client = self._new_client(self._gen)
        conn = _Conn(self._gen, client)
        self._pending_conn = conn
        host, port = self.address.host, self.address.port
        try:
            if self._v5:
                # paho ships type hints but leaves Properties.__init__ unannotated (no-untyped-call)
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = self._session_expiry_s
                props.ReceiveMaximum = 64
                client.connect(
                    host, port, self.config.keepalive_s, clean_start=False, properties=props
                )
            else:
                client.connect(host, port, self.config.keepalive_s)
        except Exception as e:  # OSError, ssl.SSLError, socket.timeout, paho ValueError
            self._count_connect_failure(f"{type(e).__name__}: {e}")
            _close_quietly(client)
            return 0.0
        client.loop_start()
        try:
            if not conn.connack.wait(self._connack_timeout_s) or not conn.accepted:
                if not conn.refused:  # (a refusal was counted when the CONNACK came)
                    self._count_connect_failure(
                        "closed before CONNACK (e.g. our certificate was rejected)"
                        if conn.connack.is_set()
                        else "no CONNACK in time"
                    )
                return 0.0
            if self._reset_sent_on_connect:
                self._reset_sent()
            up_at = self.clock.monotonic()
            conn.up_since = up_at
            with self._lock:
                self._conn = conn
                self._stats.connected = True
                self._stats.last_connect_at = self.clock.time()
                self._stats.window = self._window(conn)
                if self._connected_once:
                    self._stats.reconnects += 1
                self._connected_once = True
            conn.ready = True
            self._wake.set()
            log_event(
                log,
                "sync.connected",
                broker=f"{host}:{port}",
                receive_max=conn.receive_max,
                window=self._window(conn),
            )
            while not self._stop.is_set() and not conn.ended.is_set():
                conn.ended.wait(0.5)
            if self._stop.is_set() and not conn.ended.is_set():
                self._say_offline(conn)
            return self.clock.monotonic() - up_at
        finally:
            conn.ready = False
            with self._lock:
                if self._conn is conn:
                    self._conn = None
                self._stats.connected = False
            self._wake.set()
            if not conn.ended.is_set():
                client.disconnect()
            client.loop_stop()
            _close_quietly(client)

    def _reset_sent(self) -> None:
        """After a reconnect, records sent before it are due again at once instead of after
        the ack timeout: if the broker lost them (restarted without persistence), the province
        gets them now; if not, it drops the duplicates."""
        reset = getattr(self.outbox, "reset_sent", None)
        if callable(reset):
            try:
                n = reset()
                if n:
                    log_event(log, "sync.resend_unacked", records=n)
            except Exception:
                log.exception("outbox.reset_sent failed")

    def _say_offline(self, conn: _Conn) -> None:
        # wait (bounded) for a free slot: Receive Maximum is never exceeded, not even here
        deadline = time.monotonic() + 2.0
        mid = None
        while mid is None and time.monotonic() < deadline and not conn.ended.is_set():
            mid = self._publish(
                conn, self.topics.status, self._status_payload("offline"), None, retain=True
            )
            if mid is None:
                time.sleep(0.01)
        if mid is not None:
            conn.offline_mid = mid
            conn.offline_acked.wait(max(0.0, deadline - time.monotonic()))

    def _count_connect_failure(self, why: str) -> None:
        with self._lock:
            self._stats.connect_failures += 1
        log_event(log, "sync.connect_failed", logging.WARNING, reason=why)

    def _window(self, conn: _Conn) -> int:
        """In-flight limit for everything we publish at QoS 1 on this connection."""
        return max(1, min(self._max_inflight, conn.receive_max))

    def _limit_paho(self, conn: _Conn) -> None:
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
        w = self._window(conn)
        conn.window = w
        client = conn.client
        ok = False
        if conn.handed == conn.pubacked:
            if client.max_inflight_messages != w:
                try:
                    client.max_inflight_messages_set(w)
                except RuntimeError:
                    client._max_inflight_messages = w
            ok = client.max_inflight_messages == w
        conn.paho_limits = ok
        ahead = max(w, 512) if self._queue_ahead is None else self._queue_ahead
        conn.ahead = ahead if ok else 0
        # by default only CRITICAL records use a queue ahead longer than one window
        conn.ahead_rest = min(conn.ahead, w) if self._queue_ahead is None else conn.ahead
        # wake the drain thread once per this many PUBACKs (each wake-up is a thread switch)
        conn.wake_every = max(1, conn.ahead // 2) if ok else 1

    def _handed_limit(self, conn: _Conn) -> int:
        """How many QoS 1 messages may be handed to paho and not yet PUBACKed."""
        return (conn.window or self._window(conn)) + conn.ahead

    def _outbox_limit(self, conn: _Conn) -> int:
        """Outbox records may use all but one slot: status and direct messages keep one."""
        n = self._handed_limit(conn)
        return n - 1 if n >= 2 else n

    def _publish(
        self,
        conn: _Conn,
        topic: str,
        payload: bytes,
        seq: int | None,
        *,
        retain: bool = False,
    ) -> int | None:
        """QoS 1 publish counted in the window; the mid, or None if no room / no connection."""
        with conn.lock:
            if len(conn.inflight) >= self._handed_limit(conn):
                return None
            info = conn.client.publish(topic, payload, qos=1, retain=retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log_event(log, "sync.publish_failed", logging.WARNING, rc=str(info.rc))
                return None
            conn.inflight[info.mid] = seq
            conn.handed += 1
            # with paho_limits the rest wait in paho's queue: count what is on the wire
            n = conn.on_wire() if conn.paho_limits else len(conn.inflight)
        if n > self._stats.peak_inflight:
            with self._lock:
                self._stats.peak_inflight = max(self._stats.peak_inflight, n)
        return info.mid

    # --- paho callbacks (paho's network thread) -----------------------------------------------

    def _conn_for(self, gen: Any) -> _Conn | None:
        conn = self._conn
        if conn is not None and conn.gen == gen:
            return conn
        pending = self._pending_conn
        if pending is not None and pending.gen == gen:
            return pending
        return None

    def _on_connect(
        self, client: mqtt.Client, gen: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        conn = self._conn_for(gen)
        if conn is None:
            return
        if reason_code.is_failure:
            conn.refused = True
            self._count_connect_failure(f"CONNACK {reason_code}")
            conn.connack.set()
            conn.ended.set()
            return
        rm = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        if isinstance(rm, int) and rm > 0:
            conn.receive_max = rm
        self._limit_paho(conn)
        self._publish(conn, self.topics.status, self._status_payload("online"), None, retain=True)
        client.subscribe(self.topics.subscriptions())
        conn.accepted = True
        conn.connack.set()

    def _on_subscribe(
        self, client: mqtt.Client, gen: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        failed = [str(rc) for rc in reason_codes if getattr(rc, "is_failure", False)]
        if failed:
            log_event(log, "sync.subscribe_refused", logging.ERROR, reasons=failed)

    def _on_disconnect(
        self, client: mqtt.Client, gen: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        conn = self._conn_for(gen)
        if conn is not None:
            conn.ended.set()
            conn.connack.set()
        log_event(log, "sync.disconnected", reason=str(reason_code))
        self._wake.set()

    def _on_publish(
        self, client: mqtt.Client, gen: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        # Runs with paho's _out_message_mutex held: only hand the result to the drain thread.
        conn = self._conn
        if conn is None or conn.gen != gen:
            conn = self._conn_for(gen)
        value = getattr(reason_code, "value", 0)
        code = value if type(value) is int else 0
        self._pubacks.put((gen, mid, code))
        if conn is None:
            self._wake.set()
            return
        conn.pubacked += 1  # paho frees the slot right after this callback
        if conn.offline_mid == mid:
            conn.offline_acked.set()
            self._wake.set()
            return
        # With a queue ahead in paho, the next message is already going out: wake the drain
        # thread only every `wake_every` PUBACKs (or when all is acked, or on a failure).
        conn.unseen += 1
        if code >= PUBACK_FAILURE or conn.unseen >= min(conn.wake_every, len(conn.inflight)):
            conn.unseen = 0
            self._wake.set()

    def _on_message(self, client: mqtt.Client, gen: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle_message(msg.topic, bytes(msg.payload))
        except Exception:  # the network thread must survive anything
            log.exception("sync: unexpected error handling a message")
            self._bad("internal_error", msg.topic)

    # --- incoming messages --------------------------------------------------------------------

    def _bad(self, reason: str, topic: str, detail: str = "") -> None:
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

    def _handle_message(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic, self.topics.prefix)
        if parsed is None:
            self._bad("unknown_topic", topic)
            return
        if parsed.kiosk_id not in (None, self.kiosk_id):
            self._bad("foreign_topic", topic)
            return
        kind = parsed.message_kind
        if kind is None or kind in _UPLINK_KINDS:
            self._bad("unexpected_kind", topic, str(kind))
            return
        body: dict[str, Any]
        try:
            if kind == "image":
                sha = topic.rsplit("/", 1)[-1]
                body = {"sha256": sha, "data": check_image(sha, payload)}
            else:
                body = decode(kind, payload)
        except MessageError as e:
            self._bad(e.reason.value, topic, e.detail)
            return
        sent_at = body.get("sent_at")
        if self.clock_offset is not None and isinstance(sent_at, int | float):
            self.clock_offset.observe(sent_at, self.clock.time())
        if kind == "ack":
            n = self.outbox.ack(body["event_ids"])
            with self._lock:
                self._stats.acked += n
                self._stats.last_ack_at = self.clock.time()
            return
        try:
            self.on_message(topic, body)
        except Exception as e:
            with self._lock:
                self._stats.handler_errors += 1
            log.exception("sync: on_message handler failed for %s", topic)
            log_event(log, "sync.handler_error", logging.ERROR, topic=topic, error=repr(e))

    # --- the drain loop -----------------------------------------------------------------------

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            try:
                published = self._drain_once()
            except Exception:
                log.exception("sync drain step failed")
                published = 0
                self._stop.wait(self._poll_s)
            if published == 0:
                self._wake.wait(self._idle_wait())
                self._wake.clear()
        self._process_pubacks()

    def _idle_wait(self) -> float:
        wait = self._poll_s
        if self._unmarked:
            wait = min(wait, self._mark_delay_s)
        if self._token_wait_s > 0:
            wait = min(wait, self._token_wait_s)
        return max(0.001, wait)

    def _process_pubacks(self) -> None:
        conn = self._conn
        failures: list[tuple[int, int]] = []
        items: list[tuple[int, int, int]] = []
        get = self._pubacks.get_nowait
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(get())
        if items and conn is not None:
            gen = conn.gen
            with conn.lock:  # once per batch, not per PUBACK
                pop = conn.inflight.pop
                # an old connection's PUBACKs are dropped: its records are handed out again
                results = [(pop(mid, None), code) for g, mid, code in items if g == gen]
            ok = [seq for seq, code in results if seq is not None and code < PUBACK_FAILURE]
            failures = [
                (seq, code) for seq, code in results if seq is not None and code >= PUBACK_FAILURE
            ]  # (seq None: the birth/offline status message or a direct publish)
            if ok:
                if not self._unmarked:
                    self._unmarked_since = self.clock.monotonic()
                self._unmarked.extend(ok)
                self._unmarked_set.update(ok)
                if self._held:
                    for seq in ok:
                        self._held.pop(seq, None)
        if failures:
            now = self.clock.monotonic()
            for seq, code in failures:
                _, n = self._held.get(seq, (0.0, 0))
                retry = min(60.0, 2.0 ** min(n, 6))
                self._held[seq] = (now + retry, n + 1)
                log_event(
                    log,
                    "sync.puback_failure",
                    logging.WARNING,
                    seq=seq,
                    reason_code=hex(code),
                    retry_in_s=retry,
                )
            with self._lock:
                self._stats.puback_failures += len(failures)
        self._flush_marks()

    def _flush_marks(self, force: bool = False) -> None:
        if not self._unmarked:
            return
        now = self.clock.monotonic()
        if (
            not force
            and len(self._unmarked) < self._mark_batch
            and now - self._unmarked_since < self._mark_delay_s
        ):
            return
        seqs = self._unmarked
        self.outbox.mark_sent(seqs, self.clock.time())
        with self._lock:
            self._stats.published += len(seqs)
        self._unmarked = []
        self._unmarked_set = set()
        self._unmarked_since = now

    def _drain_once(self) -> int:
        self._process_pubacks()
        conn = self._conn
        if conn is None or not conn.ready or conn.ended.is_set():
            return 0
        with conn.lock:
            space = self._outbox_limit(conn) - len(conn.inflight)
        if space <= 0:
            return 0
        mono = self.clock.monotonic()
        if (
            self._refresh
            or conn.gen != self._buffer_gen
            or not self._buffer
            or mono - self._buffer_at > self._poll_s
        ):
            self._refill(conn, mono)
        published = 0
        self._token_wait_s = 0.0
        buffer = self._buffer
        critical = int(Priority.CRITICAL)
        success = MQTTErrorCode.MQTT_ERR_SUCCESS
        with conn.lock:  # one lock round for the whole batch (as _publish, per record)
            inflight = conn.inflight
            limit = self._outbox_limit(conn)
            limit_rest = limit - conn.ahead + conn.ahead_rest  # for non-critical records
            publish = conn.client.publish
            while buffer and len(inflight) < limit:
                seq, topic, payload, prio = buffer[0]
                if prio != critical and len(inflight) >= limit_rest:
                    break
                # CRITICAL (sale records) never wait for tokens; the rest of a backlog is
                # paced. The buffer is in (priority, seq) order: after the first record without
                # a token come only more non-critical ones.
                if prio != critical and not self._bucket.take(mono):
                    self._token_wait_s = self._bucket.wait_s(mono)
                    break
                info = publish(topic, payload, qos=1)
                if info.rc != success:
                    log_event(log, "sync.publish_failed", logging.WARNING, rc=str(info.rc))
                    break
                inflight[info.mid] = seq
                conn.handed += 1
                buffer.popleft()
                published += 1
            handed = len(inflight)
            # on the wire: paho's count when paho enforces the window (the rest wait in its
            # queue), else everything handed over
            on_wire = conn.on_wire() if conn.paho_limits else handed
        with self._lock:
            self._stats.inflight = handed
            if on_wire > self._stats.peak_inflight:
                self._stats.peak_inflight = on_wire
        if not published and not self._buffer and not conn.inflight:
            # idle: nothing due, nothing in flight; batching the write-back gains nothing now
            self._flush_marks(force=True)
        return published

    def _refill(self, conn: _Conn, mono: float) -> None:
        """Read the next due records, highest priority first, leaving out what is in flight,
        PUBACKed but not yet written back, or held after a PUBACK failure. Re-read at least
        every `poll_s` and at once after `wake()`, so a new sale record overtakes a buffered
        backlog."""
        due_after = getattr(self.outbox, "due_after", None)
        last_seq = getattr(self.outbox, "last_seq", None)
        go_on = (
            callable(due_after)
            and callable(last_seq)
            and not self._refresh
            and conn.gen == self._buffer_gen
            and self._cursor is not None
            and mono - self._full_at <= self._rescan_s
        )
        if go_on and callable(last_seq) and mono - self._buffer_at > self._poll_s:
            # the poll: anything appended (without a wake())? Then read it all again.
            go_on = last_seq() == self._seen_seq
            self._buffer_at = mono
        if go_on:
            if not self._buffer and callable(due_after) and self._cursor is not None:
                # The buffer ran out: read on from where it ended (an index seek, not a
                # rescan of everything already sent).
                rows = self._read(self._prefetch, self._cursor)
                if rows:
                    self._cursor = (int(rows[-1][3]), int(rows[-1][0]))
                self._buffer = collections.deque(self._not_excluded(conn, mono, rows))
            return
        self._refresh = False
        self._full_at = mono
        if callable(last_seq):
            self._seen_seq = last_seq()  # before the read: later appends show at the next poll
        exclude = self._exclude(conn, mono)
        rows = self._read(self._prefetch + len(exclude), None)
        self._cursor = (int(rows[-1][3]), int(rows[-1][0])) if rows else None
        self._buffer = collections.deque(r for r in rows if r[0] not in exclude)
        self._buffer_at = mono
        self._buffer_gen = conn.gen

    def _exclude(self, conn: _Conn, mono: float) -> set[int]:
        """In flight, PUBACKed but not yet written back, or held after a PUBACK failure."""
        with conn.lock:
            inflight_seqs = {s for s in conn.inflight.values() if s is not None}
        held_now = {s for s, (until, _) in self._held.items() if until > mono}
        return self._unmarked_set | inflight_seqs | held_now

    def _read(self, limit: int, after: tuple[int, int] | None) -> Sequence[_Row]:
        """Due records as (seq, topic, payload, priority): the outbox's light `due_rows` when
        it has one, else `due()` / `due_after()` records taken apart."""
        now = self.clock.time()
        due_rows = getattr(self.outbox, "due_rows", None)
        if callable(due_rows):
            rows: Sequence[_Row] = due_rows(limit, now, after=after)
            return rows
        if after is None:
            records = self.outbox.due(limit, now)
        else:
            # _refill keeps a cursor only for an outbox that has due_after
            due_after: Callable[[int, int, int, float], Sequence[OutboxRecord]] | None
            due_after = getattr(self.outbox, "due_after", None)
            if due_after is None:
                raise AttributeError("the outbox has no due_after")
            records = due_after(after[0], after[1], limit, now)
        return [(r.seq, r.topic, r.payload, int(r.priority)) for r in records]

    def _not_excluded(self, conn: _Conn, mono: float, rows: Sequence[_Row]) -> list[_Row]:
        exclude = self._exclude(conn, mono)
        return [r for r in rows if r[0] not in exclude]


def _close_quietly(client: mqtt.Client) -> None:
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
