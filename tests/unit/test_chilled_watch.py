"""The chilled-goods shell (kiosk.controller.chilled.ChilledWatch) on a real store and outbox:
alarms queued with the state in one transaction, numbered event ids, the stopped limits kept
across a restart, the products and slots it stops."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from kiosk.clock import ManualClock
from kiosk.config import ChilledConfig
from kiosk.controller.chilled import STATE_KEY, ChilledWatch
from kiosk.controller.persist import Persistence
from kiosk.core.catalog import Catalog
from kiosk.core.planogram import SlotKind
from kiosk.sim.demo_data import demo_catalog, demo_planogram
from kiosk.store import Store, open_store
from kiosk.store.orders import OrderRepo
from kiosk.sync.outbox import Outbox, Priority
from kiosk.sync.topics import Topics

KIOSK = "AH-340100-0001"
CFG = ChilledConfig(too_warm_for_s=60, back_for_s=120, hysteresis_c=0.5, sensor_silent_after_s=30)


def _catalog() -> tuple[Catalog, str]:
    cat = demo_catalog()
    pid = sorted(demo_planogram(SlotKind.SPIRAL).product_ids())[0]
    chilled = dataclasses.replace(cat[pid], chilled_max_c=8.0)
    return Catalog.of(cat.version, [chilled if p.product_id == pid else p for p in cat]), pid


def _watch(store: Store, clock: ManualClock) -> tuple[ChilledWatch, Outbox]:
    outbox = Outbox(store, Topics(KIOSK), clock)
    persist = Persistence(store, OrderRepo(store), outbox, clock, KIOSK, None)
    return ChilledWatch(persist, clock, CFG, "modbus:10"), outbox


def _alarms(outbox: Outbox) -> list[tuple[str, dict[str, object]]]:
    out = []
    for r in outbox.records():
        if r.kind == "alarm":
            assert r.priority is Priority.HIGH
            out.append((r.event_id, json.loads(r.payload)["body"]))
    return out


def test_stop_alarm_restart_and_return(tmp_path: Path) -> None:
    clock = ManualClock()
    cat, pid = _catalog()
    planogram = demo_planogram(SlotKind.SPIRAL)
    store = open_store(tmp_path, clock)
    try:
        watch, outbox = _watch(store, clock)
        watch.reading(9.0, 50.0, "", cat)
        clock.advance(61)
        watch.reading(9.5, 51.0, "", cat)
        assert watch.blocked(cat) == {pid}
        assert watch.blocked_slots(cat, planogram) == {s.slot_no for s in planogram.slots_for(pid)}
        ((event_id, body),) = _alarms(outbox)
        assert event_id == f"alarm-{KIOSK}-{store.epoch}-temperature-1"
        assert body["code"] == "TEMPERATURE_HIGH" and body["severity"] == "warning"
        assert body["context"] == {"sensor": "modbus:10", "celsius": 9.5, "limit": 8.0}
        assert store.settings.get_json(STATE_KEY, {}) == {"blocked": [8.0], "alarms": 1}
    finally:
        store.close()

    store = open_store(tmp_path, clock)  # a restart: still stopped, no new alarm
    try:
        watch, outbox = _watch(store, clock)
        assert watch.blocked(cat) == {pid}
        watch.reading(3.0, 40.0, "", cat)
        clock.advance(60)
        watch.reading(3.0, 40.0, "", cat)
        assert watch.blocked(cat) == {pid}  # needs back_for_s
        clock.advance(60)
        watch.reading(2.5, 40.0, "", cat)
        assert watch.blocked(cat) == frozenset()
        event_id, body = _alarms(outbox)[-1]
        assert event_id == f"alarm-{KIOSK}-{store.epoch}-temperature-2"
        assert body["code"] == "TEMPERATURE_OK" and body["severity"] == "info"
        assert store.settings.get_json(STATE_KEY, {}) == {"blocked": [], "alarms": 2}
        assert watch.celsius() == 2.5 and watch.humidity_pct == 40.0
    finally:
        store.close()


def test_unanswered_polls_age_into_too_warm(tmp_path: Path) -> None:
    clock = ManualClock()
    cat, pid = _catalog()
    store = open_store(tmp_path, clock)
    try:
        watch, outbox = _watch(store, clock)
        watch.reading(4.0, 50.0, "", cat)
        for _ in range(20):  # 100 s of "no answer": silent after 30 s, stopped 60 s later
            clock.advance(5)
            watch.reading(None, None, "modbus unit 10: no answer", cat)
        assert watch.blocked(cat) == {pid} and watch.celsius() is None
        assert watch.humidity_pct is None and watch.error
        ((_, body),) = _alarms(outbox)
        assert body["context"] == {"sensor": "modbus:10", "celsius": None, "limit": 8.0}
        assert "no reading" in str(body["detail"])
    finally:
        store.close()
