"""Issue 13 req. 4: the records a province reads for reports, from each producer.

- one alarm shape (code, severity, detail, context) from the controller;
- `events/stock`: every stock_log row, from any writer, once (the stock feed and its mark);
- `events/order`: paid, completed, cancelled (with reason), refund_due, partly_delivered;
- `events/selftest`: the body, its numbered event id, the service tools' slot results.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk import contract as ui
from kiosk.cli import main as cli_main
from kiosk.clock import ManualClock
from kiosk.core.planogram import Planogram
from kiosk.core.sale import State
from kiosk.core.stock import StockChange, StockReason
from kiosk.sim.province import open_db
from kiosk.sim.province_views import order_histories, stock_levels
from kiosk.store import Store, open_store
from kiosk.sync import records
from kiosk.sync.outbox import Outbox, OutboxRecord, Priority
from kiosk.sync.stockfeed import MARK, StockFeed
from kiosk.sync.topics import Topics
from tests.support.board_peer import PtyPeer
from tests.support.config import write_kiosk_config
from tests.support.kiosk_app import MULTI, OTHER, SINGLE, Kiosk
from tests.support.store import seed_store

KID = "AH-340100-0009"


def bodies(recs: list[OutboxRecord], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.event_id, json.loads(r.payload)["body"]) for r in recs if r.kind == kind]


# --- the alarm shape and severities -----------------------------------------------------------


def test_controller_alarm_shape_and_severity() -> None:
    body = records.controller_alarm("slot_fault", "AH-1-0001", 12, "jammed")
    assert body == {
        "code": "SLOT_FAULT",
        "severity": "warning",
        "detail": "jammed",
        "context": {"order_id": "AH-1-0001", "slot_no": 12},
    }
    assert records.controller_alarm("unknown_outcome", "", None, "")["severity"] == "critical"
    for code in ("DOUBLE_PAYMENT", "BOARD_OFFLINE", "TX_CONFLICT", "LATE_OUTCOME"):
        assert records.alarm_severity(code) == "critical"
    for code in ("STORE_CORRUPT", "STORE_DAMAGED", "STORE_TOO_NEW", "DISK_FULL"):
        assert records.alarm_severity(code) == "critical"
    for code in ("SLOT_FAULT", "STOCK_MISMATCH", "BOARD_FAULT", "DOOR_LEFT_OPEN", "TX_COLLISION"):
        assert records.alarm_severity(code) == "warning"


def test_jam_alarm_reaches_the_outbox_in_the_one_shape(kiosk: Kiosk) -> None:
    order = kiosk.checkout(SINGLE)
    slot = order.lines[0].slot_no
    kiosk.emu.set_fault("jammed", {kiosk.c.planogram.slots[slot].address})
    kiosk.pay_for(order)
    assert kiosk.closed(order.order_id).state is State.REFUND_DUE
    (alarm,) = [b for _, b in bodies(kiosk.app.outbox.records(), "alarm")]
    assert alarm["code"] == "SLOT_FAULT" and alarm["severity"] == "warning"
    assert alarm["context"] == {"order_id": order.order_id, "slot_no": slot}
    assert isinstance(alarm["detail"], str) and set(alarm) == {
        "code",
        "severity",
        "detail",
        "context",
    }
    # ... and the order ended refund_due with the refund's reason
    orders = {b["state"]: b for _, b in bodies(kiosk.app.outbox.records(), "order")}
    assert orders["refund_due"]["reason"] == "not_delivered"
    assert orders["refund_due"]["paid_fen"] == order.total_fen


# --- events/order ---------------------------------------------------------------------------


def test_sale_gives_order_paid_and_completed_and_stock_sale(kiosk: Kiosk) -> None:
    order = kiosk.checkout(MULTI, OTHER)
    assert bodies(kiosk.app.outbox.records(), "order") == []  # awaiting payment: nothing yet
    kiosk.pay_for(order)
    done = kiosk.closed(order.order_id)
    assert done.state is State.COMPLETED
    recs = kiosk.app.outbox.records()
    got = bodies(recs, "order")
    assert [e for e, _ in got] == [
        f"order-{order.order_id}-paid",
        f"order-{order.order_id}-completed",
    ]
    paid, completed = (b for _, b in got)
    assert paid == {
        "order_id": order.order_id,
        "state": "paid",
        "reason": "",
        "total_fen": order.total_fen,
        "paid_fen": order.total_fen,
        "at": paid["at"],
    }
    assert completed["state"] == "completed" and completed["paid_fen"] == order.total_fen
    assert all(r.priority is Priority.CRITICAL for r in recs if r.kind == "order")
    # the stock records of the two deliveries, in the same transactions as the stock change
    sales = [b for _, b in bodies(recs, "stock") if b["reason"] == "sale"]
    assert sorted(b["slot_no"] for b in sales) == sorted(ln.slot_no for ln in done.lines)
    levels = kiosk.app.store.stock.levels()
    for b in sales:
        assert b["delta"] == -1 and b["ref"] == order.order_id
        assert b["product_id"] == kiosk.c.planogram.slots[b["slot_no"]].product_id
    assert {b["slot_no"]: b["level"] for b in sales} == {
        b["slot_no"]: levels[b["slot_no"]] for b in sales
    }


def test_cancelled_order_says_why(kiosk: Kiosk) -> None:
    order = kiosk.checkout(OTHER)
    kiosk.c.post(ui.CancelOrder())
    kiosk.wait(lambda v: v.mode == "idle")
    (got,) = bodies(kiosk.app.outbox.records(), "order")
    assert got[0] == f"order-{order.order_id}-cancelled"
    assert (got[1]["state"], got[1]["reason"], got[1]["paid_fen"]) == ("cancelled", "shopper", 0)
    assert got[1]["total_fen"] == order.total_fen


# --- events/stock ---------------------------------------------------------------------------


def test_technician_restock_reaches_the_outbox(kiosk: Kiosk) -> None:
    slot = 48
    kiosk.c.post(ui.Restock(slot, 1))  # a count correction down to 1
    kiosk.c.call(lambda: None)
    kiosk.c.post(ui.Restock(slot, None))  # then fill to capacity
    kiosk.c.call(lambda: None)
    mine = [
        (e, b)
        for e, b in bodies(kiosk.app.outbox.records(), "stock")
        if b["slot_no"] == slot and b["ref"].startswith("restock-")
    ]
    assert [b["reason"] for _, b in mine] == ["count_correction", "restock"]
    capacity = kiosk.c.planogram.slots[slot].capacity
    assert [b["level"] for _, b in mine] == [1, capacity]
    assert mine[1][1]["delta"] == capacity - 1
    epoch = kiosk.app.store.epoch
    assert all(e.startswith(f"stock-{kiosk.app.outbox.topics.kiosk_id}-{epoch}-") for e, _ in mine)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[PtyPeer]:
    p = PtyPeer(tmp_path / "board")
    yield p
    p.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    seed_store(tmp_path / "data")
    s = open_store(tmp_path / "data", ManualClock(1_790_000_000.0))
    yield s
    s.close()


def test_feed_copies_every_row_once_from_any_writer(store: Store) -> None:
    outbox = Outbox(store, Topics(KID), ManualClock(1_790_000_000.0))
    feed = StockFeed(store, outbox, KID)
    seeded = len(store.stock.log(limit=10_000))
    assert feed.pending()
    assert feed.pump(limit=7) == 7  # in batches, each with its mark
    assert store.settings.get(MARK) == str(min(e.id for e in store.stock.log(limit=10_000)) + 6)
    while feed.pump():
        pass
    assert not feed.pending() and feed.pump() == 0
    assert len(bodies(outbox.records(), "stock")) == seeded
    a, b = [n for n, level in store.stock.levels().items() if level > 0][:2]
    # a removal from a shell (a second connection, as `kiosk` commands open the store)
    other = open_store(store.data_dir)
    try:
        other.stock.apply(StockChange(a, -1, StockReason.REMOVAL, "expired"))
    finally:
        other.close()
    # a planogram that drops a stocked slot: its items are logged as a removal
    pg = store.planogram.load()
    smaller = Planogram.of(pg.version + 1, [s for s in pg if s.slot_no != b])
    level_b = store.stock.level(b)
    store.planogram.replace(smaller, allow_drop_stocked=True)
    assert feed.pump() == 2
    got = bodies(outbox.records(), "stock")[seeded:]
    assert [b["reason"] for _, b in got] == ["removal", "removal"]
    assert got[0][1]["ref"] == "expired" and got[0][1]["slot_no"] == a
    assert got[1][1]["ref"] == f"planogram v{pg.version + 1}" and got[1][1]["level"] == 0
    assert got[1][1]["delta"] == -level_b and got[1][1]["product_id"] == ""  # slot gone
    log_ids = sorted(e.id for e in store.stock.log(limit=10_000))
    assert [e for e, _ in bodies(outbox.records(), "stock")] == [
        records.stock_event_id(KID, store.epoch, i) for i in log_ids
    ]
    # acknowledged and gone from the outbox: never copied again
    outbox.ack([r.event_id for r in outbox.records()])
    assert feed.pump() == 0 and outbox.records() == []


def test_feed_in_a_failed_transaction_copies_nothing(store: Store) -> None:
    outbox = Outbox(store, Topics(KID), ManualClock(1_790_000_000.0))
    feed = StockFeed(store, outbox, KID)
    with pytest.raises(RuntimeError), store.transaction() as conn:
        assert feed.pump(conn) > 0
        raise RuntimeError("the step failed")
    assert store.settings.get(MARK) is None and outbox.records() == []
    assert feed.pump() > 0  # copied by the next pump


# --- events/selftest ------------------------------------------------------------------------


def test_selftest_body_and_numbered_ids(store: Store) -> None:
    outbox = Outbox(store, Topics(KID), ManualClock(1_790_000_000.0))
    slot_map = {(0, 7): 12}
    slots = records.board_slot_results(
        0,
        [
            {"slot": 7, "outcome": "DELIVERED", "ok": True, "description": "drop sensor"},
            {"slot": 9, "outcome": "NOTHING_DROPPED", "ok": False},
        ],
        slot_map,
    )
    assert [(s["slot_no"], s["result"]) for s in slots] == [(12, "ok"), (9, "no_drop")]
    assert "not in the planogram" in slots[1]["detail"]
    body = records.selftest_body(
        source="cli", started_at=1.0, finished_at=2.5, slots=slots, technician="li"
    )
    assert body == {
        "source": "cli",
        "ok": False,
        "started_at": 1.0,
        "finished_at": 2.5,
        "slots": slots,
        "technician": "li",
    }
    first = records.append_selftest(store, outbox, KID, body)
    second = records.append_selftest(store, outbox, KID, {**body, "ok": True})
    assert (first, second) == (f"selftest-{KID}-{store.epoch}-1", f"selftest-{KID}-{store.epoch}-2")
    assert [r.priority for r in outbox.records()] == [Priority.HIGH, Priority.HIGH]
    for bad in ({"source": "phone"}, {"source": "cli", "slots": [{"slot_no": 1}]}):
        with pytest.raises((ValueError, KeyError)):
            records.selftest_body(
                **{"started_at": 0.0, "finished_at": 0.0, "slots": [], **bad}  # type: ignore[arg-type]
            )
    assert records.slot_result("JAMMED", False) == "jammed"
    assert records.slot_result("MOTOR_MISSING", False) == "motor_missing"
    assert records.slot_result("ERROR", False) == "board_offline"
    assert records.slot_result("LOCK_FAILED", False) == "lock_failed"
    assert records.slot_result("DOOR_NOT_OPENED", True) == "ok"
    with pytest.raises(ValueError):
        records.order_body(
            order_id="x", state="awaiting_payment", reason="", total_fen=1, paid_fen=0, at=0.0
        )


def test_board_selftest_command_queues_the_result(
    tmp_path: Path, peer: PtyPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kiosk board selftest --config ...`: slots named by the planogram (demo: board 0
    address 1 = 11), the result goes into that kiosk's store (source "cli"), and each item a
    `--drop` run dropped comes off the count as a test vend (issue 17 req. 6)."""
    seed_store(tmp_path / "data")
    cfg = write_kiosk_config(tmp_path / "kiosk.toml", peer.path, tmp_path / "data")
    store = open_store(cfg.store.data_dir)
    before = store.stock.levels()
    store.close()
    argv = ["board", "selftest", "--config", str(tmp_path / "kiosk.toml")]
    code = cli_main([*argv, "--port", str(peer.path), "--slots", "11-12", "--drop", "--yes"])
    out = capsys.readouterr().out
    assert code == 0 and "queued for the province as event selftest-" in out, out
    assert "slot 11 (board 0 address 1): DELIVERED" in out
    assert out.index("taken off the kiosk's count") < out.index("DELIVERED")
    code = cli_main([*argv, "--port", str(peer.path), "--slots", "10", "--no-queue", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["ok"] is True
    store = open_store(cfg.store.data_dir)
    try:
        after = store.stock.levels()
        drops = [e for e in store.stock.log() if e.reason == StockReason.TEST_VEND]
        got = bodies(
            Outbox(store, Topics(cfg.identity.kiosk_id), ManualClock(0.0)).records(), "selftest"
        )
        epoch = store.epoch
    finally:
        store.close()
    ((event_id, body),) = got  # --no-queue queued nothing
    assert event_id == f"selftest-{cfg.identity.kiosk_id}-{epoch}-1"
    assert (body["source"], body["ok"], body["technician"]) == ("cli", True, "")
    assert [(s["slot_no"], s["result"]) for s in body["slots"]] == [(11, "ok"), (12, "ok")]
    assert body["started_at"] <= body["finished_at"]
    assert {n: before[n] - after[n] for n in before if before[n] != after[n]} == {11: 1, 12: 1}
    assert sorted(e.slot_no for e in drops) == [11, 12]


def test_service_menu_slot_test_is_a_selftest_and_a_stock_change(kiosk: Kiosk) -> None:
    kiosk.wait(lambda v: v.mode == "idle")
    kiosk.c.post(ui.TestVend(48))
    kiosk.wait(lambda v: "DELIVERED" in v.service.last_result)
    kiosk.emu.set_fault("jammed", {kiosk.c.planogram.slots[49].address})
    kiosk.c.post(ui.TestVend(49))
    kiosk.wait(lambda v: "JAMMED" in v.service.last_result)
    kiosk.c.post(ui.OpenDoor(50))  # a door opened for restocking is not a test
    kiosk.c.call(lambda: None)
    recs = kiosk.app.outbox.records()
    tests = bodies(recs, "selftest")
    epoch, kid = kiosk.app.store.epoch, kiosk.app.outbox.topics.kiosk_id
    assert [e for e, _ in tests] == [f"selftest-{kid}-{epoch}-1", f"selftest-{kid}-{epoch}-2"]
    (ok, jam) = (b for _, b in tests)
    assert (ok["source"], ok["ok"], ok["technician"]) == ("service_menu", True, "")
    assert [(s["slot_no"], s["result"]) for s in ok["slots"]] == [(48, "ok")]
    assert ok["started_at"] <= ok["finished_at"]
    assert (jam["ok"], jam["slots"][0]["slot_no"], jam["slots"][0]["result"]) == (
        False,
        49,
        "jammed",
    )
    (vend,) = [b for _, b in bodies(recs, "stock") if b["reason"] == "test_vend"]
    assert (vend["slot_no"], vend["delta"], vend["level"]) == (48, -1, kiosk.levels0[48] - 1)
    # issue 17 req. 6: a check runs nothing and changes no count, and is a self test too
    kiosk.wait(lambda v: v.service.last_result == "slot 50: WRONG_SLOT_KIND")  # the door's
    kiosk.c.post(ui.CheckSlot(47))
    kiosk.wait(lambda v: v.service.result is not None and v.service.result.key == "checked")
    assert kiosk.c.view().service.last_result == "slot 47: READY"
    recs = kiosk.app.outbox.records()
    check = bodies(recs, "selftest")[-1][1]
    assert check["slots"] == [
        {"slot_no": 47, "result": "ok", "detail": "checked without running: READY"}
    ]
    assert kiosk.app.store.stock.level(47) == kiosk.levels0[47]


# --- the province simulator's views ---------------------------------------------------------


def test_province_views_newest_by_seq_and_reported_for_the_rest(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "province")

    def put(seq: int, kind: str, body: dict[str, Any], kiosk: str = KID) -> None:
        conn.execute(
            "INSERT INTO events (event_id, kiosk_id, seq, kind, priority, boot, kiosk_time, "
            "body, received_at) VALUES (?, ?, ?, ?, 'high', 1, 0, ?, 0)",
            (f"e{seq}", kiosk, seq, kind, json.dumps(body)),
        )

    def stock(slot: int, level: int, reason: str, ref: str = "") -> dict[str, Any]:
        return records.stock_body(
            slot_no=slot, product_id="P1", delta=-1, level=level, reason=reason, ref=ref, at=0.0
        )

    put(1, "reported", {"stock": {"1": 9, "2": 4, "3": 0}})
    put(5, "stock", stock(1, 7, "sale", "O-2"))  # arrives first, newer
    put(4, "stock", stock(1, 8, "sale", "O-1"))  # older, arrives later: does not win
    put(6, "stock", stock(2, 10, "restock"), kiosk="OTHER")  # another kiosk's
    order = {"order_id": "O-1", "reason": "", "total_fen": 500, "at": 1.0}
    put(2, "order", {**order, "state": "paid", "paid_fen": 500})
    put(3, "order", {**order, "state": "completed", "paid_fen": 500})
    put(
        7,
        "order",
        {**order, "order_id": "O-3", "state": "cancelled", "reason": "timeout", "paid_fen": 0},
    )
    view = stock_levels(conn, KID)
    assert {s: (v.level, v.source) for s, v in view.items()} == {
        1: (7, "stock"),
        2: (4, "reported"),
        3: (0, "reported"),
    }
    assert (view[1].last_reason, view[1].last_ref, view[1].product_id) == ("sale", "O-2", "P1")
    hist = order_histories(conn, KID)
    assert (hist["O-1"].states, hist["O-1"].state, hist["O-1"].paid_fen) == (
        ["paid", "completed"],
        "completed",
        500,
    )
    assert (hist["O-3"].state, hist["O-3"].reasons["cancelled"]) == ("cancelled", "timeout")
    conn.close()
    # a newer report without slots 1 and 3, both older than it: they left the planogram
    conn2 = open_db(tmp_path / "province")
    conn2.execute(
        "INSERT INTO events (event_id, kiosk_id, seq, kind, priority, boot, kiosk_time, body, "
        "received_at) VALUES ('e8', ?, 8, 'reported', 'normal', 1, 0, ?, 0)",
        (KID, json.dumps({"stock": {"2": 4}})),
    )
    assert sorted(stock_levels(conn2, KID)) == [2]
    conn2.close()
