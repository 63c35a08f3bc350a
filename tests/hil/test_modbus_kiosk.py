"""The whole kiosk (kiosk.app.build_app) with Modbus devices on a real socat pty pair, served
by pymodbus's own serial server (kiosk.sim.modbus_devices):

- chilled goods by the Modbus temperature sensor: too warm -> the chilled product is shown
  unavailable ("too_warm") and a TEMPERATURE_HIGH alarm is queued; back in range -> it sells
  again and TEMPERATURE_OK follows; a silent sensor stops it too; other products sell on;
- a locker cabinet on Modbus lock boards: a paid order opens the door and completes; a lock
  board that goes silent takes the kiosk out of service (board_offline).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk import contract as ui
from kiosk.app import App, build_app
from kiosk.core.planogram import SlotKind
from kiosk.core.sale import State
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.emulator_transports import Emulator, InProcessTransport
from kiosk.sim.modbus_devices import (
    LockBoardModel,
    ModbusDevices,
    PtyPair,
    SensorModel,
    socat_pair,
)
from kiosk.sim.shopper import Shopper, TestPaymentSource
from kiosk.store import open_store
from tests.support.board_peer import FAST
from tests.support.config import write_kiosk_config
from tests.support.kiosk_app import MULTI, OTHER, emulator_name
from tests.support.store import seed_store

WAIT = 60.0  # generous: CI is a loaded 2-core box
BAUD = 19200
CHILLED = {"too_warm_for_s": 1, "back_for_s": 1, "hysteresis_c": 0.5, "sensor_silent_after_s": 5}


def _modbus(pair: PtyPair, **more: Any) -> dict[str, Any]:
    return {"port": pair.kiosk_end, "baud": BAUD, "timeout_s": 0.5, "retries": 3, **more}


def _alarms(app: App) -> list[dict[str, Any]]:
    return [json.loads(r.payload)["body"] for r in app.outbox.records() if r.kind == "alarm"]


def _product(v: ui.ViewState, pid: str) -> ui.ProductView:
    return next(p for p in v.products if p.product.product_id == pid)


def _wait(app: App, pred: Any, what: str) -> ui.ViewState:
    v = app.controller.wait_view(pred, WAIT)
    assert v is not None, f"{what}; last view: {app.controller.view()}"
    return v


@pytest.fixture
def chilled_kiosk(tmp_path: Path) -> Iterator[tuple[App, SensorModel, ModbusDevices]]:
    """A spiral kiosk on the board emulator whose product MULTI is chilled (max 8 °C), with a
    Modbus temperature sensor (unit 10) on a pty pair."""
    data = tmp_path / "data"
    seed_store(data)
    s = open_store(data)
    try:
        cat = s.catalog.load()
        chilled = dataclasses.replace(cat[MULTI], chilled_max_c=8.0)
        s.catalog.replace(
            type(cat).of(cat.version + 1, [chilled if p.product_id == MULTI else p for p in cat])
        )
    finally:
        s.close()
    sensor = SensorModel(unit=10, celsius=4.0)
    name = emulator_name()
    emu = Emulator(
        EmulatedBoard(BoardModel.spiral(6, 10, stock=5), time_scale=0.01),
        InProcessTransport(name),
    ).start()
    with socat_pair(tmp_path) as pair:
        devices = ModbusDevices(pair.device_end, [sensor], baud=BAUD).start()
        cfg = write_kiosk_config(
            tmp_path / "kiosk.toml",
            f"emu://{name}",
            data,
            modbus=_modbus(pair, sensor_unit=10, sensor_every_s=0.5),
            chilled=CHILLED,
        )
        pay = TestPaymentSource()
        app = build_app(cfg, province_public_key=pay.public_key, link_timing=FAST, tick_s=0.2)
        app.start()
        try:
            yield app, sensor, devices
        finally:
            app.close()
            devices.stop()
            emu.stop()


def test_chilled_product_stops_and_returns_with_the_sensor(
    chilled_kiosk: tuple[App, SensorModel, ModbusDevices],
) -> None:
    app, sensor, devices = chilled_kiosk

    def sells(v: ui.ViewState) -> bool:
        return v.mode == "idle" and _product(v, MULTI).stock_left > 0

    def stopped(v: ui.ViewState) -> bool:
        p = _product(v, MULTI)
        return p.unavailable == "too_warm" and p.stock_left == 0 and p.sold_out

    v = _wait(app, lambda v: sells(v) and v.service.temperature_c == 4.0, "sells at 4 °C")
    assert v.service.humidity_pct == 55.0 and v.service.chilled_stopped == ()
    sensor.celsius = 12.5
    v = _wait(app, stopped, "too warm: the chilled product stops")
    assert _product(v, OTHER).stock_left > 0 and v.mode == "idle"  # others sell on
    assert v.service.chilled_stopped == (MULTI,)
    (high,) = [a for a in _alarms(app) if a["code"] == "TEMPERATURE_HIGH"]
    assert high["severity"] == "warning"
    assert high["context"] == {"sensor": "modbus:10", "celsius": 12.5, "limit": 8.0}
    assert app.store.settings.get_json("chilled.state", {})["blocked"] == [8.0]

    sensor.celsius = 3.0  # (hysteresis and durations: tests/unit/test_chilled.py)
    _wait(app, sells, "back in range: the chilled product sells again")
    (ok,) = [a for a in _alarms(app) if a["code"] == "TEMPERATURE_OK"]
    assert ok["severity"] == "info" and ok["context"]["celsius"] == 3.0

    devices.faults.silent = True  # the sensor stops answering: too warm for chilled goods
    _wait(app, stopped, "a silent sensor stops the chilled product")
    silent = [a for a in _alarms(app) if a["code"] == "TEMPERATURE_HIGH"][-1]
    assert silent["context"]["celsius"] is None
    assert _product(app.controller.view(), OTHER).stock_left > 0


@pytest.fixture
def modbus_locker(
    tmp_path: Path,
) -> Iterator[tuple[App, LockBoardModel, ModbusDevices, TestPaymentSource]]:
    """A locker kiosk (demo locker planogram, board 0) whose doors are a Modbus lock board
    (unit 1, 24 locks) on a pty pair; no board of our protocol at all."""
    data = tmp_path / "data"
    seed_store(data, SlotKind.LOCKER)
    board = LockBoardModel(unit=1, locks=24, open_after_s=0.3, close_after_s=1.5)
    with socat_pair(tmp_path) as pair:
        devices = ModbusDevices(pair.device_end, [board], baud=BAUD).start()
        cfg = write_kiosk_config(
            tmp_path / "kiosk.toml",
            "/dev/null-unused",
            data,
            hardware={"cabinet": "locker", "default_capacity": 1},
            modbus=_modbus(pair, locks=True, locks_per_board=24, door_poll_s=0.05),
        )
        pay = TestPaymentSource()
        app = build_app(cfg, province_public_key=pay.public_key, tick_s=0.2)
        app.start()
        try:
            yield app, board, devices, pay
        finally:
            app.close()
            devices.stop()


def test_locker_sale_on_a_modbus_lock_board(
    modbus_locker: tuple[App, LockBoardModel, ModbusDevices, TestPaymentSource],
) -> None:
    app, board, devices, pay = modbus_locker
    v = _wait(app, lambda v: v.mode == "idle" and bool(v.products), "the locker kiosk sells")
    pid = next(p.product.product_id for p in v.products if p.stock_left > 0)
    shopper = Shopper(app.controller, pay, clock=app.clock)
    shopper.fill_cart([pid], start=False)
    shopper.checkout()
    v = _wait(app, lambda v: v.mode == "payment", "payment screen")
    assert v.payment is not None
    order = app.controller.repo.get(v.payment.order_id)
    assert order is not None
    shopper.pay(order)
    _wait(app, lambda v: v.mode == "done", "the door opened and closed: done")
    done = app.controller.repo.get(order.order_id)
    assert done is not None and done.state is State.COMPLETED
    slot = app.store.planogram.load().slots[done.lines[0].slot_no]
    assert board.releases == [slot.address]

    app.controller.post(ui.BackToIdle())
    _wait(app, lambda v: v.mode == "idle", "the shopper left")
    devices.faults.silent = True  # the lock board stops answering
    v = _wait(
        app,
        lambda v: (
            v.mode == "out_of_service"
            and v.out_of_service is not None
            and v.out_of_service.reason_key == "board_offline"
        ),
        "a silent lock board takes the kiosk out of service",
    )
    devices.faults.silent = False
    _wait(app, lambda v: v.mode == "idle", "the lock board answers again: selling")


def test_restart_during_an_unlock_is_unknown_never_released_again(tmp_path: Path) -> None:
    """Modbus lock boards keep no outcome memory: a kiosk stopped while a door is open (the
    shopper has not closed it) finds the tx UNKNOWN after its restart. The sale machine refunds
    the line with an UNKNOWN_OUTCOME alarm and never releases the lock again."""
    data = tmp_path / "data"
    seed_store(data, SlotKind.LOCKER)
    board = LockBoardModel(unit=1, locks=24, open_after_s=0.2, close_after_s=None)
    pay = TestPaymentSource()
    with socat_pair(tmp_path) as pair:
        devices = ModbusDevices(pair.device_end, [board], baud=BAUD).start()
        cfg = write_kiosk_config(
            tmp_path / "kiosk.toml",
            "/dev/null-unused",
            data,
            hardware={"cabinet": "locker", "default_capacity": 1},
            modbus=_modbus(pair, locks=True, locks_per_board=24, door_poll_s=0.05),
        )
        try:
            app = build_app(cfg, province_public_key=pay.public_key, tick_s=0.2)
            app.start()
            try:
                v = _wait(app, lambda v: v.mode == "idle" and bool(v.products), "selling")
                pid = next(p.product.product_id for p in v.products if p.stock_left > 0)
                shopper = Shopper(app.controller, pay, clock=app.clock)
                shopper.fill_cart([pid], start=False)
                shopper.checkout()
                v = _wait(app, lambda v: v.mode == "payment", "payment screen")
                assert v.payment is not None
                order_id = v.payment.order_id
                order = app.controller.repo.get(order_id)
                assert order is not None
                shopper.pay(order)
                _wait(app, lambda v: bool(board.releases), "the lock was released")
                _wait(app, lambda v: board.door_open(board.releases[0]), "the door is open")
            finally:
                app.close()  # the door is still open: the unlock never finished

            app = build_app(cfg, province_public_key=pay.public_key, tick_s=0.2)
            app.start()
            try:

                def settled(_v: ui.ViewState) -> bool:
                    o = app.controller.repo.get(order_id)
                    return o is not None and o.state is State.REFUND_DUE

                _wait(app, settled, "after the restart the line is unknown: refunded")
                kinds = [a.kind for a in app.controller.repo.alarms()]
                assert "unknown_outcome" in kinds
                assert len(board.releases) == 1  # never released again
            finally:
                app.close()
        finally:
            devices.stop()
