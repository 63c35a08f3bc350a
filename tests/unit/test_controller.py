"""The controller against the board emulator (in process, emu://, real link and board code).

Each test builds a store seeded with the demo catalog / spiral planogram, an emulator at
time_scale 0.01 and the whole app (kiosk.app.build_app) with the test payment source: the
`kiosk` / `locker_kiosk` fixtures (tests/unit/conftest.py, tests/support/kiosk_app.py).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from kiosk import contract as ui
from kiosk.app import App, build_app
from kiosk.controller import ServiceFacts, out_of_service_reasons
from kiosk.core.catalog import Catalog
from kiosk.core.payment import offline_code
from kiosk.core.sale import LineStatus, State
from kiosk.core.stock import StockReason
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.emulator_transports import Emulator, InProcessTransport
from kiosk.sim.shopper import TestPaymentSource
from kiosk.store import open_store
from kiosk.store.orders import TEST_TX_BASE
from kiosk.sync.outbox import Priority
from tests.support.board_peer import FAST
from tests.support.config import write_kiosk_config
from tests.support.kiosk_app import MULTI, OTHER, SINGLE, WAIT, Kiosk, emulator_name, start_app
from tests.support.paths import SECRET_FILE
from tests.support.store import seed_store


def test_out_of_service_reasons_pure() -> None:
    assert out_of_service_reasons(ServiceFacts(board_online=True)) == []
    assert out_of_service_reasons(ServiceFacts(board_online=None)) == ["starting"]
    all_bad = ServiceFacts(
        board_online=False,
        store_writable=True,
        free_mb=10,
        min_free_mb=50,
        sellable_units=0,
        service_door_open=True,
        temperature_c=9.5,
        max_temperature_c=8.0,
        sales_locked=True,
    )
    assert out_of_service_reasons(all_bad) == [
        "sales_locked",
        "disk_low",
        "board_offline",
        "door_open",
        "temperature",
        "sold_out",
    ]
    assert out_of_service_reasons(ServiceFacts(True, store_writable=False)) == ["storage_error"]
    # a write that failed and a disk below the limit are different reasons (and log lines)
    low = ServiceFacts(True, free_mb=10, min_free_mb=50)
    assert out_of_service_reasons(low) == ["disk_low"]
    damaged = ServiceFacts(True, store_damaged=True)
    assert out_of_service_reasons(damaged) == ["store_damaged"]
    warm_not_chilled = ServiceFacts(True, temperature_c=30.0, max_temperature_c=None)
    assert out_of_service_reasons(warm_not_chilled) == []
    assert set(out_of_service_reasons(all_bad)) <= set(ui.OUT_OF_SERVICE_KEYS)


def test_happy_path_three_items(kiosk: Kiosk) -> None:
    order = kiosk.checkout(MULTI, MULTI, OTHER)
    assert order.state is State.AWAITING_PAYMENT and len(order.lines) == 3
    assert sum(kiosk.c.repo.reserved().values()) == 3
    kiosk.pay_for(order)
    done = kiosk.closed(order.order_id)
    assert done.state is State.COMPLETED
    v = kiosk.wait(lambda v: v.mode == "done")
    assert v.done is not None and v.done.paid_fen == order.total_fen
    # physical truth: one motor run per tx, three deliveries
    runs = kiosk.runs()
    assert sorted(r["tx"] for r in runs) == sorted(ln.tx for ln in done.lines)
    assert all(r["result"] == "DELIVERED" for r in runs)
    # stock dropped exactly for the delivered lines; reservations gone
    levels = kiosk.app.store.stock.levels()
    for ln in done.lines:
        kiosk.levels0[ln.slot_no] -= 1
    assert levels == kiosk.levels0
    assert kiosk.c.repo.reserved() == {}
    # one ledger record, chain intact, handed to the outbox at top priority
    (rec,) = kiosk.c.repo.ledger()
    assert rec.order_id == order.order_id and rec.delivered_fen == order.total_fen
    assert kiosk.c.repo.verify_ledger() == []
    sale_recs = [r for r in kiosk.app.outbox.records() if r.kind == "sale"]
    assert [(r.event_id, r.priority) for r in sale_recs] == [
        (f"sale-{order.order_id}", Priority.CRITICAL)
    ]
    assert kiosk.c.repo.refunds() == []
    kiosk.c.post(ui.BackToIdle("finished"))
    kiosk.wait(lambda v: v.mode == "idle")


def test_jam_uses_another_slot_of_the_same_product(kiosk: Kiosk) -> None:
    order = kiosk.checkout(MULTI)
    slot = order.lines[0].slot_no
    kiosk.emu.set_fault("jammed", {kiosk.c.planogram.slots[slot].address})
    kiosk.pay_for(order)
    done = kiosk.closed(order.order_id)
    assert done.state is State.COMPLETED
    ln = done.lines[0]
    assert ln.slot_no != slot and ln.tried_slots[0] == slot and ln.attempts == 2
    assert [r["result"] for r in kiosk.runs()] == ["JAMMED", "DELIVERED"]
    levels = kiosk.app.store.stock.levels()
    assert levels[slot] == kiosk.levels0[slot]  # no drop on the jammed slot
    assert levels[ln.slot_no] == kiosk.levels0[ln.slot_no] - 1
    assert [a.kind for a in kiosk.c.repo.alarms()] == ["slot_fault"]
    assert kiosk.c.repo.refunds() == []
    # the jammed slot is out of service until restocked
    assert slot in kiosk.c.call(lambda: set(kiosk.c.persist.bad_slots))  # type: ignore[arg-type]


def test_jam_without_alternative_refunds_that_line(kiosk: Kiosk) -> None:
    order = kiosk.checkout(SINGLE, OTHER)
    single = next(ln for ln in order.lines if ln.product_id == SINGLE)
    kiosk.emu.set_fault("jammed", {kiosk.c.planogram.slots[single.slot_no].address})
    kiosk.pay_for(order)
    done = kiosk.closed(order.order_id)
    assert done.state is State.PARTLY_DELIVERED
    assert done.refund_due_fen == single.price_fen
    (refund,) = kiosk.c.repo.refunds(order.order_id)
    assert (refund.reason, refund.amount_fen) == ("not_delivered", single.price_fen)
    v = kiosk.wait(lambda v: v.mode == "problem")
    assert v.problem is not None
    assert (v.problem.message_key, v.problem.refund_fen) == ("partly_delivered", single.price_fen)
    assert v.problem.refund_channel == "wechat"
    (rec,) = kiosk.c.repo.ledger()
    assert rec.paid_fen == rec.delivered_fen + rec.refund_due_fen
    kinds = {r.kind for r in kiosk.app.outbox.records()}
    assert {"sale", "refund_due", "alarm"} <= kinds


def test_confirmation_after_cancel_refunds_in_full_without_vending(kiosk: Kiosk) -> None:
    order = kiosk.checkout(MULTI, OTHER)
    kiosk.c.post(ui.CancelOrder())
    kiosk.wait(lambda v: v.mode == "idle")
    assert kiosk.c.repo.get(order.order_id).state is State.CANCELLED  # type: ignore[union-attr]
    assert kiosk.c.repo.reserved() == {}
    kiosk.pay_for(order)
    kiosk.wait(lambda v: v.mode == "problem")
    done = kiosk.closed(order.order_id)
    assert done.state is State.REFUND_DUE and done.refund_due_fen == order.total_fen
    (refund,) = kiosk.c.repo.refunds(order.order_id)
    assert (refund.reason, refund.amount_fen) == ("late_payment", order.total_fen)
    v = kiosk.wait(lambda v: v.mode == "problem")
    assert v.problem is not None and v.problem.message_key == "paid_after_cancel"
    assert kiosk.runs() == []
    assert kiosk.app.store.stock.levels() == kiosk.levels0
    # a repeated notice of the same payment changes nothing
    kiosk.c.submit_confirmation(
        kiosk.pay.confirm(order.kiosk_id, order.order_id, order.total_fen, kiosk.app.clock.time())
    )
    kiosk.c.call(lambda: None)
    assert len(kiosk.c.repo.refunds(order.order_id)) == 2  # a second provider payment
    assert len(kiosk.c.repo.ledger()) == 1


def test_bad_confirmations_are_rejected(kiosk: Kiosk) -> None:
    order = kiosk.checkout(OTHER)
    other_source = TestPaymentSource()
    c = other_source.confirm(order.kiosk_id, order.order_id, order.total_fen, 1_790_000_000)
    kiosk.c.submit_confirmation(c)
    kiosk.c.submit_confirmation({"order_id": order.order_id})  # malformed
    kiosk.c.call(lambda: None)
    assert kiosk.c.repo.get(order.order_id).state is State.AWAITING_PAYMENT  # type: ignore[union-attr]
    assert kiosk.runs() == []


def test_offline_code(kiosk: Kiosk) -> None:
    order = kiosk.checkout(OTHER)
    kiosk.c.post(ui.EnterOfflineCode("00000000"))
    v = kiosk.wait(lambda v: v.payment is not None and v.payment.last_code_rejected)
    assert v.payment is not None and v.payment.offline_code_tries_left == 2
    secret = SECRET_FILE.read_bytes()
    kiosk.c.post(ui.EnterOfflineCode(offline_code(secret, order.order_id, order.total_fen)))
    done = kiosk.closed(order.order_id)
    assert done.state is State.COMPLETED
    assert done.payment is not None and done.payment.method.value == "offline-code"
    assert len(kiosk.runs()) == 1
    # the province's own notice of the same payment later fills in the reference only
    kiosk.pay_for(order)
    kiosk.c.call(lambda: None)
    after = kiosk.c.repo.get(order.order_id)
    assert after is not None and after.payment is not None
    assert after.payment.provider_ref.startswith("test-")
    assert kiosk.c.repo.refunds() == []


def test_out_of_service_appears_and_clears(kiosk: Kiosk) -> None:
    kiosk.wait(lambda v: v.mode == "idle")
    kiosk.emu.unplug()
    v = kiosk.wait(lambda v: v.mode == "out_of_service")
    assert v.out_of_service == ui.OutOfServiceView("board_offline")
    kiosk.c.post(ui.AddToCart(OTHER))  # refused while out of service
    kiosk.emu.replug()
    v = kiosk.wait(lambda v: v.mode == "idle")
    assert v.cart == ()
    kiosk.c.post(ui.LockSales(True))
    v = kiosk.wait(lambda v: v.mode == "out_of_service")
    assert v.out_of_service == ui.OutOfServiceView("sales_locked")
    assert v.service.sales_locked
    kiosk.c.post(ui.LockSales(False))
    kiosk.wait(lambda v: v.mode == "idle")
    kiosk.emu.command("door open")
    v = kiosk.wait(lambda v: v.mode == "out_of_service")
    assert v.out_of_service == ui.OutOfServiceView("door_open")
    kiosk.emu.command("door close")
    kiosk.wait(lambda v: v.mode == "idle")


def test_board_offline_while_awaiting_payment_cancels(kiosk: Kiosk) -> None:
    order = kiosk.checkout(OTHER)
    kiosk.emu.unplug()
    kiosk.wait(lambda v: v.mode == "out_of_service")
    o = kiosk.c.repo.get(order.order_id)
    assert o is not None and o.state is State.CANCELLED
    kiosk.emu.replug()
    kiosk.wait(lambda v: v.mode == "idle")


def test_technician_test_vend_is_logged_outside_orders(kiosk: Kiosk) -> None:
    kiosk.wait(lambda v: v.mode == "idle")
    kiosk.c.post(ui.TestVend(48))
    v = kiosk.wait(lambda v: "DELIVERED" in v.service.last_result)
    assert v.service.last_result == "slot 48: DELIVERED"
    ((tx, slot, kind, outcome),) = kiosk.c.repo.test_vends()
    assert tx & TEST_TX_BASE == TEST_TX_BASE and (slot, kind, outcome) == (48, "test", "DELIVERED")
    (run,) = kiosk.runs()
    assert run["tx"] == tx and run["cmd"] == "TEST_SLOT"
    assert kiosk.app.store.stock.levels()[48] == kiosk.levels0[48] - 1
    (entry,) = kiosk.app.store.stock.log(48, limit=1)
    assert (entry.reason, entry.ref) == (StockReason.TEST_VEND, str(tx))
    assert kiosk.c.repo.all() == []  # no order
    assert any(r.kind == "technician" for r in kiosk.app.outbox.records())
    kiosk.c.post(ui.Restock(48, None))
    kiosk.wait(lambda v: v.service.last_result.startswith("slot 48: 10"))


def test_locker_unlock_door_cycle_is_a_delivery(locker_kiosk: Kiosk) -> None:
    k = locker_kiosk
    v = k.wait(lambda v: v.mode == "idle")
    pid = next(p.product.product_id for p in v.products if p.stock_left > 0)
    order = k.checkout(pid)
    k.pay_for(order)
    v = k.wait(lambda v: v.mode == "dispensing")
    assert v.dispensing is not None and v.dispensing.open_door == order.lines[0].slot_no
    done = k.closed(order.order_id)
    assert done.state is State.COMPLETED
    assert done.lines[0].outcome is not None
    assert done.lines[0].outcome.value == "DOOR_OPENED_AND_CLOSED"
    (pulse,) = [e for e in k.board.log.entries if e["event"] == "lock_pulse"]
    assert pulse["tx"] == done.lines[0].tx and pulse["cmd"] == "UNLOCK"
    assert k.app.store.stock.levels()[order.lines[0].slot_no] == 0


def test_kiosk_clock_years_off_still_sells(kiosk: Kiosk) -> None:
    """The kiosk's clock is 5 years behind the province's; the sync layer's offset estimate
    (here set directly) makes the pay URL's expiry and the confirmation's freshness line up."""
    years = 5 * 365 * 86400.0
    c = kiosk.c
    order = kiosk.checkout(OTHER)
    late_url = kiosk.wait(lambda v: v.payment is not None).payment
    assert late_url is not None
    # before the offset is known a confirmation stamped in province time looks like the future
    province_now = kiosk.app.clock.time() + years
    c.submit_confirmation(
        kiosk.pay.confirm(order.kiosk_id, order.order_id, order.total_fen, province_now)
    )
    time.sleep(0.5)
    assert c.repo.get(order.order_id).state is State.AWAITING_PAYMENT  # rejected as stale
    c.province_time = lambda t: t + years
    # the next view refresh (the countdown ticks) re-signs the URL in province time
    v = kiosk.wait(lambda v: v.payment is not None and v.payment.pay_url != late_url.pay_url)
    assert v.payment is not None
    expiry = int(parse_qs(urlparse(v.payment.pay_url).query)["e"][0])
    assert abs(expiry - (order.expires_at + years)) < 300
    c.submit_confirmation(
        kiosk.pay.confirm(order.kiosk_id, order.order_id, order.total_fen, province_now)
    )
    assert kiosk.closed(order.order_id).state is State.COMPLETED
    assert c.repo.verify_ledger() == []


def test_watchdog_watches_the_ui_loop_board_link_and_store(kiosk: Kiosk) -> None:
    app = kiosk.app
    app.start_watchdog()
    assert app.watchdog is not None
    try:
        assert app.watchdog.unhealthy() == []  # headless: no UI loop to watch
        app.ui_heartbeat()
        assert app.watchdog.unhealthy() == []
        app.ui_beat = time.monotonic() - 60  # the UI loop stopped turning
        assert app.watchdog.unhealthy() == ["ui_loop"]
        app.ui_heartbeat()
        assert app.watchdog.unhealthy() == []
    finally:
        app.watchdog.stop()


# --- store integrity (free space before the first sale, start-up check, tx ids) ---------------


def _start(
    tmp_path: Path, name: str, store: dict[str, object] | None = None
) -> tuple[App, Emulator, TestPaymentSource]:
    return start_app(tmp_path, name, store=store or {})


def test_disk_below_the_limit_at_start_sells_nothing(tmp_path: Path) -> None:
    seed_store(tmp_path / "data")
    app, emu, _pay = _start(tmp_path, emulator_name(), {"min_free_mb": 100000})
    try:
        # out of service from the first published view on: no "first second" of selling
        v = app.controller.wait_view(lambda v: v.seq > 0, WAIT)
        assert v is not None and v.out_of_service is not None
        assert v.out_of_service.reason_key == "disk_low", v
        app.controller.post(ui.StartShopping())
        app.controller.post(ui.AddToCart(MULTI))
        app.controller.post(ui.Checkout())
        app.controller.call(lambda: None)  # the intents above have been handled
        assert app.controller.repo.all() == []
        assert app.controller.view().out_of_service.reason_key == "disk_low"  # type: ignore[union-attr]
    finally:
        app.close()
        emu.stop()


def test_a_tx_the_board_already_knows_is_never_sent(kiosk: Kiosk) -> None:
    """A board that remembers a tx from an earlier store (or cabinet): the kiosk asks first,
    never sends it, raises an alarm and vends the line with its next tx."""
    from kiosk.core.sale import make_tx

    seq = kiosk.app.store.counters.current("order_seq") + 1
    stale = make_tx(seq, 0, 0)
    r = kiosk.app.board.vend(48, stale, 10)  # the board's memory of an earlier life
    assert r.delivered
    order = kiosk.checkout(MULTI)
    assert order.order_seq == seq
    kiosk.pay_for(order)
    done = kiosk.closed(order.order_id)
    assert done.state is State.COMPLETED
    assert done.lines[0].tx != stale
    runs = kiosk.runs()
    assert [r["tx"] for r in runs] == [stale, done.lines[0].tx]  # a real motor run for it
    assert [a.kind for a in kiosk.c.repo.alarms()] == ["tx_collision"]


def _sell_one(tmp_path: Path) -> str:
    app, emu, pay = _start(tmp_path, emulator_name())
    try:
        k = Kiosk(app, emu, emu.board, pay, {})  # type: ignore[attr-defined]
        order = k.checkout(MULTI)
        k.pay_for(order)
        assert k.closed(order.order_id).state is State.COMPLETED
        return order.order_id
    finally:
        app.close()
        emu.stop()


def _tamper(data: Path, sql: str, *args: object) -> None:
    import sqlite3

    conn = sqlite3.connect(data / "kiosk.db")
    try:
        with conn:
            assert conn.execute(sql, args).rowcount == 1
    finally:
        conn.close()


@pytest.mark.parametrize("what", ["order", "ledger"])
def test_a_damaged_record_stops_sales_at_start(tmp_path: Path, what: str) -> None:
    import json

    from kiosk.controller import ACCEPTED_DAMAGE

    seed_store(tmp_path / "data")
    order_id = _sell_one(tmp_path)
    data = tmp_path / "data"
    st = open_store(data)
    with st.read() as c:
        table = "orders" if what == "order" else "ledger"
        (body,) = c.execute(f"SELECT body FROM {table} WHERE order_id = ?", (order_id,)).fetchone()
    st.close()
    d = json.loads(body)
    if what == "order":  # one changed digit in the paid amount (PRAGMA quick_check passes)
        d["payment"]["amount_fen"] += 7000
    else:  # one changed digit in a sold line's price
        d["lines"][0]["price_fen"] += 1
    _tamper(data, f"UPDATE {table} SET body = ? WHERE order_id = ?", json.dumps(d), order_id)

    app, emu, _pay = _start(tmp_path, emulator_name())
    try:
        v = app.controller.wait_view(
            lambda v: (
                v.out_of_service is not None and v.out_of_service.reason_key == "store_damaged"
            ),
            WAIT,
        )
        assert v is not None, app.controller.view()
        assert [a.kind for a in app.controller.repo.alarms()] == ["store_damaged"]
        app.controller.post(ui.StartShopping())
        app.controller.post(ui.AddToCart(MULTI))
        app.controller.post(ui.Checkout())
        app.controller.call(lambda: None)
        assert [o.order_id for o in app.controller.repo.all()] == [order_id]  # no new order
        problems = app.controller.repo.integrity_problems()
        assert (problems and order_id in problems[0]) or "seq 1" in problems[0]
    finally:
        app.close()
        emu.stop()
    # the technician accepts the known problem (after the province confirmed its copy)
    st = open_store(data)
    st.settings.set(ACCEPTED_DAMAGE, json.dumps(problems))
    st.close()
    app, emu, _pay = _start(tmp_path, emulator_name())
    try:
        assert app.controller.wait_view(lambda v: v.mode == "idle", WAIT) is not None
    finally:
        app.close()
        emu.stop()


def test_the_wal_is_folded_back_and_truncated_when_idle(
    kiosk: Kiosk, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kiosk.controller.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "CHECKPOINT_EVERY_S", 0.1)
    order = kiosk.checkout(MULTI)
    kiosk.pay_for(order)
    kiosk.closed(order.order_id)
    kiosk.c.post(ui.BackToIdle("test"))
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and kiosk.app.store.wal_bytes() > 0:
        time.sleep(0.05)
    assert kiosk.app.store.wal_bytes() == 0


def test_damage_older_than_the_verified_mark_is_found_by_the_background_check(
    tmp_path: Path,
) -> None:
    """Start-up checks only what changed since the last verified mark (fast on a big store);
    a full check in the background finds a record changed before that mark."""
    import json

    from kiosk.controller import VERIFIED_THROUGH
    from kiosk.store.orders import IntegrityMark

    seed_store(tmp_path / "data")
    order_id = _sell_one(tmp_path)
    app, emu, _pay = _start(tmp_path, emulator_name())  # verifies it, moves the mark on
    try:
        assert app.controller.wait_view(lambda v: v.mode == "idle", WAIT) is not None
    finally:
        app.close()
        emu.stop()
    data = tmp_path / "data"
    st = open_store(data)
    mark = IntegrityMark.from_json(st.settings.get(VERIFIED_THROUGH))
    assert mark is not None and mark.ledger_seq == 1
    with st.read() as c:
        (body,) = c.execute("SELECT body FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    st.close()
    d = json.loads(body)
    d["payment"]["amount_fen"] += 7000
    _tamper(data, "UPDATE orders SET body = ? WHERE order_id = ?", json.dumps(d), order_id)
    app, emu, _pay = _start(tmp_path, emulator_name())
    try:
        v = app.controller.wait_view(
            lambda v: (
                v.out_of_service is not None and v.out_of_service.reason_key == "store_damaged"
            ),
            WAIT,
        )
        assert v is not None, app.controller.view()
        assert [a.kind for a in app.controller.repo.alarms()] == ["store_damaged"]
    finally:
        app.close()
        emu.stop()


def test_a_replayed_confirmation_logs_as_a_duplicate_not_a_payment(
    kiosk: Kiosk, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    order = kiosk.checkout(OTHER)
    now = kiosk.app.clock.time()
    c = kiosk.pay.confirm(order.kiosk_id, order.order_id, order.total_fen, now)
    with caplog.at_level(logging.INFO, logger="kiosk.controller"):
        kiosk.c.submit_confirmation(c)
        kiosk.closed(order.order_id)
        kiosk.c.submit_confirmation(c)  # the province resends it
        kiosk.c.call(lambda: None)
    text = caplog.text
    assert text.count("payment.confirmed") == 1, text
    assert text.count("payment.duplicate") == 1, text
    assert len(kiosk.runs()) == 1  # and nothing was dispensed twice


def test_technician_records_carry_the_logged_in_technician(kiosk: Kiosk) -> None:
    """The PIN's owner goes on every technician record until the menu is left; wrong PINs are
    kept in the store and the third raises one PIN_LOCKOUT alarm (the one alarm shape)."""
    from kiosk.controller.access import PIN_LOCKOUT_KEY

    kiosk.wait(lambda v: v.mode == "idle")
    c = kiosk.c
    for _ in range(3):
        c.post(ui.ServiceLogin(ok=False))
    c.post(ui.ServiceLogin(ok=False, locked_out=True))  # refused unchecked: not counted
    v = kiosk.wait(lambda v: v.service.pin.attempts == 4)
    assert v.service.pin.failures == 3 and v.service.pin.locked_until is not None
    assert kiosk.app.store.settings.get_json(PIN_LOCKOUT_KEY)["failures"] == 3  # type: ignore[index]
    (alarm,) = [r for r in kiosk.app.outbox.records() if r.kind == "alarm"]
    assert alarm.priority is Priority.HIGH
    body = json.loads(alarm.payload)["body"]
    assert body["code"] == "PIN_LOCKOUT" and body["severity"] == "warning"
    assert body["context"]["failures"] == 3
    assert set(body) == {"code", "severity", "detail", "context"}
    c.post(ui.ServiceLogin(ok=True, technician="T0042"))
    c.post(ui.Restock(48, 3))
    c.post(ui.ServiceExit())
    c.post(ui.Restock(48, 4))
    kiosk.wait(lambda v: v.service.last_result == "slot 48: 4")
    tech = [
        json.loads(r.payload)["body"] for r in kiosk.app.outbox.records() if r.kind == "technician"
    ]
    assert [(b["action"], b["technician"]) for b in tech[-4:]] == [
        ("ServiceLogin", "T0042"),
        ("restock", "T0042"),
        ("ServiceExit", "T0042"),
        ("restock", ""),
    ]
    assert kiosk.wait(lambda v: v.service.pin.failures == 0).service.pin.locked_until is None


def test_chilled_goods_stopped_after_checkout_are_refunded_not_dispensed(tmp_path: Path) -> None:
    """The cabinet warms up between checkout and payment: the chilled line is never vended
    (docs/sales.md, chilled goods) and the shopper's money for it is refunded."""
    levels = seed_store(tmp_path / "data")
    s = open_store(tmp_path / "data")
    try:  # SINGLE becomes a chilled product (max 8 °C), as a signed catalog would say
        s.catalog.replace(
            Catalog.of(
                s.catalog.load().version,
                [
                    dataclasses.replace(p, chilled_max_c=8.0) if p.product_id == SINGLE else p
                    for p in s.catalog.load()
                ],
            )
        )
    finally:
        s.close()
    name = emulator_name()
    board = EmulatedBoard(BoardModel.spiral(6, 10, stock=5, chilled=True), time_scale=0.01)
    board.set_temperature(4.0)
    emu = Emulator(board, InProcessTransport(name)).start()
    pay = TestPaymentSource()
    cfg = write_kiosk_config(
        tmp_path / "kiosk.toml",
        f"emu://{name}",
        tmp_path / "data",
        hardware={"chilled": True, "max_temperature_c": 20.0},
        chilled={"too_warm_for_s": 0, "back_for_s": 600},
    )
    app = build_app(cfg, province_public_key=pay.public_key, link_timing=FAST, tick_s=0.2)
    app.start()
    try:
        kiosk = Kiosk(app, emu, board, pay, levels)
        order = kiosk.checkout(SINGLE, OTHER)
        board.set_temperature(12.0)  # too warm: SINGLE stops selling at once (too_warm_for_s 0)
        kiosk.wait(
            lambda v: any(p.unavailable for p in v.products if p.product.product_id == SINGLE)
        )
        kiosk.pay_for(order)
        done = kiosk.closed(order.order_id)
        single = next(ln for ln in done.lines if ln.product_id == SINGLE)
        assert single.status is LineStatus.FAILED and single.attempts == 0
        assert done.state is State.PARTLY_DELIVERED and done.refund_due_fen == single.price_fen
        assert [r["result"] for r in kiosk.runs()] == ["DELIVERED"]  # only the other product
        (refund,) = kiosk.c.repo.refunds(order.order_id)
        assert (refund.reason, refund.amount_fen) == ("not_delivered", single.price_fen)
        assert app.store.stock.levels()[single.slot_no] == levels[single.slot_no]
    finally:
        app.close()
        emu.stop()


def _is(pv: ui.ProductView, product_id: str) -> bool:
    return pv.product.product_id == product_id
