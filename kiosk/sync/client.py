"""The kiosk's MQTT connection: TLS, reconnects with backoff, and draining the outbox.

Owns: the paho client (one per connection attempt), the connection supervisor thread, the drain
thread, the in-flight window, the backlog token bucket, and the counters shown in telemetry and
the service menu. Knows nothing about what messages mean: topics and payloads come from
`kiosk.sync.topics`, records from `kiosk.sync.outbox`, and every decoded downlink message goes
to `on_message(topic, dict)` (signature checks are the receiver's job, kiosk.sync.signing).

Its parts: this module runs the connections (supervisor, paho callbacks, status messages);
`kiosk.sync.connection` holds one connection's state and window and the counters (`SyncStats`);
`kiosk.sync.drain` hands outbox records out and writes PUBACKs back (the drain thread);
`kiosk.sync.downlink` checks and routes what arrives. `start(loop)` runs the same connection
and drain steps on a shared `kiosk.sync.shared_loop.SyncLoop` instead of threads of its own
(the fleet simulator's many kiosks per process; a kiosk itself never passes a loop).

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

Resends: after a reconnect every unacknowledged record is due at once (paced by the drain); on
the same connection only in bounded rounds: while the province does not ack, a probe of at
most `resend_probe` of the oldest overdue records, the gap doubling from `ack_timeout_s` to
`resend_cap_s`; once it acks, at most `resend_window` records an acked one overtook per round,
at the base pace (kiosk.sync.pacing.ResendSchedule; docs/sync.md, "Resends").
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol
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
from kiosk.sync.acks import AckVerifier
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.connection import PUBACK_FAILURE, Connection, SyncStats
from kiosk.sync.downlink import Downlink
from kiosk.sync.drain import OutboxDrain, OutboxLike
from kiosk.sync.pacing import Backoff, ResendSchedule, TokenBucket
from kiosk.sync.topics import Topics, encode

if TYPE_CHECKING:
    from kiosk.sync.shared_loop import SyncLoop

__all__ = [  # re-exported here: Backoff, TokenBucket (kiosk.sync.pacing), OutboxLike
    # (kiosk.sync.drain), SyncStats (kiosk.sync.connection)
    "Backoff",
    "BrokerAddress",
    "OutboxLike",
    "SyncClient",
    "SyncConfigError",
    "SyncStats",
    "TokenBucket",
    "broker_address",
    "sync_problem",
    "tls_context",
]

log = logging.getLogger("kiosk.sync.client")


class SyncConfigError(ValueError):
    """The sync configuration cannot be used (e.g. plaintext without allow_plaintext)."""


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
    `resend_cap_s`/`resend_window`/`resend_probe` (the resend schedule on one connection;
    default: the config's; its base is the outbox's `ack_timeout_s`, 30 s when it has none).
    `acks` verifies the province's signed acks (kiosk.sync.acks); without it no ack is trusted
    and records stay in the outbox.
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
        acks: AckVerifier | None = None,
        on_reject: Callable[[str, str, str], None] | None = None,
        resend_cap_s: float | None = None,
        resend_window: int | None = None,
        resend_probe: int | None = None,
    ) -> None:
        _check_settings(config, max_inflight, queue_ahead)
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
        self._connack_timeout_s = connack_timeout_s
        self._session_expiry_s = session_expiry_s
        # Records handed to paho beyond the window (queued inside paho, sent by paho's thread as
        # PUBACKs arrive). None: one window's worth. 0: never more than the window.
        self._queue_ahead = queue_ahead
        self._lock = threading.Lock()  # guards stats and _conn
        self._stats = SyncStats()
        self._conn: Connection | None = None
        self._pending_conn: Connection | None = None
        self._gen = 0
        self._connected_once = False
        self._stop, self._wake = threading.Event(), threading.Event()
        self._downlink = self._new_downlink(acks, on_reject)
        self._drain = self._new_drain(
            _resend_schedule(
                config, outbox, clock, rng, (resend_cap_s, resend_window, resend_probe)
            ),
            backlog_rate=backlog_rate,
            backlog_burst=backlog_burst,
            poll_s=poll_s,
            mark_batch=mark_batch,
            mark_delay_s=mark_delay_s,
            prefetch=prefetch,
        )
        self._threads: list[threading.Thread] = []
        self._loop: SyncLoop | None = None

    def _new_drain(self, resend: ResendSchedule, **tuning: Any) -> OutboxDrain:
        """The drain thread's state (kiosk.sync.drain); `tuning` as in `SyncClient`."""
        return OutboxDrain(
            self.outbox,
            self.clock,
            self._stats,
            self._lock,
            lambda: self._conn,
            self._conn_for,
            self._stop,
            self._wake,
            resend=resend,
            **tuning,
        )

    def _new_downlink(
        self, acks: AckVerifier | None, on_reject: Callable[[str, str, str], None] | None
    ) -> Downlink:
        """Signed acks only (kiosk.sync.acks; without a verifier every ack is refused);
        `on_reject(topic, reason, detail)` hears of every bad message (paho's thread; the sync
        bridge counts them, kiosk.sync.rejections)."""
        return Downlink(
            self.kiosk_id,
            self.topics,
            self.outbox,
            self.clock,
            self._stats,
            self._lock,
            self._deliver,
            self._offset,
            acks,
            on_reject=on_reject,
        )

    def _deliver(self, topic: str, body: dict[str, Any]) -> None:
        self.on_message(topic, body)

    def _offset(self) -> ClockOffset | None:
        return self.clock_offset

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, loop: SyncLoop | None = None) -> None:
        """Run on two threads of its own (and paho's); with `loop`, on that shared loop instead
        (kiosk.sync.shared_loop: one thread for many clients, the fleet simulator's)."""
        if self._threads or self._loop is not None:
            raise RuntimeError("SyncClient already started")
        self._stop.clear()
        if loop is not None:
            self._loop = loop
            loop.add(self)
            return
        for name, target in (("sync-conn", self._supervise), ("sync-drain", self._drain.loop)):
            t = threading.Thread(target=target, name=f"{name}-{self.kiosk_id}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say "offline" (retained), disconnect, write back PUBACKed records, join threads."""
        self._stop.set()
        self._wake.set()
        loop, self._loop = self._loop, None
        if loop is not None:  # the loop says "offline", disconnects and writes back
            loop.remove(self, timeout)
            return
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._threads = []
        self._drain.flush_marks(force=True)

    def wake(self) -> None:
        """Something was appended to the outbox: look now instead of at the next poll."""
        self._drain.refresh()
        self._wake.set()
        if self._loop is not None:
            self._loop.wake(self)

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
        return self._downlink.bad_message_reasons()

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
        return status_payload(self, state)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                lasted = self._one_connection()
            except Exception:  # never let the supervisor die: log and back off
                log.exception("sync connection attempt crashed")
                lasted = 0.0
            if self._stop.is_set():
                break
            self._stop.wait(self._retry_delay(lasted))
        with self._lock:
            self._stats.next_retry_s = 0.0

    def _retry_delay(self, lasted: float) -> float:
        """The backoff before the next attempt, after a connection that was up `lasted` s."""
        if lasted >= self._stable_after_s:
            self._backoff.reset()
        delay = self._backoff.next_delay()
        with self._lock:
            self._stats.next_retry_s = delay
        log_event(log, "sync.backoff", delay_s=round(delay, 3), attempt=self._backoff.attempt)
        return delay

    def _one_connection(self) -> float:
        """Connect, run until the connection ends; return how long it was up (0 if never)."""
        conn = self._open_connection()
        if conn is None:
            return 0.0
        conn.client.loop_start()
        try:
            if not conn.connack.wait(self._connack_timeout_s) or not conn.accepted:
                self._count_connect_failure(connack_problem(conn))
                return 0.0
            up_at = self._connection_up(conn)
            while not self._stop.is_set() and not conn.ended.is_set():
                conn.ended.wait(0.5)
            if self._stop.is_set() and not conn.ended.is_set():
                self._say_offline(conn)
            return self.clock.monotonic() - up_at
        finally:
            self._connection_down(conn)

    def _open_connection(self) -> Connection | None:
        """A new paho client, connected (TCP and TLS; CONNECT sent); None: it failed (counted)."""
        self._gen += 1
        client = self._new_client(self._gen)
        conn = Connection(self._gen, client, self._max_inflight, self._queue_ahead)
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
            return None
        return conn

    def _connection_up(self, conn: Connection) -> float:
        """The CONNACK accepted us: records may go out on `conn`. When (monotonic)."""
        if self._reset_sent_on_connect:
            self._reset_sent()
        up_at = self.clock.monotonic()
        conn.up_since = up_at
        with self._lock:
            self._conn = conn
            self._stats.connected = True
            self._stats.last_connect_at = self.clock.time()
            self._stats.window = conn.window_limit()
            if self._connected_once:
                self._stats.reconnects += 1
            self._connected_once = True
        conn.ready = True
        self._wake.set()
        log_event(
            log,
            "sync.connected",
            broker=f"{self.address.host}:{self.address.port}",
            receive_max=conn.receive_max,
            window=conn.window_limit(),
        )
        return up_at

    def _connection_down(self, conn: Connection) -> None:
        conn.ready = False
        with self._lock:
            if self._conn is conn:
                self._conn = None
            self._stats.connected = False
        self._wake.set()
        try:
            if not conn.ended.is_set():
                conn.client.disconnect()
        finally:  # (no thread to stop on a shared loop: paho says so, harmlessly)
            stop_network(conn.client)

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

    def _say_offline(self, conn: Connection) -> None:
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

    def _count_connect_failure(self, why: str | None) -> None:
        if why is None:
            return
        with self._lock:
            self._stats.connect_failures += 1
        log_event(log, "sync.connect_failed", logging.WARNING, reason=why)

    def _publish(
        self,
        conn: Connection,
        topic: str,
        payload: bytes,
        seq: int | None,
        *,
        retain: bool = False,
    ) -> int | None:
        """QoS 1 publish counted in the window; the mid, or None if no room / no connection."""
        with conn.lock:
            if len(conn.inflight) >= conn.handed_limit():
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

    def _conn_for(self, gen: Any) -> Connection | None:
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
        conn.limit_paho()
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
        self._drain.puback(gen, mid, code)
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
            self._downlink.handle(msg.topic, bytes(msg.payload))
        except Exception:  # the network thread must survive anything
            log.exception("sync: unexpected error handling a message")
            self._downlink.bad("internal_error", msg.topic)


def status_payload(c: SyncClient, state: str) -> bytes:
    """The retained status (docs/mqtt-api.yaml): the birth on "online", else the will."""
    now = c.clock.time()
    if state == "offline":
        return encode(messages.will(c.kiosk_id, c.boot_counter, now))
    last_seq = getattr(c.outbox, "last_seq", None)
    return encode(
        messages.birth(
            c.kiosk_id,
            c.boot_counter,
            now,
            c.software_version,
            c.clock_offset.offset() if c.clock_offset is not None else None,
            last_seq() if callable(last_seq) else 0,
        )
    )


def _check_settings(config: SyncConfig, max_inflight: int, queue_ahead: int | None) -> None:
    if max_inflight < 1:
        raise ValueError("max_inflight must be >= 1")
    if config.mqtt_version not in ("5", "3.1.1"):
        raise SyncConfigError(f"mqtt_version must be 5 or 3.1.1, got {config.mqtt_version!r}")
    if queue_ahead is not None and queue_ahead < 0:
        raise ValueError("queue_ahead must be >= 0")


def connack_problem(conn: Connection) -> str | None:
    """Why `conn` did not come up, to be counted as a connect failure (None: the broker refused
    us, which was counted when the CONNACK came)."""
    if conn.refused:
        return None
    if conn.connack.is_set():
        return "closed before CONNACK (e.g. our certificate was rejected)"
    return "no CONNACK in time"


def _resend_schedule(
    config: SyncConfig,
    outbox: OutboxLike,
    clock: Clock,
    rng: random.Random | None,
    tuning: tuple[float | None, int | None, int | None],
) -> ResendSchedule:
    """(cap_s, window, probe): the client's keyword arguments, None: the config's."""
    cap_s, window, probe = tuning
    base = float(getattr(outbox, "ack_timeout_s", 30.0))
    cap = float(config.resend_cap_s if cap_s is None else cap_s)
    return ResendSchedule(
        base,
        max(base, cap),
        config.resend_window if window is None else window,
        clock.monotonic(),
        rng,
        probe=config.resend_probe if probe is None else probe,
    )


class _NetworkClient(Protocol):
    def loop_stop(self) -> Any: ...
    def socket(self) -> Any: ...


def stop_network(client: _NetworkClient) -> None:
    """Stop paho's network thread and close the connection's socket, whatever happens.

    paho's `loop_stop()` checks its `_thread`, then joins it. Our thread ends by itself after a
    disconnect (`reconnect_on_failure=False`), and its last line sets `_thread = None`: when that
    runs between the check and the join, `loop_stop()` raises AttributeError (paho issue #872,
    still open in 2.2.0). The thread has finished its work by then, so nothing is left to join;
    the socket is closed here in any case, so that exception can no longer leak it (the
    supervisor used to lose the socket with the exception under load)."""
    try:
        client.loop_stop()
    except AttributeError:
        log_event(log, "sync.loop_stop_race", logging.DEBUG)
    finally:
        _close_quietly(client)


def _close_quietly(client: _NetworkClient) -> None:
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
