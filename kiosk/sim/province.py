"""The province simulator: the kiosk's peer for demos and tests, small and honest.

Owns: `province.db` (SQLite in the data dir: events deduplicated by (kiosk, event id), kiosk
status, payments, published versions), the province's MQTT client, end-to-end acks (signed per
batch, never for a record naming another kiosk's order: kiosk.sim.province_acks), signing of
everything sent down (catalog, desired state, commands with the province Ed25519 key; payment
confirmations with the same key via kiosk.core.payment), answering order-status and image
requests, the ledger chain check per kiosk, the sales report, and a small provisioning CA.
Must never ack a record before it is committed to province.db, and never trust a payload's
kiosk id over the topic's (the broker's ACL vouches for the topic, nothing vouches for bytes).

Threads: paho's network thread only queues incoming messages; one worker thread stores them in
batches (one transaction each), then publishes the acks for exactly what it stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import queue
import secrets
import sqlite3
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.clock import Clock, SystemClock
from kiosk.core.ledger import (
    ChainProblem,
    LedgerError,
    SaleRecord,
    record_from_dict,
    verify_chain,
)
from kiosk.core.payment import (
    PaymentConfirmation,
    PaymentStatus,
    PayUrlParams,
    confirmation_from_dict,
    confirmation_to_dict,
    offline_code,
    sign_confirmation,
)
from kiosk.log import log_event
from kiosk.sim.certs import private_key_pem, self_signed_ca
from kiosk.sim.province_acks import AckSigner, refuse_foreign
from kiosk.sim.province_keys import KeySets
from kiosk.sim.province_reconcile import Reconciler
from kiosk.sim.province_secrets import SecretBook
from kiosk.sim.province_views import OrderHistory, SlotStock, order_histories, stock_levels
from kiosk.sync.signing import key_id, public_key_pem, sign_envelope
from kiosk.sync.topics import (
    ALL_STATUS,
    PROVINCE_CATALOG,
    REGISTER_PREFIX,
    REGISTER_REQUESTS,
    MessageError,
    Topics,
    decode,
    encode,
    parse_topic,
    province_image,
    province_subscriptions,
)

if TYPE_CHECKING:
    from kiosk.sim.province_heads import DeviceKeyLookup, HeadCheck
from kiosk.sim.province_ca import ProvisioningCA
from kiosk.sim.province_heads import DeviceKeyLookup, HeadCheck

__all__ = [
    "DB_FILENAME",
    "BrokerSettings",
    "ChainReport",
    "ProvinceCA",
    "ProvinceSimulator",
    "SalesReport",
    "load_device_secret",
    "load_or_create_signing_key",
]

log = logging.getLogger("kiosk.sim.province")


def load_device_secret(path: Path | str) -> bytes:
    """A kiosk's device secret: the file's bytes exactly as stored (docs/payments.md's demo
    signature is computed over the whole file, trailing newline included), the same bytes the
    kiosk reads (kiosk.app.load_device_secret)."""
    return Path(path).read_bytes()


DB_FILENAME = "province.db"
SIGNING_KEY_FILE = "province-signing.key"  # raw Ed25519 private key, hex
PUBLIC_KEY_FILE = "province-public.pem"  # what a kiosk's sync.province_public_key points at
SHARE_GROUP = "province"
REGISTER_TOPIC_PREFIX = REGISTER_PREFIX + "/"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL,
    kiosk_id    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    priority    TEXT NOT NULL,
    boot        INTEGER NOT NULL,
    kiosk_time  REAL NOT NULL,
    clock_offset REAL,
    body        TEXT NOT NULL,
    received_at REAL NOT NULL
);
-- Event ids are unique per kiosk (the kiosk id from the authenticated topic), never across
-- kiosks: one kiosk cannot make another kiosk's records look like duplicates.
CREATE UNIQUE INDEX IF NOT EXISTS events_kiosk_event ON events (kiosk_id, event_id);
CREATE INDEX IF NOT EXISTS events_kiosk_seq ON events (kiosk_id, seq);
-- Province-side alarms (not a kiosk's events/alarm): e.g. two different sale records for one
-- (kiosk, ledger sequence). The second record is kept here in full, never silently dropped.
CREATE TABLE IF NOT EXISTS province_alarms (
    id          INTEGER PRIMARY KEY,
    kiosk_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    body        TEXT NOT NULL DEFAULT '',
    at          REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, kiosk_id);
CREATE TABLE IF NOT EXISTS receipts (
    kiosk_id    TEXT PRIMARY KEY,
    received    INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS kiosks (
    kiosk_id    TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    boot        INTEGER NOT NULL,
    software    TEXT,
    last_seq    INTEGER,
    status_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    order_id    TEXT PRIMARY KEY,
    kiosk_id    TEXT NOT NULL,
    amount_fen  INTEGER NOT NULL,
    method      TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    confirmation TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    scope       TEXT PRIMARY KEY,
    version     INTEGER NOT NULL
);
"""


# --- settings and keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerSettings:
    """Where the province connects. Plaintext only with `allow_plaintext` (demo, tests)."""

    url: str = "mqtt://127.0.0.1:1883"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    allow_plaintext: bool = False
    mqtt_version: str = "5"
    client_id: str = "province-sim"
    keepalive_s: int = 30
    session_expiry_s: int = 24 * 3600

    def address(self) -> tuple[str, int, bool]:
        u = urlsplit(self.url)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise ValueError(f"broker url must be mqtt(s)://host:port, got {self.url!r}")
        tls = u.scheme == "mqtts"
        if not tls and not self.allow_plaintext:
            raise ValueError("plaintext MQTT refused: use mqtts:// or allow_plaintext (demo)")
        return u.hostname, u.port or (8883 if tls else 1883), tls

    def tls_context(self) -> ssl.SSLContext:
        if self.ca_file is None:
            raise ValueError("mqtts:// needs a CA file")
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx


def load_or_create_signing_key(data_dir: Path) -> bytes:
    """The province's Ed25519 private key (raw 32 bytes), created on first use, with the public
    key written beside it as PEM for kiosk configs (`sync.province_public_key`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SIGNING_KEY_FILE
    if path.exists():
        raw = bytes.fromhex(path.read_text().strip())
    else:
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_text(raw.hex() + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
    pub = _public_of(raw)
    pem_path = data_dir / PUBLIC_KEY_FILE
    if not pem_path.exists() or pem_path.read_bytes() != public_key_pem(pub):
        pem_path.write_bytes(public_key_pem(pub))
    return raw


def _public_of(private: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


# --- reports ----------------------------------------------------------------------------------


@dataclass
class ChainReport:
    """One kiosk's ledger as the province has it."""

    kiosk_id: str
    records: int
    problems: list[ChainProblem]
    outbox_gaps: list[tuple[int, int]]  # (first missing seq, last missing seq)
    received: int = 0  # messages that carried a new record
    duplicates: int = 0  # messages whose event id was already stored

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class SalesReport:
    by_product: list[tuple[str, str, int, int]] = field(default_factory=list)  # id,name,qty,fen
    by_county: list[tuple[str, int, int]] = field(default_factory=list)  # county, qty, fen
    by_kiosk: list[tuple[str, int, int, int]] = field(default_factory=list)  # id,orders,qty,fen
    total_fen: int = 0
    refund_due_fen: int = 0

    def format(self) -> str:
        def yuan(fen: int) -> str:
            return f"¥{fen // 100}.{fen % 100:02d}"

        out = ["Sales by product / 按商品"]
        out += [
            f"  {pid:<12} {name:<24} {qty:>6} {yuan(fen):>12}"
            for pid, name, qty, fen in self.by_product
        ]
        out.append("Sales by origin county / 按产地县")
        out += [f"  {county:<24} {qty:>6} {yuan(fen):>12}" for county, qty, fen in self.by_county]
        out.append("Sales by kiosk / 按售货机")
        out += [
            f"  {kid:<20} {orders:>5} orders {qty:>6} items {yuan(fen):>12}"
            for kid, orders, qty, fen in self.by_kiosk
        ]
        out.append(f"Total delivered / 合计: {yuan(self.total_fen)}")
        out.append(f"Refunds due / 应退款: {yuan(self.refund_due_fen)}")
        return "\n".join(out)


def _gaps(seqs: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    prev: int | None = None
    for s in sorted(set(seqs)):
        if prev is not None and s > prev + 1:
            out.append((prev + 1, s - 1))
        prev = s
    return out


def _sale_record(body: Mapping[str, Any]) -> SaleRecord | None:
    if "record_hash" not in body:
        return None
    try:
        return record_from_dict(body)
    except LedgerError:
        return None


def open_db(data_dir: Path) -> sqlite3.Connection:
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        data_dir / DB_FILENAME, isolation_level=None, check_same_thread=False, timeout=10
    )
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # an ack promises the record is on disk
    conn.executescript(_SCHEMA)
    return conn


def chain_reports(conn: sqlite3.Connection) -> list[ChainReport]:
    """The ledger chain check and outbox sequence gaps of every kiosk in the database."""
    out: list[ChainReport] = []
    kiosks = [r[0] for r in conn.execute("SELECT DISTINCT kiosk_id FROM events ORDER BY 1")]
    for kid in kiosks:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events WHERE kiosk_id = ?", (kid,))]
        records: list[SaleRecord] = []
        for (body,) in conn.execute(
            "SELECT body FROM events WHERE kiosk_id = ? AND kind = 'sale'", (kid,)
        ):
            rec = _sale_record(json.loads(body))
            if rec is not None:
                records.append(rec)
        records.sort(key=lambda r: r.seq)
        problems = verify_chain(records) if records else []
        rc = conn.execute(
            "SELECT received, duplicates FROM receipts WHERE kiosk_id = ?", (kid,)
        ).fetchone()
        out.append(
            ChainReport(
                kid, len(records), problems, _gaps(seqs), *(rc if rc is not None else (0, 0))
            )
        )
    return out


def sales_report(conn: sqlite3.Connection) -> SalesReport:
    """Delivered items by product, origin county and kiosk, from the stored sale records."""
    products: dict[str, list[Any]] = {}
    counties: dict[str, list[int]] = {}
    kiosks: dict[str, list[int]] = {}
    rep = SalesReport()
    for kid, body in conn.execute("SELECT kiosk_id, body FROM events WHERE kind = 'sale'"):
        rec = _sale_record(json.loads(body))
        if rec is None:
            continue
        k = kiosks.setdefault(kid, [0, 0, 0])
        k[0] += 1
        rep.refund_due_fen += rec.refund_due_fen
        for ln in rec.lines:
            if ln.status != "delivered":
                continue
            p = products.setdefault(ln.product_id, [ln.name_zh, 0, 0])
            p[1] += 1
            p[2] += ln.price_fen
            c = counties.setdefault(ln.origin_county_zh, [0, 0])
            c[0] += 1
            c[1] += ln.price_fen
            k[1] += 1
            k[2] += ln.price_fen
            rep.total_fen += ln.price_fen
    rep.by_product = sorted(
        ((pid, v[0], v[1], v[2]) for pid, v in products.items()), key=lambda t: (-t[3], t[0])
    )
    rep.by_county = sorted(
        ((c, v[0], v[1]) for c, v in counties.items()), key=lambda t: (-t[2], t[0])
    )
    rep.by_kiosk = sorted((kid, v[0], v[1], v[2]) for kid, v in kiosks.items())
    return rep


# --- the simulator ----------------------------------------------------------------------------


class ProvinceSimulator:
    """The province backend, simulated. `start()` connects (paho reconnects by itself, the
    province is not 30,000 clients); `stop()` disconnects and closes the database."""

    def __init__(
        self,
        broker: BrokerSettings,
        data_dir: Path,
        device_secrets: Mapping[str, bytes],
        signing_key: bytes,
        *,
        clock: Clock | None = None,
        shared_subscription: bool = True,
        ack_batch_max: int = 500,
        auto_ack: bool = True,
        provisioning_ca: ProvisioningCA | None = None,
        device_key: DeviceKeyLookup | None = None,
        reconcile_after_s: float | None = None,
        reconcile_every_s: float = 60.0,
        root_key: bytes | None = None,
    ) -> None:
        """`provisioning_ca`: answer `kiosk/v1/register/+/request` with it (registration and
        renewal); the payment secrets of kiosks it registered (and its revocations) count in
        `device_secrets` (a SecretBook). `device_key`: kiosk id -> public key of its
        certificate, to check the signed ledger heads of sale records
        (kiosk/sim/province_heads.py). `reconcile_after_s`: run the reconciliation sweep
        (kiosk/sim/province_reconcile.py) every `reconcile_every_s` with that grace time for
        offline-code sales; None: no sweep (`report --reconcile` still reconciles).
        `root_key`: the root private key; `key_sets` (kiosk.sim.province_keys) signs with it."""
        self.broker = broker
        self.data_dir = Path(data_dir)
        self.device_secrets = SecretBook(device_secrets, provisioning_ca)
        self.provisioning_ca = provisioning_ca
        self.signing_key = signing_key
        self.public_key = _public_of(signing_key)
        self.kid = key_id(self.public_key)
        self.clock: Clock = clock or SystemClock()
        self.acks = AckSigner(signing_key, self.kid, self.clock.time)  # province_acks
        self.key_sets = None if root_key is None else KeySets(self, root_key, self.data_dir)
        self.shared_subscription = shared_subscription
        self.ack_batch_max = ack_batch_max
        self.auto_ack = auto_ack  # tests switch acks off to keep records in a kiosk's outbox
        self.images: dict[str, bytes] = {}
        self.heads = HeadCheck(device_key)
        self.db = open_db(self.data_dir)
        self._db_lock = threading.Lock()
        self.reconciler: Reconciler | None = None
        if reconcile_after_s is not None:
            self.reconciler = Reconciler(
                self.db,
                self._db_lock,
                self.device_secrets.revoked,
                self.clock,
                grace_s=reconcile_after_s,
                every_s=reconcile_every_s,
            )
        self._host, self._port, self._tls = broker.address()
        self._inbox: queue.Queue[tuple[str, bytes, float] | None] = queue.Queue()
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self.bad_messages = 0
        self.bad_reasons: dict[str, int] = {}
        self.order_requests = 0
        self.status_seen: dict[str, dict[str, Any]] = {}
        self.subscribed_shared = False

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        v5 = self.broker.mqtt_version == "5"
        if v5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.broker.client_id, protocol=mqtt.MQTTv5
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.broker.client_id,
                clean_session=False,
                protocol=mqtt.MQTTv311,
            )
        if self._tls:
            client.tls_set_context(self.broker.tls_context())
        client.reconnect_delay_set(1, 2)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._worker = threading.Thread(target=self._work, name="province-store", daemon=True)
        self._worker.start()
        props = None
        if v5:
            # paho ships type hints but leaves Properties.__init__ unannotated (no-untyped-call)
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.broker.session_expiry_s
            props.ReceiveMaximum = 1000
            client.connect_async(
                self._host, self._port, self.broker.keepalive_s, clean_start=False, properties=props
            )
        else:
            client.connect_async(self._host, self._port, self.broker.keepalive_s)
        client.loop_start()
        if self.reconciler is not None:
            self.reconciler.start()
        log_event(log, "province.start", broker=self.broker.url, kid=self.kid)

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        if self._worker is not None:
            self._inbox.put(None)
            self._worker.join(10)
            self._worker = None
        if self.reconciler is not None:
            self.reconciler.stop()
        with self._db_lock:
            self.db.close()

    def __enter__(self) -> ProvinceSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    # --- MQTT callbacks -----------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log_event(log, "province.connect_refused", logging.ERROR, reason=str(reason_code))
            return
        shared_ok = self.shared_subscription
        if properties is not None and getattr(properties, "SharedSubscriptionAvailable", 1) == 0:
            shared_ok = False
        subs: list[tuple[str, int]] = []
        for topic, qos in province_subscriptions():
            # Retained status is never delivered through a shared subscription: plain for it.
            if shared_ok and topic != ALL_STATUS:
                subs.append((f"$share/{SHARE_GROUP}/{topic}", qos))
            else:
                subs.append((topic, qos))
        if self.provisioning_ca is not None:
            subs.append((REGISTER_REQUESTS, 1))
        client.subscribe(subs)
        self.subscribed_shared = shared_ok
        self._connected.set()
        log_event(log, "province.connected", shared=shared_ok)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected.clear()
        log_event(log, "province.disconnected", reason=str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put((msg.topic, bytes(msg.payload), self.clock.time()))

    # --- the worker: store, then ack ----------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.ack_batch_max:
                try:
                    nxt = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._inbox.put(None)
                    break
                batch.append(nxt)
            try:
                self._handle_batch(batch)
            except Exception:
                log.exception("province: batch failed (records stay unacked; kiosks resend)")

    def _bad(self, reason: str, topic: str, detail: str = "") -> None:
        with self._lock:
            self.bad_messages += 1
            self.bad_reasons[reason] = self.bad_reasons.get(reason, 0) + 1
        log_event(
            log, "province.bad_message", logging.WARNING, reason=reason, topic=topic, detail=detail
        )

    def _handle_batch(self, batch: list[tuple[str, bytes, float]]) -> None:
        events: list[tuple[str, dict[str, Any], float]] = []
        for topic, payload, received_at in batch:
            if topic.startswith(REGISTER_TOPIC_PREFIX) and self._answer_register(topic, payload):
                continue
            parsed = parse_topic(topic)
            if parsed is None or parsed.kiosk_id is None:
                self._bad("unknown_topic", topic)
                continue
            kind = parsed.message_kind
            try:
                body = decode(kind or "", payload)
            except MessageError as e:
                self._bad(e.reason.value, topic, e.detail)
                continue
            if body.get("kiosk_id") != parsed.kiosk_id:
                # the broker vouches for the topic; a payload naming another kiosk is forged
                self._bad("kiosk_id_mismatch", topic, str(body.get("kiosk_id")))
                with self._db_lock:
                    self.db.execute(
                        "INSERT INTO receipts (kiosk_id, rejected) VALUES (?, 1) ON CONFLICT "
                        "(kiosk_id) DO UPDATE SET rejected = rejected + 1",
                        (parsed.kiosk_id,),
                    )
                continue
            if kind in ("event", "telemetry", "reported"):
                events.append((parsed.kiosk_id, body, received_at))
            elif kind == "status":
                self._store_status(parsed.kiosk_id, body)
            elif kind == "order_status_request":
                self._answer_order_status(parsed.kiosk_id, body)
            elif kind == "image_request":
                self._answer_image(parsed.kiosk_id, body)
            else:
                self._bad("unexpected_kind", topic, str(kind))
        if events:
            stored = self._store_events(events)
            if self.auto_ack:
                self._send_acks(stored)

    def _answer_register(self, topic: str, payload: bytes) -> bool:
        """A register request: answered by the provisioning CA (True); anything else: False."""
        if self.provisioning_ca is None:
            return False
        answer = self.provisioning_ca.handle_request(topic, payload)
        if answer is None:
            return False
        self._publish(answer[0], answer[1])  # device_secrets reads the CA's new secret
        return True

    def _store_events(
        self, events: list[tuple[str, dict[str, Any], float]]
    ) -> dict[str, list[tuple[str, int]]]:
        """Insert (dedupe by (kiosk, event id)) in one transaction; return the (event id, seq)
        of every record now on disk, per kiosk (duplicates included: their earlier ack may have
        been lost). A record naming another kiosk's order is refused (province_acks)."""
        acks: dict[str, list[tuple[str, int]]] = {}
        with self._db_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for kid, b, received_at in events:
                    if refuse_foreign(self.db, kid, b, received_at):
                        continue  # not stored, not acked; a province alarm
                    if b["kind"] == "sale":
                        bad = self.heads.problem(kid, b["body"])
                        if bad is not None:  # refused: not stored, not acked
                            self._province_alarm(kid, "bad_head_signature", bad, b, received_at)
                            continue
                        self._check_ledger_conflict(kid, b, received_at)
                    cur = self.db.execute(
                        "INSERT INTO events (event_id, kiosk_id, seq, kind, priority, boot, "
                        "kiosk_time, clock_offset, body, received_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?) "
                        "ON CONFLICT (kiosk_id, event_id) DO NOTHING",
                        (
                            b["event_id"],
                            kid,
                            b["seq"],
                            b["kind"],
                            b["priority"],
                            b["boot"],
                            b["kiosk_time"],
                            b.get("clock_offset"),
                            json.dumps(b["body"], ensure_ascii=False, sort_keys=True),
                            received_at,
                        ),
                    )
                    new = cur.rowcount == 1
                    self.db.execute(
                        "INSERT INTO receipts (kiosk_id, received, duplicates) VALUES (?, ?, ?) "
                        "ON CONFLICT (kiosk_id) DO UPDATE SET received = received + ?, "
                        "duplicates = duplicates + ?",
                        (kid, int(new), int(not new), int(new), int(not new)),
                    )
                    acks.setdefault(kid, []).append((b["event_id"], b["seq"]))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return acks

    def _check_ledger_conflict(self, kid: str, b: Mapping[str, Any], received_at: float) -> None:
        """A second sale record for a (kiosk, ledger sequence) the province already holds, with
        a different hash, is an alarm at once (a store that lost its tail and redid an order,
        or a rebuilt ledger): both records are kept, the new one in the alarm."""
        body = b["body"]
        seq, new_hash = body.get("seq"), body.get("record_hash")
        rows = self.db.execute(
            "SELECT event_id, json_extract(body, '$.record_hash') FROM events "
            "WHERE kiosk_id = ? AND kind = 'sale' AND json_extract(body, '$.seq') = ?",
            (kid, seq),
        ).fetchall()
        clash = [(e, h) for e, h in rows if h != new_hash]
        if not clash:
            return
        detail = (
            f"ledger seq {seq}: record {new_hash} ({b['event_id']}, order "
            f"{body.get('order_id')}) differs from the held {clash[0][1]} ({clash[0][0]})"
        )
        self._province_alarm(kid, "ledger_conflict", detail, b, received_at)

    def _province_alarm(
        self, kid: str, kind: str, detail: str, b: Mapping[str, Any], at: float
    ) -> None:
        """In the caller's transaction: a province-side alarm about kiosk `kid`."""
        self.db.execute(
            "INSERT INTO province_alarms (kiosk_id, kind, detail, body, at) VALUES (?,?,?,?,?)",
            (kid, kind, detail, json.dumps(dict(b), sort_keys=True), at),
        )
        log_event(log, f"province.{kind}", logging.ERROR, kiosk=kid, detail=detail)

    def province_alarms(self, kiosk_id: str | None = None) -> list[dict[str, Any]]:
        with self._db_lock:
            rows = self.db.execute(
                "SELECT kiosk_id, kind, detail, body, at FROM province_alarms "
                + ("WHERE kiosk_id = ? " if kiosk_id else "")
                + "ORDER BY id",
                (kiosk_id,) if kiosk_id else (),
            ).fetchall()
        return [
            {"kiosk_id": k, "kind": t, "detail": d, "body": json.loads(b) if b else None, "at": a}
            for k, t, d, b, a in rows
        ]

    def _send_acks(self, acks: Mapping[str, list[tuple[str, int]]]) -> None:
        """Signed acks, one signature per batch (kiosk.sim.province_acks)."""
        client = self._client
        if client is None:
            return
        for kid, records in acks.items():
            for topic, payload in self.acks.payloads(kid, records):
                client.publish(topic, payload, qos=1)

    def ack(self, kiosk_id: str, event_ids: list[str]) -> None:
        """Send acks by hand (tests that run with `auto_ack=False`): for those of `event_ids`
        the province holds for `kiosk_id` (with the seq they arrived with), nothing else."""
        with self._db_lock:
            rows = self.db.execute(
                "SELECT event_id, seq FROM events WHERE kiosk_id = ? AND event_id IN "
                "(SELECT value FROM json_each(?))",
                (kiosk_id, json.dumps(list(event_ids))),
            ).fetchall()
        if rows:
            self._send_acks({kiosk_id: [(str(e), int(s)) for e, s in rows]})

    def ack_records(self, kiosk_id: str, records: list[tuple[str, int]]) -> None:
        """Sign and send an ack for exactly these (event id, seq) pairs, stored or not (tests)."""
        self._send_acks({kiosk_id: records})

    def _store_status(self, kid: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.status_seen[kid] = body
        with self._db_lock:
            self.db.execute(
                "INSERT INTO kiosks (kiosk_id, state, boot, software, last_seq, status_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (kiosk_id) DO UPDATE SET state = excluded.state,"
                " boot = excluded.boot, software = excluded.software, "
                "last_seq = excluded.last_seq, status_at = excluded.status_at",
                (
                    kid,
                    body["state"],
                    body["boot"],
                    body.get("software"),
                    body.get("last_seq"),
                    self.clock.time(),
                ),
            )

    # --- payments -----------------------------------------------------------------------------

    def confirm_payment(self, params: PayUrlParams, method: str) -> PaymentConfirmation:
        """What WeChat Pay / Alipay success means here: sign a confirmation for exactly the
        signed amount, remember it (one per order: paying twice gives the same provider
        reference), and publish it to the kiosk. Never for a revoked kiosk."""
        if self.device_secrets.revoked_at(params.kiosk_id) is not None:
            raise PermissionError(f"kiosk {params.kiosk_id} is revoked: no payments")
        with self._db_lock:
            row = self.db.execute(
                "SELECT confirmation FROM payments WHERE order_id = ?", (params.order_id,)
            ).fetchone()
        if row is not None:
            existing = confirmation_from_dict(json.loads(row[0]))
            assert isinstance(existing, PaymentConfirmation)
            self._publish_confirmation(existing)
            return existing
        now = self.clock.time()
        prefix = {"wechat": "wx", "alipay": "ali", "unionpay": "up"}.get(method, "pay")
        c = sign_confirmation(
            self.signing_key,
            PaymentConfirmation(
                kiosk_id=params.kiosk_id,
                order_id=params.order_id,
                amount_fen=params.amount_fen,
                method=method,
                provider_ref=f"{prefix}{time.strftime('%Y%m%d', time.gmtime(now))}"
                f"{secrets.token_hex(8)}",
                paid_at=int(now),
                event_id=uuid.uuid4().hex,
            ),
        )
        with self._db_lock:
            self.db.execute(
                "INSERT INTO payments (order_id, kiosk_id, amount_fen, method, provider_ref, "
                "confirmation, created_at) VALUES (?,?,?,?,?,?,?)",
                (
                    c.order_id,
                    c.kiosk_id,
                    c.amount_fen,
                    c.method,
                    c.provider_ref,
                    json.dumps(confirmation_to_dict(c)),
                    now,
                ),
            )
        log_event(log, "province.paid", order=c.order_id, fen=c.amount_fen, method=method)
        self._publish_confirmation(c)
        return c

    def _publish_confirmation(self, c: PaymentConfirmation) -> None:
        payload = encode({"confirmation": confirmation_to_dict(c), "sent_at": self.clock.time()})
        self._publish(Topics(c.kiosk_id).payment_confirm, payload)

    def offline_code(self, params: PayUrlParams) -> str | None:
        secret = self.device_secrets.get(params.kiosk_id)
        return None if secret is None else offline_code(secret, params.order_id, params.amount_fen)

    def payment_for(self, order_id: str) -> PaymentConfirmation | None:
        with self._db_lock:
            row = self.db.execute(
                "SELECT confirmation FROM payments WHERE order_id = ?", (order_id,)
            ).fetchone()
        if row is None:
            return None
        c = confirmation_from_dict(json.loads(row[0]))
        return c if isinstance(c, PaymentConfirmation) else None

    def _answer_order_status(self, kid: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.order_requests += 1
        c = self.payment_for(body["order_id"])
        if c is not None and c.kiosk_id != kid:
            c = None  # never tell a kiosk about another kiosk's order
        if self.device_secrets.revoked_at(kid) is not None:
            c = None  # a revoked kiosk's orders are never confirmed
        status = PaymentStatus.PAID if c is not None else PaymentStatus.NOT_PAID
        reply = {
            "order_id": body["order_id"],
            "request_id": body["request_id"],
            # docs/mqtt-api.yaml spells the status in capitals (PAID, NOT_PAID, CLOSED)
            "status": status.value.upper(),
            "confirmation": confirmation_to_dict(c) if c is not None else None,
            "sent_at": self.clock.time(),
        }
        self._publish(Topics(kid).order_status_reply, encode(reply))

    # --- images -------------------------------------------------------------------------------

    def add_image(self, data: bytes, *, retain_province_wide: bool = False) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.images[sha] = data
        if retain_province_wide:
            self._publish(province_image(sha), data, retain=True)
        return sha

    def _answer_image(self, kid: str, body: dict[str, Any]) -> None:
        data = self.images.get(str(body.get("sha256")))
        if data is None:
            self._bad("unknown_image", f"{kid}/images/request", str(body.get("sha256")))
            return
        self._publish(Topics(kid).image_reply(str(body["sha256"])), data)

    # --- signed downlink ----------------------------------------------------------------------

    def _next_version(self, scope: str, version: int | None) -> int:
        with self._db_lock:
            row = self.db.execute("SELECT version FROM versions WHERE scope = ?", (scope,))
            found = row.fetchone()
            v = version if version is not None else (found[0] if found else 0) + 1
            self.db.execute(
                "INSERT INTO versions (scope, version) VALUES (?, ?) ON CONFLICT (scope) "
                "DO UPDATE SET version = max(version, excluded.version)",
                (scope, v),
            )
        return int(v)

    def use_signing_key(self, private: bytes) -> None:
        """Sign everything from now on with `private` (a key rotation: KeySets.rotate)."""
        self.signing_key, self.public_key = private, _public_of(private)
        self.kid = key_id(self.public_key)
        # acks too (one assignment: the worker never sees a new key with the old kid)
        self.acks = AckSigner(private, self.kid, self.clock.time, batch=self.acks.batch)

    def sign(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return sign_envelope(self.signing_key, self.kid, body)

    def publish_catalog(self, content: Mapping[str, Any], version: int | None = None) -> int:
        """Retained, signed, versioned province-wide catalog; returns the version."""
        v = self._next_version("catalog", version)
        body = {**content, "name": "catalog", "version": v, "issued_at": self.clock.time()}
        self._publish(PROVINCE_CATALOG, encode(self.sign(body)), retain=True)
        return v

    def publish_desired(
        self, kiosk_id: str, name: str, content: Mapping[str, Any], version: int | None = None
    ) -> int:
        """Retained, signed, versioned planogram / prices / config for one kiosk."""
        v = self._next_version(f"{kiosk_id}/{name}", version)
        body = {
            **content,
            "name": name,
            "version": v,
            "kiosk_id": kiosk_id,
            "issued_at": self.clock.time(),
        }
        self._publish(Topics(kiosk_id).desired(name), encode(self.sign(body)), retain=True)
        return v

    def send_command(
        self,
        kiosk_id: str,
        command: str,
        args: Mapping[str, Any] | None = None,
        *,
        ttl_s: float = 300.0,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """A signed command with a fresh nonce and an expiry; returns the envelope sent."""
        now = self.clock.time()
        body = {
            "kiosk_id": kiosk_id,
            "command": command,
            "args": dict(args or {}),
            "nonce": nonce or secrets.token_hex(16),
            "issued_at": now,
            "expires_at": now + ttl_s,
        }
        env = self.sign(body)
        self._publish(Topics(kiosk_id).commands, encode(env))
        return env

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Anything, unchecked: tests use it to send forged and replayed messages."""
        self._publish(topic, payload, retain=retain)

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        client = self._client
        if client is None:
            raise RuntimeError("province simulator is not started")
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log_event(log, "province.publish_failed", logging.WARNING, topic=topic, rc=str(info.rc))

    # --- queries ------------------------------------------------------------------------------

    def event_count(self, kiosk_id: str | None = None, kind: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM events WHERE 1=1", []
        if kiosk_id is not None:
            sql += " AND kiosk_id = ?"
            args.append(kiosk_id)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        with self._db_lock:
            return int(self.db.execute(sql, args).fetchone()[0])

    def events(self, kiosk_id: str) -> list[dict[str, Any]]:
        """Stored records of one kiosk in arrival order (first arrival of each event id)."""
        with self._db_lock:
            rows = self.db.execute(
                "SELECT event_id, seq, kind, body, received_at FROM events WHERE kiosk_id = ? "
                "ORDER BY id",
                (kiosk_id,),
            ).fetchall()
        return [
            {"event_id": e, "seq": s, "kind": k, "body": json.loads(b), "received_at": t}
            for e, s, k, b, t in rows
        ]

    def receipts(self, kiosk_id: str) -> tuple[int, int, int]:
        """(new records, duplicates, rejected) counted for one kiosk."""
        with self._db_lock:
            row = self.db.execute(
                "SELECT received, duplicates, rejected FROM receipts WHERE kiosk_id = ?",
                (kiosk_id,),
            ).fetchone()
        return (0, 0, 0) if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def chain_reports(self) -> list[ChainReport]:
        with self._db_lock:
            return chain_reports(self.db)

    def sales_report(self) -> SalesReport:
        with self._db_lock:
            return sales_report(self.db)

    def stock(self, kiosk_id: str) -> dict[int, SlotStock]:
        """Current stock per slot from events/stock (+ reported): kiosk.sim.province_views."""
        with self._db_lock:
            return stock_levels(self.db, kiosk_id)

    def orders(self, kiosk_id: str) -> dict[str, OrderHistory]:
        """Order histories from events/order: kiosk.sim.province_views."""
        with self._db_lock:
            return order_histories(self.db, kiosk_id)


# --- the provisioning CA ----------------------------------------------------------------------


class ProvinceCA:
    """The CA that signs broker and kiosk client certificates (CN = kiosk id, which the broker
    uses as the MQTT user name for its ACL). Key and certificate live in `directory`."""

    KEY = "ca.key"
    CERT = "ca.crt"

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, directory: Path):
        self.key = key
        self.cert = cert
        self.dir = directory

    @property
    def cert_file(self) -> Path:
        return self.dir / self.CERT

    @classmethod
    def load_or_create(cls, directory: Path, name: str = "Province kiosk CA (sim)") -> ProvinceCA:
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / cls.KEY, directory / cls.CERT
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()), directory)
        now = dt.datetime.now(dt.UTC)
        key, cert = self_signed_ca(name, now, days=3650)
        key_path.write_bytes(private_key_pem(key))
        key_path.chmod(0o600)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, directory)

    def _issue(self, cn: str, public_key: Any, *, days: int) -> bytes:
        """A client certificate (a kiosk's) for `public_key`, CN `cn`."""
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def sign_csr(self, csr_pem: bytes, kiosk_id: str, days: int = 825) -> bytes:
        """A kiosk client certificate from its CSR; the CSR must be self-signed correctly and
        its CN must be exactly `kiosk_id` (the id the province registered)."""
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("CSR signature is not valid")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1 or cns[0].value != kiosk_id:
            raise ValueError(f"CSR common name must be {kiosk_id!r}")
        Topics(kiosk_id)  # a valid kiosk id (one topic level, not "province")
        return self._issue(kiosk_id, csr.public_key(), days=days)
