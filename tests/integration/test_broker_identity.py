"""Issue 14, requirement 2: the broker binds identity and the shipped ACL gives a kiosk exactly
its own uplink (write) and its own downlink plus the province broadcast (read).

Every test performs the attack against the real Mosquitto started with the project's config
(`kiosk.sim.broker.mosquitto_conf`), the province simulator and real paho clients / the
kiosk's SyncClient, and shows that it fails. Nothing asserts on timing: "nothing happened" is
shown after a barrier that must come after it (a later message on the same connection, or a
PUBACK that the broker sends only after it has routed the publish).

Mosquitto 2.0 with MQTT v5: a publish the ACL denies is answered with PUBACK reason code 0x87
(not authorized) at QoS 1 and silently dropped at QoS 0; the connection stays up.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.core.ledger import GENESIS_HASH
from kiosk.sim.broker import MAX_PACKET_BYTES, ClientCert, Mosquitto, Pki
from kiosk.sim.mqtt_tap import AUDIT_USER
from kiosk.sim.province import ProvinceSimulator
from kiosk.sync.topics import Topics, encode
from tests.support.fixtures import running_broker
from tests.support.kiosk_node import KIOSK_A, KIOSK_B, MakeKiosk, sale_body

NOT_AUTHORIZED = 0x87
TIMEOUT = 20.0  # generous: a loaded 2-core machine


def wait_for(cond: Any, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


class Raw:
    """A plain paho MQTT v5 client over TLS that records everything the broker answers."""

    def __init__(
        self,
        pki: Pki,
        cert: ClientCert,
        port: int,
        client_id: str,
        *,
        clean_start: bool = True,
        session_expiry_s: int = 0,
    ) -> None:
        self.lock = threading.Lock()
        self.connacks: list[tuple[int, dict[str, Any]]] = []
        self.disconnects = 0
        self.pubacks: dict[int, int] = {}  # mid -> reason code
        self.messages: list[tuple[str, bytes, bool]] = []  # (topic, payload, retain)
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.tls_set(
            ca_certs=str(pki.ca_file), certfile=str(cert.cert_file), keyfile=str(cert.key_file)
        )
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.c.on_message = self._on_message
        self.port = port
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        info = props.json() if props is not None else {}
        with self.lock:
            self.connacks.append((int(getattr(rc, "value", rc)), info))

    def _on_disconnect(self, *a: Any) -> None:
        with self.lock:
            self.disconnects += 1

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        with self.lock:
            self.pubacks[mid] = int(getattr(rc, "value", 0))

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))

    def connect(self) -> Raw:
        """Connect (without paho's automatic reconnects) and wait for the CONNACK."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        n = len(self.connacks)
        self.c.connect(
            "127.0.0.1", self.port, keepalive=30, clean_start=self.clean_start, properties=props
        )
        self.c.loop_start()
        assert wait_for(lambda: len(self.connacks) > n), "no CONNACK"
        return self

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """QoS 1: the PUBACK reason code. QoS 0: 0 once it has been written to the socket."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        assert wait_for(lambda: info.mid in self.pubacks), f"no PUBACK for {topic}"
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> None:
        granted = threading.Event()
        self.c.on_subscribe = lambda *a: granted.set()
        self.c.subscribe(topic, qos=1)
        assert granted.wait(TIMEOUT)

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, r) for t, p, r in self.messages if t == topic]


def backend(pki: Pki, mosquitto: Mosquitto, name: str) -> Raw:
    """A province-side observer on the backend listener (province certificate)."""
    assert mosquitto.backend_port is not None
    return Raw(pki, pki.backend_client(), mosquitto.backend_port, name).connect()


def record(kiosk_id: str, event_id: str) -> bytes:
    """A well-formed outbox record (wire form) of one sale."""
    return encode(
        {
            "kiosk_id": kiosk_id,
            "seq": 1,
            "event_id": event_id,
            "kind": "sale",
            "priority": "critical",
            "kiosk_time": time.time(),
            "clock_offset": None,
            "boot": 1,
            "body": sale_body(kiosk_id, 1, GENESIS_HASH, 1),
        }
    )


# --- (a) client-id takeover -------------------------------------------------------------------


def test_kiosk_a_with_b_client_id_cannot_kick_b(
    pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    b = make_kiosk(KIOSK_B)
    assert b.client.wait_connected(TIMEOUT)
    status_b = Topics(KIOSK_B).status
    watcher = backend(pki, mosquitto, "status-watcher")
    watcher.subscribe(status_b)
    assert wait_for(lambda: province.status_seen.get(KIOSK_B, {}).get("state") == "online")
    before = b.client.stats()

    # The attack: A's certificate, B's client id, a clean start (which would discard B's
    # session), five times over. Each connection is accepted, as A: the broker replaced the
    # client id by the certificate's CN.
    attacker = Raw(pki, pki.client(KIOSK_A), mosquitto.port, KIOSK_B, clean_start=True)
    for _ in range(5):
        attacker.connect()
        assert attacker.connacks[-1][0] == 0
        attacker.close()
        time.sleep(0.2)
    assert wait_for(lambda: attacker.disconnects == 5)

    # Barrier: a command sent to B after the last attack reaches B over its connection. Had
    # any attack kicked B, B could only get it after a reconnect (counted below).
    env = province.send_command(KIOSK_B, "resync")
    assert wait_for(lambda: any(m.get("nonce") == env["body"]["nonce"] for m in _bodies(b)))
    after = b.client.stats()
    assert after.reconnects == before.reconnects == 0
    assert after.connect_failures == before.connect_failures
    assert b.client.connected
    # B never went offline: its will was never published, the province saw it online all along
    states = [_state(p) for p, _retain in watcher.on(status_b)]
    assert "offline" not in states, states
    assert province.status_seen[KIOSK_B]["state"] == "online"
    # B's session (its subscriptions) is intact: an ack for B's records still reaches it
    b.sell(2)
    assert b.wait_drained(TIMEOUT), "B's outbox was not acknowledged"
    assert b.client.stats().reconnects == 0
    watcher.close()


def _bodies(node: Any) -> list[dict[str, Any]]:
    with node._msg_lock:
        return [b.get("body", {}) for _t, b in node.messages]


def _state(payload: bytes) -> str:
    import json

    return str(json.loads(payload).get("state"))


# --- (b) self-ack -----------------------------------------------------------------------------


def test_kiosk_cannot_ack_its_own_records(
    pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    province.auto_ack = False  # the province stores the records but does not ack them yet
    a = make_kiosk(KIOSK_A)
    assert a.client.wait_connected(TIMEOUT)
    ids = a.sell(3)
    assert wait_for(lambda: province.receipts(KIOSK_A)[0] == 3)
    assert a.pending() == 3

    # The attack, by the kiosk's own SyncClient: an ack of its own records on its own
    # downlink, exactly as the province would send it.
    fake = {"event_ids": ids, "sent_at": time.time()}
    assert a.client.publish_direct(a.topics.acks, fake)
    # the broker has answered it (PUBACK 0x87; a direct publish is not an outbox record)...
    assert wait_for(lambda: a.client.stats().inflight == 0)
    # ...so a command the province sends now reaches A after the fake ack would have
    env = province.send_command(KIOSK_A, "resync")
    assert wait_for(lambda: any(m.get("nonce") == env["body"]["nonce"] for m in _bodies(a)))
    assert a.pending() == 3, "the fake ack emptied the outbox"
    assert a.client.stats().acked == 0
    assert a.received("/acks") == []

    # the province's real ack still works
    province.ack(KIOSK_A, ids)
    assert a.wait_drained(TIMEOUT)

    # The same with a raw client holding A's certificate (the kiosk's own client stopped, or
    # the two would take the client id "A" from each other): refused at QoS 1, dropped at
    # QoS 0, and not delivered even to the publisher's own subscription.
    a.client.stop()
    raw = Raw(pki, pki.client(KIOSK_A), mosquitto.port, "whatever").connect()
    raw.subscribe(a.topics.acks)
    assert raw.publish(a.topics.acks, encode(fake), qos=0) == 0
    assert raw.publish(a.topics.acks, encode(fake), qos=1) == NOT_AUTHORIZED
    province.ack_records(KIOSK_A, [("barrier", 1)])  # after both; reaches the subscription
    assert wait_for(lambda: len(raw.on(a.topics.acks)) == 1)
    assert b"barrier" in raw.on(a.topics.acks)[0][0]
    raw.close()


# --- (c) retained overwrite of the province's signed desired state ----------------------------


def test_kiosk_cannot_overwrite_retained_desired_state(
    pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    topic = Topics(KIOSK_A).desired("prices")
    province.publish_desired(KIOSK_A, "prices", {"prices": {"P001": 1200}}, version=3)
    first = backend(pki, mosquitto, "retained-1")
    first.subscribe(topic)
    assert wait_for(lambda: len(first.on(topic)) == 1)
    signed, retained = first.on(topic)[0]
    assert retained
    first.close()

    # The attack: A's certificate, A's own downlink, retained: garbage, a forged "newer"
    # version, and an empty payload (which would delete the retained message), at QoS 0 and 1.
    raw = Raw(pki, pki.client(KIOSK_A), mosquitto.port, KIOSK_A).connect()
    for payload in (b"garbage", encode({"kid": "x", "body": {"version": 99}, "sig": "x"}), b""):
        assert raw.publish(topic, payload, qos=0, retain=True) == 0
        assert raw.publish(topic, payload, qos=1, retain=True) == NOT_AUTHORIZED
    # the other downlink topics are just as closed (write), the connection stays up
    t = Topics(KIOSK_A)
    for other in (t.desired("config"), t.desired("planogram"), t.commands, t.payment_confirm):
        assert raw.publish(other, b"{}", qos=1, retain=True) == NOT_AUTHORIZED
    assert raw.disconnects == 0
    raw.close()

    # a fresh subscriber gets the province's signed message, byte for byte
    second = backend(pki, mosquitto, "retained-2")
    second.subscribe(topic)
    assert wait_for(lambda: len(second.on(topic)) == 1)
    assert second.on(topic) == [(signed, True)]
    second.close()
    # and so does the kiosk itself
    a = make_kiosk(KIOSK_A)
    assert wait_for(lambda: len(a.received("/desired/prices")) >= 1)
    assert all(m.get("body", {}).get("version") == 3 for m in a.received("/desired/prices"))


# --- (d) publishing on another kiosk's uplink -------------------------------------------------


def test_kiosk_cannot_publish_on_another_kiosks_uplink(
    pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator
) -> None:
    tb = Topics(KIOSK_B)
    watcher = backend(pki, mosquitto, "b-watcher")
    watcher.subscribe(f"kiosk/v1/{KIOSK_B}/#")
    raw = Raw(pki, pki.client(KIOSK_A), mosquitto.port, KIOSK_A).connect()
    forged = record(KIOSK_B, "sale-forged-b-1")
    for topic in tb.uplink():
        assert raw.publish(topic, forged, qos=0) == 0
        assert raw.publish(topic, forged, qos=1) == NOT_AUTHORIZED, topic
    offline = encode({"state": "offline", "boot": 1, "kiosk_id": KIOSK_B})
    assert raw.publish(tb.status, offline, qos=1, retain=True) == NOT_AUTHORIZED
    # Barrier: A's own record, after the forged ones on the same connection, reaches the
    # province; the forged ones would have been routed before it.
    assert raw.publish(Topics(KIOSK_A).events("sale"), record(KIOSK_A, "sale-own-a-1")) == 0
    assert wait_for(lambda: province.receipts(KIOSK_A)[0] == 1)
    assert province.event_count(KIOSK_B) == 0
    assert province.receipts(KIOSK_B) == (0, 0, 0)
    assert KIOSK_B not in province.status_seen
    assert watcher.messages == []
    raw.close()
    watcher.close()


# --- the honest kiosk still works ---------------------------------------------------------------


def test_honest_kiosk_publishes_uplink_and_receives_downlink(
    pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    a = make_kiosk(KIOSK_A)
    b = make_kiosk(KIOSK_B)
    assert a.client.wait_connected(TIMEOUT) and b.client.wait_connected(TIMEOUT)
    # uplink: records (and the birth status, and direct requests) are accepted
    a.sell(3)
    b.sell(2)
    assert a.wait_drained(TIMEOUT) and b.wait_drained(TIMEOUT)
    assert province.event_count(KIOSK_A) == 3 and province.event_count(KIOSK_B) == 2
    assert wait_for(lambda: province.status_seen.get(KIOSK_A, {}).get("state") == "online")
    assert a.client.publish_direct(
        a.topics.image_request, {"kiosk_id": KIOSK_A, "sha256": "0" * 64}
    )
    assert wait_for(lambda: a.client.stats().inflight == 0)
    # downlink: per-kiosk and province-wide, each kiosk gets its own only
    province.publish_desired(KIOSK_A, "prices", {"prices": {"P001": 900}}, version=1)
    province.publish_catalog({"products": []}, version=1)
    env = province.send_command(KIOSK_A, "resync")
    assert wait_for(lambda: any(m.get("nonce") == env["body"]["nonce"] for m in _bodies(a)))
    assert wait_for(lambda: len(a.received("/desired/prices")) == 1)
    assert wait_for(lambda: len(a.received("/province/catalog")) >= 1)
    assert wait_for(lambda: len(b.received("/province/catalog")) >= 1)
    assert b.received("/desired/prices") == [] and b.received("/commands") == []
    for node in (a, b):
        s = node.client.stats()
        assert s.puback_failures == 0, s
        assert s.reconnects == 0, s


# --- listeners, CRL, packet size --------------------------------------------------------------


def refused(pki: Pki, cert: ClientCert, port: int) -> bool:
    """True when the broker refuses this certificate: the TLS handshake fails, or the
    connection is closed before a successful CONNACK."""
    raw = Raw(pki, cert, port, cert.name)
    try:
        raw.c.connect("127.0.0.1", port)
    except OSError:
        return True
    raw.c.loop_start()
    try:
        assert wait_for(lambda: raw.disconnects > 0 or raw.connacks), "no answer at all"
        return raw.disconnects > 0 and not any(rc == 0 for rc, _ in raw.connacks)
    finally:
        raw.c.loop_stop()


def test_certificates_only_work_on_their_own_listener(pki: Pki, mosquitto: Mosquitto) -> None:
    assert mosquitto.backend_port is not None
    # a kiosk certificate on the province's listener, a province certificate on the kiosks'
    assert refused(pki, pki.client(KIOSK_A), mosquitto.backend_port)
    assert refused(pki, pki.backend_client(), mosquitto.port)
    # each on its own listener is accepted
    assert not refused(pki, pki.client(KIOSK_A), mosquitto.port)
    assert not refused(pki, pki.backend_client(), mosquitto.backend_port)


def test_revoked_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    own = Pki(tmp_path / "own-pki")  # revoking in the session-wide PKI would leak into others
    with running_broker(tmp_path / "crl-broker", own) as broker:
        assert not refused(own, own.client(KIOSK_A), broker.port)
        own.revoke(own.client(KIOSK_A))
        broker.stop()  # Mosquitto 2.0 reads the CRL when it starts
        broker.start()
        assert refused(own, own.client(KIOSK_A), broker.port)
        assert not refused(own, own.client(KIOSK_B), broker.port)  # the others still get in


def test_oversized_packet_disconnects_the_kiosk(pki: Pki, mosquitto: Mosquitto) -> None:
    raw = Raw(pki, pki.client(KIOSK_A), mosquitto.port, KIOSK_A).connect()
    raw.c.publish(Topics(KIOSK_A).telemetry, b"x" * MAX_PACKET_BYTES, qos=1)
    assert wait_for(lambda: raw.disconnects >= 1)
    raw.c.loop_stop()


# --- the monitoring (audit) identity: reads everything, writes nothing --------------------------


def test_audit_identity_reads_everything_and_cannot_publish_anything(
    pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    """The read-only monitoring account of docs/broker.md (the tests' recorder uses it): every
    publish it tries, on every kind of topic, is refused (PUBACK 0x87) and reaches nobody."""
    assert mosquitto.backend_port is not None
    audit = Raw(pki, pki.backend_client(AUDIT_USER), mosquitto.backend_port, "audit-probe")
    audit.connect()
    audit.subscribe("#")
    watcher = backend(pki, mosquitto, "audit-watcher")
    watcher.subscribe("#")
    ta = Topics(KIOSK_A)
    targets = [
        *ta.uplink(),
        *(ta.desired(n) for n in ("planogram", "prices", "config")),
        ta.payment_confirm,
        ta.order_status_reply,
        ta.commands,
        ta.acks,
        "kiosk/v1/province/catalog",
        "kiosk/v1/province/keys",
        f"kiosk/v1/province/images/{'0' * 64}",
        ta.register_request,
        ta.register_reply,
        "audit/anything",
        "$SYS/broker/uptime",
    ]
    for topic in targets:
        assert audit.publish(topic, b"{}", qos=1) == NOT_AUTHORIZED, topic
        assert audit.publish(topic, b"{}", qos=1, retain=True) == NOT_AUTHORIZED, topic
    # it does read: a kiosk's birth and the province's acks of its records reach it
    node = make_kiosk(KIOSK_A)
    node.sell(1)
    assert wait_for(lambda: audit.on(ta.acks) != [] and audit.on(ta.status) != [])
    # barrier: the watcher heard the same kiosk traffic, and none of the audit's payloads
    assert wait_for(lambda: any(t == ta.acks for t, _, _ in watcher.messages))
    assert all(p != b"{}" for _, p, _ in watcher.messages), watcher.messages
    audit.close()
    watcher.close()
