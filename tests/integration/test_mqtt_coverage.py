"""Every kiosk-to-province message kind of docs/mqtt-api.yaml, produced by one real kiosk and
seen valid on the broker (issue 13, requirement 6).

One kiosk (kiosk.app.build_app with the province link, the in-process board emulator, the
demo store) talks to the province simulator through a TCP proxy to the recorded test broker
(tests/support/mqtt_record.py). The scenario: connect (status birth, reported, telemetry);
a catalog naming a picture the kiosk lacks (images/request); a sale paid at the province
(sale; stock, order); a jammed slot (refund_due, alarm; order); a lock/unlock command
(technician); a technician's test vend of one slot (selftest); an order left unpaid past the
status-query delay (orders/status/request); the link cut under the kiosk (the broker publishes
the will: status offline). Then every kind must have been seen and every message valid (the
recorder also checks at teardown).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk import contract as ui
from kiosk.app import App, build_app
from kiosk.core.payment import parse_pay_url
from kiosk.core.sale import State
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.broker import Mosquitto, Pki, TcpProxy
from kiosk.sim.demo_data import demo_catalog
from kiosk.sim.emulator_transports import Emulator, InProcessTransport
from kiosk.sim.mqtt_tap import TappedMessage
from kiosk.sim.province import ProvinceSimulator
from kiosk.sim.shopper import Shopper
from kiosk.sync.signing import public_key_pem
from kiosk.sync.topics import Topics
from tests.support.board_peer import FAST
from tests.support.config import write_kiosk_config
from tests.support.kiosk_app import OTHER, SINGLE, emulator_name
from tests.support.kiosk_node import DEMO_SECRET, KIOSK_A
from tests.support.mqtt_contract import contract
from tests.support.mqtt_record import Recording, recording
from tests.support.store import seed_store

T = Topics(KIOSK_A)
WAIT = 30.0  # generous: a loaded 2-core machine

# Every documented kiosk-to-province message kind: a name -> is this message of that kind.
KINDS = {
    **{f"events/{k}": (lambda m, k=k: m.topic == T.events(k)) for k in (
        "sale", "refund_due", "order", "stock", "alarm", "technician", "selftest",
    )},
    "telemetry": lambda m: m.topic == T.telemetry,
    "reported": lambda m: m.topic == T.reported,
    "status birth": lambda m: m.topic == T.status and _state(m) == "online",
    "status will": lambda m: m.topic == T.status and _state(m) == "offline",
    "orders/status/request": lambda m: m.topic == T.order_status_request,
    "images/request": lambda m: m.topic == T.image_request,
}  # fmt: skip


def _state(m: TappedMessage) -> object:
    try:
        return json.loads(m.payload).get("state")
    except ValueError:
        return None


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


@dataclasses.dataclass
class Kiosk:
    app: App
    board: EmulatedBoard
    rec: Recording

    @property
    def shopper(self) -> Shopper:
        return Shopper(self.app.controller, None, clock=self.app.clock)

    def wait_view(self, pred: object, what: str) -> ui.ViewState:
        return self.shopper.expect(pred, what, WAIT)  # type: ignore[arg-type]

    def seen(self, kind: str, timeout: float = WAIT) -> bool:
        return self.rec.wait_for(lambda ms: any(KINDS[kind](m) for m in ms), timeout)


@pytest.fixture
def kiosk(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, proxy: TcpProxy, province: ProvinceSimulator
) -> Iterator[Kiosk]:
    data = tmp_path / "data"
    seed_store(data)
    name = emulator_name()
    board = EmulatedBoard(BoardModel.spiral(6, 10, stock=5), time_scale=0.01)
    emu = Emulator(board, InProcessTransport(name)).start()
    cert = pki.client(KIOSK_A)
    pub = tmp_path / "province.pem"
    pub.write_bytes(public_key_pem(province.public_key))
    cfg = write_kiosk_config(
        tmp_path / "kiosk.toml",
        f"emu://{name}",
        data,
        identity={"kiosk_id": KIOSK_A, "site_name": "coverage"},
        sync={
            "broker_url": f"mqtts://127.0.0.1:{proxy.port}",
            "allow_plaintext": None,
            "ca_file": pki.ca_file,
            "cert_file": cert.cert_file,
            "key_file": cert.key_file,
            "province_public_key": pub,
            "keepalive_s": 10,
        },
        payments={"status_query_after_s": 5},
    )
    app = build_app(
        cfg,
        sync=True,
        link_timing=FAST,
        tick_s=0.2,
        sync_options={
            "telemetry_every_s": 0.5,
            "client_options": {"backoff_base_s": 0.05, "backoff_cap_s": 0.5, "poll_s": 0.05},
        },
    )
    app.start()
    try:
        yield Kiosk(app, board, recording(mosquitto))
    finally:
        app.close()
        emu.stop()


def _buy(k: Kiosk, province: ProvinceSimulator, product: str) -> str:
    """Check out one `product`, pay it at the province; returns the order id."""
    s = k.shopper
    k.wait_view(lambda v: v.mode == "idle", "idle")
    s.fill_cart([product])
    k.wait_view(lambda v: len(v.cart) == 1, "the product in the cart")
    s.checkout()
    v = k.wait_view(lambda v: v.mode == "payment" and v.payment is not None, "payment")
    assert v.payment is not None
    params = parse_pay_url(v.payment.pay_url, {KIOSK_A: DEMO_SECRET})
    assert params is not None, v.payment.pay_url
    province.confirm_payment(params, "wechat")
    return v.payment.order_id


def _closed(k: Kiosk, order_id: str) -> State:
    def done(_v: ui.ViewState) -> bool:
        o = k.app.controller.repo.get(order_id)
        return o is not None and o.state in (
            State.COMPLETED,
            State.PARTLY_DELIVERED,
            State.REFUND_DUE,
            State.CANCELLED,
        )

    k.wait_view(done, f"order {order_id} closed")
    o = k.app.controller.repo.get(order_id)
    assert o is not None
    return o.state


def test_one_kiosk_sends_every_documented_kind(
    kiosk: Kiosk, province: ProvinceSimulator, proxy: TcpProxy
) -> None:
    k = kiosk
    assert k.app.sync is not None and k.app.sync.client.wait_connected(WAIT)
    assert k.seen("status birth") and k.seen("reported") and k.seen("telemetry")

    # a catalog naming a picture the kiosk does not have: it asks for it
    sha = province.add_image(_png())
    products = [
        {**{f: getattr(v, "value", v) for f, v in dataclasses.asdict(p).items()}, "image_ref": ""}
        for p in demo_catalog()
    ]
    products[0]["image_ref"] = sha
    province.publish_catalog({"products": products}, version=demo_catalog().version + 1)
    assert k.seen("images/request")

    # a sale paid at the province; then a jammed slot: refund due and an alarm
    assert _closed(k, _buy(k, province, SINGLE)) is State.COMPLETED
    k.shopper.back_to_idle()
    assert k.seen("events/sale")
    slots = [s.address for s in k.app.store.planogram.load() if s.product_id == SINGLE]
    k.board.set_fault("jammed", ",".join(str(n) for n in slots))
    assert _closed(k, _buy(k, province, SINGLE)) is State.REFUND_DUE
    k.shopper.back_to_idle()
    k.board.set_fault("jammed", "")
    assert k.seen("events/refund_due") and k.seen("events/alarm")

    # the province locks and unlocks sales: technician records
    province.send_command(KIOSK_A, "lock_sales")
    k.wait_view(lambda v: v.mode == "out_of_service", "sales locked")
    province.send_command(KIOSK_A, "unlock_sales")
    k.wait_view(lambda v: v.mode == "idle", "sales unlocked")
    assert k.seen("events/technician")

    # a technician's test vend of one slot (service menu): a self-test record
    slot = next(s.slot_no for s in k.app.store.planogram.load() if s.product_id == OTHER)
    k.app.controller.post(ui.TestVend(slot))
    assert k.seen("events/selftest")

    # an order nobody pays: after status_query_after_s the kiosk asks the province
    k.shopper.fill_cart([OTHER])  # (SINGLE's slot is out of service since the jam)
    k.wait_view(lambda v: len(v.cart) == 1, "the product in the cart")
    k.shopper.checkout()
    k.wait_view(lambda v: v.mode == "payment", "payment")
    assert k.seen("orders/status/request")
    k.shopper.back_to_idle("shopper")

    # the link dies under the kiosk: the broker publishes its will
    proxy.cut()
    assert k.seen("status will")
    assert k.app.sync.client.wait_connected(WAIT)

    # every kind seen (the ones produced last get a moment), every message valid
    k.rec.wait_for(lambda ms: all(any(f(m) for m in ms) for f in KINDS.values()), 10)
    messages = k.rec.seen(f"kiosk/v1/{KIOSK_A}/#")
    missing = [kind for kind, f in KINDS.items() if not any(f(m) for m in messages)]
    invalid = [str(v) for m in messages for v in contract().check(m.topic, m.payload)]
    assert missing == [], f"kinds never sent: {missing}"
    assert invalid == [], "\n".join(invalid)
