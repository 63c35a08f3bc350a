"""Issue 13 req. 4 end to end: what a province needs for reports arrives as events, within
seconds, over the real broker (Mosquitto with TLS and the ACL) to the province simulator.

The kiosk is the whole app (`build_app(sync=True)`) in this process on the in-process board
emulator, paid by the test payment signer; its config (a file, as on a kiosk) points at the
broker with KIOSK_A's client certificate. A second emulator on a pty is the board a technician
tests with `kiosk board selftest --config <that file>` from a shell while the kiosk runs.

- a sale: events/order paid then completed, events/stock sale per delivered item (ref = the
  order id), and the province's stock view equals the kiosk's levels;
- a technician restock from the service menu: events/stock restock;
- a cancelled order: events/order cancelled with the reason "shopper";
- a jammed slot: events/alarm SLOT_FAULT in the one shape, events/order refund_due;
- `kiosk board selftest`: events/selftest (source "cli") sent by the running kiosk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk import contract as ui
from kiosk.app import build_app
from kiosk.cli import main as cli_main
from kiosk.core.sale import State
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.emulator_transports import Emulator, InProcessTransport, PtyTransport
from kiosk.sim.province import ProvinceSimulator
from kiosk.sim.shopper import TestPaymentSource
from kiosk.sync.signing import public_key_pem
from tests.support.board_peer import FAST
from tests.support.config import kiosk_config, write_config
from tests.support.kiosk_app import MULTI, OTHER, SINGLE, Kiosk, emulator_name
from tests.support.kiosk_node import KIOSK_A
from tests.support.store import seed_store

SECONDS = 20.0  # generous on a loaded 2-core CI box; the records normally arrive in < 1 s


def wait_for(pred: Callable[[], object], timeout: float = SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


@pytest.fixture
def config_file(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator
) -> tuple[Path, str]:
    """A seeded store and a config file for KIOSK_A on the broker (trusting the province's
    key, which signs its acks); returns (file, emu name)."""
    seed_store(tmp_path / "data")
    cert = pki.client(KIOSK_A)
    pub = tmp_path / "province-public.pem"
    pub.write_bytes(public_key_pem(province.public_key))
    name = emulator_name()
    cfg = kiosk_config(
        port=f"emu://{name}",
        data_dir=tmp_path / "data",
        identity={"kiosk_id": KIOSK_A},
        sync={
            "broker_url": f"mqtts://127.0.0.1:{mosquitto.port}",
            "allow_plaintext": None,
            "ca_file": pki.ca_file,
            "cert_file": cert.cert_file,
            "key_file": cert.key_file,
            "province_public_key": pub,
            "keepalive_s": 10,
        },
    )
    return write_config(tmp_path / "kiosk.toml", cfg), name


@pytest.fixture
def kiosk(config_file: tuple[Path, str], province: ProvinceSimulator) -> Iterator[Kiosk]:
    from kiosk.config import load_config

    path, name = config_file
    board = EmulatedBoard(BoardModel.spiral(6, 10, stock=5), time_scale=0.01)
    emu = Emulator(board, InProcessTransport(name)).start()
    pay = TestPaymentSource()
    cfg = load_config(path)
    app = build_app(
        cfg,
        province_public_key=pay.public_key,
        link_timing=FAST,
        tick_s=0.2,
        sync=True,
        sync_options={"client_options": {"backoff_base_s": 0.05, "backoff_cap_s": 0.5}},
    )
    app.start()
    try:
        assert app.sync is not None and app.sync.client.wait_connected(SECONDS)
        yield Kiosk(app, emu, board, pay, app.store.stock.levels())
    finally:
        app.close()
        emu.stop()


def test_reports_arrive_as_events(
    kiosk: Kiosk, province: ProvinceSimulator, config_file: tuple[Path, str], tmp_path: Path
) -> None:
    # --- a sale: order paid, completed; a stock record per item; the stock view is right -----
    order = kiosk.checkout(MULTI, OTHER)
    kiosk.pay_for(order)
    assert kiosk.closed(order.order_id).state is State.COMPLETED
    assert wait_for(
        lambda: (
            (h := province.orders(KIOSK_A).get(order.order_id)) is not None
            and h.states == ["paid", "completed"]
        )
    ), province.orders(KIOSK_A)
    hist = province.orders(KIOSK_A)[order.order_id]
    assert (hist.total_fen, hist.paid_fen) == (order.total_fen, order.total_fen)
    sold = {ln.slot_no for ln in kiosk.closed(order.order_id).lines}
    assert wait_for(
        lambda: all(province.stock(KIOSK_A)[s].last_ref == order.order_id for s in sold)
    )
    levels = kiosk.app.store.stock.levels()
    # every slot: the seeded fill and the sales from events/stock, empty slots from `reported`
    assert wait_for(lambda: {s: v.level for s, v in province.stock(KIOSK_A).items()} == levels)
    view = province.stock(KIOSK_A)
    assert all(view[s].last_reason == "sale" and view[s].source == "stock" for s in sold)
    assert all(view[s].product_id == kiosk.c.planogram.slots[s].product_id for s in sold)

    # --- a technician restock in the service menu --------------------------------------------
    slot = min(sold)
    capacity = kiosk.c.planogram.slots[slot].capacity
    kiosk.c.post(ui.Restock(slot, None))
    assert wait_for(
        lambda: (
            province.stock(KIOSK_A)[slot].last_reason == "restock"
            and province.stock(KIOSK_A)[slot].level == capacity
        )
    ), province.stock(KIOSK_A)[slot]

    # --- a cancelled order says why --------------------------------------------------------------
    kiosk.c.post(ui.BackToIdle("finished"))
    cancelled = kiosk.checkout(OTHER)
    kiosk.c.post(ui.CancelOrder())
    assert wait_for(lambda: cancelled.order_id in province.orders(KIOSK_A))
    hist = province.orders(KIOSK_A)[cancelled.order_id]
    assert (hist.states, hist.reasons["cancelled"], hist.paid_fen) == (
        ["cancelled"],
        "shopper",
        0,
    )

    # --- a jam: the alarm in the one shape, the order ends refund_due ---------------------------
    kiosk.wait(lambda v: v.mode == "idle")
    jammed = kiosk.checkout(SINGLE)
    jam_slot = jammed.lines[0].slot_no
    kiosk.emu.set_fault("jammed", {kiosk.c.planogram.slots[jam_slot].address})
    kiosk.pay_for(jammed)
    assert kiosk.closed(jammed.order_id).state is State.REFUND_DUE
    assert wait_for(
        lambda: (
            province.orders(KIOSK_A).get(jammed.order_id) is not None
            and province.orders(KIOSK_A)[jammed.order_id].state == "refund_due"
        )
    )
    assert province.orders(KIOSK_A)[jammed.order_id].reasons["refund_due"] == "not_delivered"
    assert wait_for(lambda: _alarms(province))
    (alarm,) = _alarms(province)  # and no SYNC_REJECTED: the province's acks are trusted
    assert alarm["event_id"].startswith(f"alarm-{KIOSK_A}-")
    body = alarm["body"]
    assert set(body) == {"code", "severity", "detail", "context"}
    assert (body["code"], body["severity"]) == ("SLOT_FAULT", "warning")
    assert body["context"] == {"order_id": jammed.order_id, "slot_no": jam_slot}

    # --- `kiosk board selftest` from a shell while the kiosk runs: the kiosk sends it ---------
    pty = tmp_path / "bench-board"
    bench = Emulator(
        EmulatedBoard(BoardModel.spiral(1, 4, stock=5), time_scale=0.01), PtyTransport(pty)
    ).start()
    try:
        argv = ["board", "selftest", "--config", str(config_file[0]), "--port", str(pty)]
        assert cli_main([*argv, "--slots", "10-11"]) == 0  # planogram numbers, checked
    finally:
        bench.stop()
    assert wait_for(lambda: province.event_count(KIOSK_A, "selftest") == 1)
    (test,) = [e for e in province.events(KIOSK_A) if e["kind"] == "selftest"]
    assert test["event_id"].startswith(f"selftest-{KIOSK_A}-")
    assert (test["body"]["source"], test["body"]["ok"]) == ("cli", True)
    assert [s["result"] for s in test["body"]["slots"]] == ["ok", "ok"]
    # every record was acknowledged end to end (signed acks the kiosk trusts)
    assert wait_for(lambda: sum(kiosk.app.outbox.depth().values()) == 0)


def _alarms(province: ProvinceSimulator) -> list[dict[str, object]]:
    return [e for e in province.events(KIOSK_A) if e["kind"] == "alarm"]
