"""Issue 14, requirements 1, 3 and 11: signed acks, signed clock inputs, per-kiosk order ids.

Every attack runs against the real Mosquitto with the project's broker config
(`kiosk.sim.broker.mosquitto_conf`), the province simulator and the kiosk's own sync stack
(`make_kiosk`) or the whole kiosk (`kiosk run`, `kiosk_world`), and shows that it fails:

(a) forged acks: unsigned, wrongly signed, unknown key, signed for another kiosk;
(b) a replayed old signed ack does not ack new records (not even one reusing an event id);
(c) forged clock stamps: unsigned `sent_at`s a month old do not move the kiosk's province-time
    estimate, and a month-old signed `open_door` command is still refused;
(d) kiosk A publishes a sale record with B's order id on A's own topic: refused, a province
    alarm, B's real records stored and acked.

The attacker: a hostile broker operator, or an ACL mistake. The broker of this module is the
project's config plus one TEST-ONLY ACL entry on the backend listener that lets a dedicated
identity (`broker-operator`, a backend certificate) write every kiosk's downlink and read its
acks: exactly what the issue says whoever runs the broker can do. It has no signing key.

Nothing asserts on timing. "Nothing happened" is shown after a barrier that comes after it: a
later message from the same publisher on the same connection (Mosquitto delivers one
publisher's QoS 1 messages to a subscriber in order, and the kiosk handles them in order).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.sim.broker import Mosquitto, MosquittoMissing, Pki
from kiosk.sim.province import ProvinceSimulator
from kiosk.sim.province_acks import FOREIGN_ORDER_ALARM
from kiosk.sync.acks import ack_body, sign_ack
from kiosk.sync.outbox import OutboxItem, Priority
from kiosk.sync.signing import generate_keypair, key_id
from kiosk.sync.topics import Topics, encode
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import KIOSK_A, KIOSK_B, MakeKiosk, sale_body

TIMEOUT = 30.0  # generous: a loaded 2-core machine
MONTH_S = 30 * 24 * 3600.0
OPERATOR = "broker-operator"
OPERATOR_ACL = f"""
# TEST ONLY (tests/integration/test_ack_security.py): an ACL mistake / a hostile operator
user {OPERATOR}
topic write kiosk/v1/+/acks
topic write kiosk/v1/+/commands
topic write kiosk/v1/+/payment/confirm
topic read kiosk/v1/+/acks
"""


def wait_for(cond: Any, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


@pytest.fixture
def mosquitto(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    """The project's broker config, plus the operator's ACL entry (see the module doc)."""
    try:
        broker = Mosquitto(tmp_path / "broker", pki, max_inflight=20)
    except MosquittoMissing as e:
        pytest.fail(str(e), pytrace=False)
    with broker.backend_acl_file.open("a", encoding="utf-8") as f:
        f.write(OPERATOR_ACL)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Operator:
    """The attacker: a paho client on the backend listener as `broker-operator`."""

    def __init__(self, pki: Pki, broker: Mosquitto) -> None:
        assert broker.backend_port is not None
        cert = pki.backend_client(OPERATOR)
        self.lock = threading.Lock()
        self.pubacks: dict[int, int] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="op", protocol=mqtt.MQTTv5)
        self.c.tls_set(str(pki.ca_file), str(cert.cert_file), str(cert.key_file))
        self.c.on_connect = lambda *a: self.connected.set()
        self.c.on_publish = self._on_publish
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", broker.backend_port)
        self.c.loop_start()
        assert self.connected.wait(TIMEOUT)

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        with self.lock:
            self.pubacks[mid] = int(getattr(rc, "value", 0))

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload)))

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1; asserts the broker accepted it (PUBACK success): the ACL hole is real."""
        info = self.c.publish(topic, payload, qos=1)
        assert wait_for(lambda: info.mid in self.pubacks), f"no PUBACK for {topic}"
        assert self.pubacks[info.mid] == 0, f"broker refused {topic}: {self.pubacks[info.mid]}"

    def subscribe(self, topic: str) -> None:
        granted = threading.Event()
        self.c.on_subscribe = lambda *a: granted.set()
        self.c.subscribe(topic, qos=1)
        assert granted.wait(TIMEOUT)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def operator(pki: Pki, mosquitto: Mosquitto) -> Iterator[Operator]:
    op = Operator(pki, mosquitto)
    yield op
    op.close()


def bad_total(node: Any) -> int:
    return sum(node.client.bad_message_reasons().values())


# --- (a) forged acks --------------------------------------------------------------------------


def test_forged_acks_leave_the_records_in_the_outbox(
    province: ProvinceSimulator, make_kiosk: MakeKiosk, operator: Operator
) -> None:
    province.auto_ack = False  # the province stores the records but does not ack them yet
    a = make_kiosk(KIOSK_A)
    assert a.client.wait_connected(TIMEOUT)
    ids = a.sell(3)
    assert wait_for(lambda: province.receipts(KIOSK_A)[0] == 3)
    records = [(r.event_id, r.seq) for r in a.outbox.records()]
    assert len(records) == 3

    now = time.time()
    rogue, rogue_pub = generate_keypair()
    forged: list[tuple[dict[str, Any], str]] = [
        # the unsigned ack of before: not even an envelope
        ({"event_ids": ids, "sent_at": now}, "MISSING_FIELD"),
        # the right body, no signature
        (
            {"kid": province.kid, "body": ack_body(KIOSK_A, records, now), "sig": ""},
            "BAD_SIGNATURE",
        ),
        # signed by another key under the province's key id
        (sign_ack(rogue, province.kid, KIOSK_A, records, now), "BAD_SIGNATURE"),
        # signed by a key the kiosk does not know
        (sign_ack(rogue, key_id(rogue_pub), KIOSK_A, records, now), "UNKNOWN_KEY"),
        # a genuine province signature, but an ack for kiosk B
        (sign_ack(province.signing_key, province.kid, KIOSK_B, records, now), "WRONG_KIOSK"),
    ]
    for env, _reason in forged:
        operator.publish(a.topics.acks, encode(env))
    # every forged ack reached the kiosk and was refused, counted by its reason
    assert wait_for(lambda: bad_total(a) >= len(forged)), a.client.bad_message_reasons()
    want: dict[str, int] = {}
    for _env, reason in forged:
        want[reason] = want.get(reason, 0) + 1
    assert a.client.bad_message_reasons() == want
    assert a.pending() == 3, "a forged ack emptied the outbox"
    assert a.client.stats().acked == 0

    # the province's signed ack does
    province.ack(KIOSK_A, ids)
    assert a.wait_drained(TIMEOUT)
    assert a.client.stats().acked == 3


# --- (b) a replayed signed ack ----------------------------------------------------------------


def test_a_replayed_signed_ack_does_not_ack_new_records(
    province: ProvinceSimulator, make_kiosk: MakeKiosk, operator: Operator
) -> None:
    province.auto_ack = False
    a = make_kiosk(KIOSK_A)
    assert a.client.wait_connected(TIMEOUT)
    operator.subscribe(a.topics.acks)  # the operator records the province's signed acks
    # a record with a fixed event id (like the degraded kiosk's `alarm-<id>-store-<digest>`)
    fixed = "alarm-fixed-id"
    a.outbox.append("alarm", {"kind": "x", "detail": "first"}, Priority.HIGH, event_id=fixed)
    a.client.wake()
    assert wait_for(lambda: province.receipts(KIOSK_A)[0] == 1)
    province.ack(KIOSK_A, [fixed])
    assert a.wait_drained(TIMEOUT)
    assert wait_for(lambda: len(operator.on(a.topics.acks)) == 1)
    captured = operator.on(a.topics.acks)[0]

    # new records: the same event id again (a new seq), and a sale
    a.outbox.append("alarm", {"kind": "x", "detail": "again"}, Priority.HIGH, event_id=fixed)
    ids = a.sell(1)
    assert wait_for(lambda: province.receipts(KIOSK_A)[0] + province.receipts(KIOSK_A)[1] >= 3)
    assert a.pending() == 2

    # the attack: the captured, genuinely signed ack, replayed; then a barrier from the same
    # publisher (an unsigned ack the kiosk counts) that the kiosk handles after the replay
    before = bad_total(a)
    operator.publish(a.topics.acks, captured)
    operator.publish(a.topics.acks, encode({"event_ids": [fixed, *ids], "sent_at": 1}))
    assert wait_for(lambda: bad_total(a) > before)
    assert a.pending() == 2, "the replayed ack removed a record the province has not acked"
    assert {r.event_id for r in a.outbox.records()} == {fixed, *ids}

    # the province's own acks (for what it received, with the seq it arrived with) do
    province.auto_ack = True
    a.client.wake()
    assert a.wait_drained(TIMEOUT)


# --- (c) forged clock stamps, against the whole kiosk -------------------------------------------


def _events(province: ProvinceSimulator, kind: str) -> list[dict[str, Any]]:
    return [e for e in province.events(KIOSK_A) if e["kind"] == kind]


def _clock_offset(province: ProvinceSimulator, event_id: str) -> float | None:
    with province._db_lock:
        row = province.db.execute(
            "SELECT clock_offset FROM events WHERE kiosk_id = ? AND event_id = ?",
            (KIOSK_A, event_id),
        ).fetchone()
    assert row is not None
    return None if row[0] is None else float(row[0])


def _upload_logs(province: ProvinceSimulator, n: int) -> list[dict[str, Any]]:
    got = [e for e in _events(province, "technician") if e["body"].get("action") == "upload_logs"]
    return got if len(got) >= n else []


def test_forged_clock_stamps_do_not_move_the_estimate_and_old_commands_stay_refused(
    province: ProvinceSimulator, kiosk_world: KioskWorld, operator: Operator
) -> None:
    # No acks during the attack: a signed ack between the stamps would feed the estimate a
    # right value and hide a kiosk that still believed unsigned stamps.
    province.auto_ack = False
    k = kiosk_world.run()
    try:
        k.wait_line(lambda s: s.startswith("idle:"), 60)
        k.wait_line(lambda s: "sync.connected" in s, 30, err=True)
        # one signed command: the kiosk learns the province's time (and the key's high-water)
        province.send_command(KIOSK_A, "upload_logs", {"lines": 5})
        assert wait_for(lambda: _upload_logs(province, 1))
        first = _upload_logs(province, 1)[0]
        assert abs(_clock_offset(province, first["event_id"]) or 0.0) < 60

        # the attack: three unsigned stamps a month old (on a payment confirmation, which
        # decodes and goes on to the sales core, and as an ack of the old unsigned form)...
        month_ago = time.time() - MONTH_S
        topics = Topics(KIOSK_A)
        for i in range(3):
            confirm = {"confirmation": {"order_id": f"x{i}"}, "sent_at": month_ago}
            operator.publish(topics.payment_confirm, encode(confirm))
            operator.publish(topics.acks, encode({"event_ids": ["x"], "sent_at": month_ago}))
        # ...then an open_door the province really signed a month ago, replayed (a kiosk that
        # believed the stamps would judge its expiry a month back and accept it)
        old_body = {
            "kiosk_id": KIOSK_A,
            "command": "open_door",
            "args": {"slot": 11},
            "nonce": "month-old-open-door",
            "issued_at": month_ago,
            "expires_at": month_ago + 300,
        }
        operator.publish(topics.commands, encode(province.sign(old_body)))
        # barrier: a fresh, genuinely signed command through the same publisher
        fresh = {**old_body, "command": "upload_logs", "args": {"lines": 5}}
        fresh.update(nonce="fresh-upload-logs", issued_at=time.time())
        fresh["expires_at"] = fresh["issued_at"] + 300
        operator.publish(topics.commands, encode(province.sign(fresh)))
        assert wait_for(lambda: _upload_logs(province, 2)), k.dump()
        province.auto_ack = True  # (the kiosk's records are acked when they are sent again)
    finally:
        k.stop()

    second = _upload_logs(province, 2)[1]
    # the estimate did not move: the record made after the stamps carries an offset near 0
    # (kiosk and province share this machine's clock), not -30 days
    assert abs(_clock_offset(province, second["event_id"]) or 0.0) < 60
    # the door did not open, and the refusal went up as an alarm
    assert not [
        e for e in _events(province, "technician") if e["body"].get("action") == "test_vend"
    ]
    rejected = [
        a["body"]["context"]
        for a in _events(province, "alarm")
        if a["body"].get("context", {}).get("what") == "commands"
    ]
    assert [r["reason"] for r in rejected] == ["STALE_SIGNED_TIME"], rejected


# --- (d) another kiosk's order id -------------------------------------------------------------


def test_a_record_with_another_kiosks_order_id_is_refused(
    province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    a = make_kiosk(KIOSK_A)
    b = make_kiosk(KIOSK_B)
    assert a.client.wait_connected(TIMEOUT) and b.client.wait_connected(TIMEOUT)
    # A publishes, on its own topic, B's next sale (B's order id and B's event id)
    stolen = sale_body(KIOSK_B, 1, "0" * 64, 1)
    a.outbox.append_many([OutboxItem("sale", stolen, Priority.CRITICAL, f"sale-{KIOSK_B}-1")])
    a.client.wake()
    assert wait_for(lambda: province.receipts(KIOSK_A)[2] >= 1)
    alarms = province.province_alarms(KIOSK_A)
    assert [x["kind"] for x in alarms] == [FOREIGN_ORDER_ALARM]
    assert stolen["order_id"] in alarms[0]["detail"]
    assert all(e["body"].get("order_id") != stolen["order_id"] for e in province.events(KIOSK_A))
    # B's real records arrive after: stored under B, acked, B's outbox empties
    ids_b = b.sell(2)
    assert b.wait_drained(TIMEOUT), "B's records were not acknowledged"
    held_b = {e["event_id"]: e["body"] for e in province.events(KIOSK_B)}
    assert set(ids_b) <= set(held_b)
    assert held_b[f"sale-{KIOSK_B}-1"]["order_id"] == stolen["order_id"]  # B's own sale
    # A's forged record was never acked: it stays in A's outbox (sent again, refused again,
    # one alarm for it however often it comes)
    a.sell(1)  # barrier: a later record of A's is stored and acked
    assert wait_for(lambda: a.pending() == 1)
    assert [r.event_id for r in a.outbox.records()] == [f"sale-{KIOSK_B}-1"]
    a.outbox.reset_sent()  # sent again now
    a.client.wake()
    assert wait_for(lambda: province.receipts(KIOSK_A)[2] >= 2)
    assert len(province.province_alarms(KIOSK_A)) == 1
    assert province.province_alarms(KIOSK_B) == []
