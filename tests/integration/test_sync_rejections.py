"""A flood of bad downlink messages against the whole kiosk (issue 13 req. 5), over a real broker.

Pieces: the `kiosk_world` fixture (Mosquitto with TLS and the ACL, the province simulator, the
board emulator behind a pty, a seeded store) with `sync.rejection_alarm_every_s = 2`, and
`kiosk run --script buy3 --pay-via-province` as a child. The attacker publishes with the
province's identity, the only one the broker lets write a kiosk's downlink
(test_broker_identity.py): a leaked province credential.

While the scripted order waits for its payment, 4,900 bad messages of six kinds arrive (not
JSON on desired/prices, too big on commands, an ack missing its field, prices signed by a key
that is not the province's, "the order was paid" signed by that key too, and status replies
with a status that does not exist); then the province confirms the payment. The kiosk keeps
running and sells (exit 0, the sale record at the province); its SYNC_REJECTED alarms are few
(at most one per (what, reason) per window, plus the flush at the clean stop), each carries a
count, and the counts add up to exactly what was sent. A re-delivered retained state
(STALE_VERSION) stays routine: not counted.
"""

from __future__ import annotations

import json
import time
import tomllib
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from kiosk.core.payment import (
    PaymentConfirmation,
    PayUrlParams,
    confirmation_to_dict,
    parse_pay_url,
    sign_confirmation,
)
from kiosk.sim.broker import Mosquitto
from kiosk.sim.province import ProvinceSimulator
from kiosk.sync.signing import generate_keypair, sign_envelope
from kiosk.sync.topics import MAX_PAYLOAD_BYTES, Topics, encode
from tests.support.child import run_kiosk
from tests.support.config import write_config
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import DEMO_SECRET, KIOSK_A
from tests.support.mqtt_record import recording

WINDOW_S = 2
Pair = tuple[str, str]


def wait_for(cond: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def rejection_alarms(province: ProvinceSimulator) -> list[dict[str, Any]]:
    return [
        e
        for e in province.events(KIOSK_A)
        if e["kind"] == "alarm" and e["body"].get("code") == "SYNC_REJECTED"
    ]


def counts(province: ProvinceSimulator) -> dict[Pair, int]:
    out: dict[Pair, int] = defaultdict(int)
    for a in rejection_alarms(province):
        c = a["body"]["context"]
        out[(c["what"], c["reason"])] += c["count"]
    return dict(out)


def links(province: ProvinceSimulator) -> list[dict[str, int]]:
    """The link counters of every `reported` record of KIOSK_A."""
    return [e["body"]["link"] for e in province.events(KIOSK_A) if e["kind"] == "reported"]


class Attacker:
    """Publishes bad messages on KIOSK_A's downlink; remembers how many of each pair it sent."""

    def __init__(self, province: ProvinceSimulator, broker: Mosquitto) -> None:
        self.province = province
        self.recording = recording(broker)  # every message sent here is bad on purpose
        self.topics = Topics(KIOSK_A)
        self.sent: dict[Pair, int] = defaultdict(int)
        self.rogue = generate_keypair()[0]
        self.n = 0
        self.order: PayUrlParams | None = None  # the order the forged payments are for

    def flood(
        self,
        not_json: int,
        too_big: int,
        missing: int,
        forged: int,
        forged_pay: int,
        bad_status: int,
    ) -> None:
        kinds: list[tuple[Pair, int, Callable[[], tuple[str, bytes]]]] = [
            (("desired/prices", "NOT_JSON"), not_json, self._not_json),
            (("commands", "TOO_BIG"), too_big, self._too_big),
            (("acks", "MISSING_FIELD"), missing, self._missing_field),
            (("desired/prices", "BAD_SIGNATURE"), forged, self._forged),
            (("payment/confirm", "BAD_SIGNATURE"), forged_pay, self._forged_payment),
            (("orders/status/reply", "BAD_VALUE"), bad_status, self._bad_status),
        ]
        left = {pair: n for pair, n, _ in kinds}
        while any(left.values()):  # interleaved, as a real flood would be
            for pair, _, make in kinds:
                if left[pair]:
                    topic, payload = make()
                    self.recording.tolerate(topic, "the flood, on purpose", payload)
                    self.province.publish_raw(topic, payload)
                    self.sent[pair] += 1
                    left[pair] -= 1

    def _next(self) -> int:
        self.n += 1
        return self.n

    def _not_json(self) -> tuple[str, bytes]:
        return self.topics.desired("prices"), b'{"v":1, "kid": %d' % self._next()

    def _too_big(self) -> tuple[str, bytes]:
        return self.topics.commands, b"x" * (MAX_PAYLOAD_BYTES + self._next())

    def _missing_field(self) -> tuple[str, bytes]:
        return self.topics.acks, encode({"sent_at": time.time(), "ids": [str(self._next())]})

    def _forged(self) -> tuple[str, bytes]:
        body = {"name": "prices", "version": self._next(), "kiosk_id": KIOSK_A, "prices": {}}
        env = sign_envelope(self.rogue, self.province.kid, body)  # the province's kid, not key
        return self.topics.desired("prices"), encode(env)

    def _bad_status(self) -> tuple[str, bytes]:
        assert self.order is not None
        body = {"order_id": self.order.order_id, "status": f"MAYBE{self._next()}"}
        return self.topics.order_status_reply, encode({**body, "sent_at": time.time()})

    def _forged_payment(self) -> tuple[str, bytes]:
        """'The order was paid', for the order on screen, signed by the wrong key."""
        assert self.order is not None
        c = PaymentConfirmation(
            kiosk_id=KIOSK_A,
            order_id=self.order.order_id,
            amount_fen=self.order.amount_fen,
            method="wechat",
            provider_ref=f"wx-forged-{self._next()}",
            paid_at=int(time.time()),
            event_id=uuid.uuid4().hex,
        )
        body = {"confirmation": confirmation_to_dict(sign_confirmation(self.rogue, c))}
        return self.topics.payment_confirm, encode({**body, "sent_at": time.time()})


def test_a_flood_of_bad_messages_raises_few_alarms_that_count_it_all(
    province: ProvinceSimulator, kiosk_world: KioskWorld
) -> None:
    cfg = tomllib.loads(kiosk_world.config.read_text(encoding="utf-8"))
    cfg["sync"]["rejection_alarm_every_s"] = WINDOW_S
    write_config(kiosk_world.config, cfg)
    attacker = Attacker(province, kiosk_world.broker)

    k = run_kiosk(kiosk_world.config, "--script", "buy3", "--pay-via-province", "--timeout", "90")
    try:
        _, url_line = k.wait_line(lambda s: s.startswith("pay url "), 30)
        params = parse_pay_url(url_line.split(" ", 2)[2], {KIOSK_A: DEMO_SECRET})
        assert params is not None
        attacker.order = params
        # subscribed: the kiosk sends its first `reported` after its SUBSCRIBE
        assert wait_for(lambda: province.event_count(KIOSK_A, "reported") >= 1, 20), k.dump()
        # a retained state re-delivered (STALE_VERSION) is routine: never counted, no alarm
        for _ in range(2):
            province.publish_desired(KIOSK_A, "config", {"note": "flood test"}, version=1)
        k.wait_line(lambda s: "trust.ignored" in s and "STALE_VERSION" in s, 20, err=True)
        started = time.monotonic()

        # 1. a first burst: one alarm per pair at once (count 1), then a summary per pair
        attacker.flood(
            not_json=300, too_big=50, missing=300, forged=300, forged_pay=100, bad_status=20
        )
        pairs = set(attacker.sent)
        assert wait_for(lambda: counts(province) == attacker.sent, 60), (
            counts(province),
            attacker.sent,
            k.dump(),
        )
        first: dict[Pair, tuple[float, int]] = {}
        for a in rejection_alarms(province):
            c = a["body"]["context"]
            pair = (c["what"], c["reason"])
            first[pair] = min(
                first.get(pair, (c["first_at"], c["count"])), (c["first_at"], c["count"])
            )
        assert {pair: n for pair, (_, n) in first.items()} == dict.fromkeys(pairs, 1)
        # the per-reason totals are in the link counters (a signed `resync` makes it report);
        # the stale config is not among them
        province.send_command(KIOSK_A, "resync")
        expected = {
            "mqtt_rejected": 1070,
            "mqtt_rejected_not_json": 300,
            "mqtt_rejected_too_big": 50,
            "mqtt_rejected_missing_field": 300,
            "mqtt_rejected_bad_signature": 400,  # on desired/prices and payment/confirm
            "mqtt_rejected_bad_value": 20,
        }
        assert wait_for(lambda: any(expected.items() <= r.items() for r in links(province)), 20), (
            links(province)
        )

        # 2. a bigger burst, then the province confirms the payment (behind the flood)
        attacker.flood(
            not_json=1200, too_big=150, missing=1200, forged=1000, forged_pay=250, bad_status=30
        )
        province.confirm_payment(params, "wechat")

        # the kiosk kept selling: the order is paid, delivered, and the script exits 0
        assert k.proc.wait(90) == 0, k.dump()
        elapsed = time.monotonic() - started
        k.wait_line(lambda s: s.startswith("outbox: 0 "), 5)
    finally:
        k.stop()

    assert province.event_count(KIOSK_A, "sale") == 1
    sale = next(e["body"] for e in province.events(KIOSK_A) if e["kind"] == "sale")
    assert sale["order_id"] == params.order_id and sale["paid_fen"] == params.amount_fen
    assert "wx-forged" not in json.dumps(sale)  # paid by the genuine confirmation

    # every bad message is counted exactly once, in alarms of the six pairs only
    sent = sum(attacker.sent.values())
    assert sent == 4900
    assert counts(province) == attacker.sent
    alarms = rejection_alarms(province)
    by_pair: dict[Pair, list[dict[str, Any]]] = defaultdict(list)
    for a in alarms:
        body = a["body"]
        assert body["severity"] == "warning" and body["detail"]
        assert set(body["context"]) == {"what", "reason", "count", "first_at", "last_at"}
        assert body["context"]["count"] >= 1
        assert body["context"]["first_at"] <= body["context"]["last_at"]
        assert a["event_id"].startswith(f"alarm-{KIOSK_A}-rej-")
        by_pair[(body["context"]["what"], body["context"]["reason"])].append(body)
    # few: per pair at most the first one, one per window that ended, and one at the stop
    per_pair_bound = 2 + int(elapsed / WINDOW_S)
    assert all(len(v) <= per_pair_bound for v in by_pair.values()), (elapsed, by_pair)
    assert len(alarms) <= len(pairs) * per_pair_bound < sent / 20
