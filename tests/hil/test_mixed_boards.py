"""A protocol per board (`[[board]]`, docs/configuration.md): the whole kiosk (build_app, the
real controller and sale machine) with board 0 a VMC (the VMC emulator, it polls the kiosk) and
board 1 our own board (the board emulator, the kiosk polls it), each on its own real pty. One
paid order with a line on each board is delivered by each board's own motor, once; the VMC
unplugged takes the whole kiosk out of service (the link group is offline) until it is back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kiosk import contract as ui
from kiosk.app import build_app
from kiosk.config import load_config
from kiosk.core.planogram import Planogram
from kiosk.core.sale import LineStatus, State
from kiosk.hardware.link_group import LinkGroup
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.emulator_transports import Emulator, PtyTransport
from kiosk.sim.shopper import Shopper, TestPaymentSource
from kiosk.sim.vmc_emulator import VmcEmulatedBoard
from kiosk.store import open_store
from tests.support.board_peer import FAST
from tests.support.config import kiosk_config, write_config
from tests.support.store import seed_store

WAIT = 60.0  # generous: CI is a loaded 2-core box
ON_VMC = "TEA-LAGP-50"  # slots 10..12: row 1, board 0
ON_OURS = "TEA-LAGP-250"  # slot 67: row 6, board 1


def _split_planogram(data: Path) -> None:
    """The demo spiral planogram with rows 4..6 moved to board 1 (addresses from 0 again)."""
    s = open_store(data)
    try:
        pg = s.planogram.load()
        slots = [
            dataclasses.replace(slot, board=1, address=slot.address - 30) if slot.row >= 4 else slot
            for slot in pg
        ]
        s.planogram.replace(Planogram.of(pg.version + 1, slots))
    finally:
        s.close()


def test_one_order_sold_from_a_vmc_and_from_our_board(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_store(data)
    _split_planogram(data)
    vmc = VmcEmulatedBoard(BoardModel.spiral(3, 10, stock=5), time_scale=0.05)
    ours = EmulatedBoard(BoardModel.spiral(3, 10, stock=5), address=1, time_scale=0.01)
    vmc_emu = Emulator(vmc, PtyTransport(tmp_path / "vmc"), baud=57600).start()
    our_emu = Emulator(ours, PtyTransport(tmp_path / "board")).start()
    cfg = kiosk_config(port=tmp_path / "unused", data_dir=data)
    cfg["board"] = [  # type: ignore[assignment]  # an array of tables
        {"address": 0, "protocol": "vmc", "port": str(tmp_path / "vmc")},
        {"address": 1, "protocol": "kiosk", "port": str(tmp_path / "board")},
    ]
    config = load_config(write_config(tmp_path / "kiosk.toml", cfg))
    pay = TestPaymentSource()
    app = build_app(config, province_public_key=pay.public_key, link_timing=FAST, tick_s=0.2)
    try:
        assert isinstance(app.link, LinkGroup) and len(app.link.links) == 2
        app.start()
        v = app.controller.wait_view(lambda v: v.mode == "idle" and app.link.online, WAIT)
        assert v is not None, f"never idle with both links online: {app.controller.view()}"
        shopper = Shopper(app.controller, pay, clock=app.clock)
        shopper.fill_cart([ON_VMC, ON_OURS], start=False)
        shopper.checkout()
        v = app.controller.wait_view(lambda v: v.mode == "payment", WAIT)
        assert v is not None and v.payment is not None, app.controller.view()
        order = app.controller.repo.get(v.payment.order_id)
        assert order is not None
        shopper.pay(order)

        def closed(_v: object) -> bool:
            o = app.controller.repo.get(order.order_id)
            return o is not None and o.state not in (State.AWAITING_PAYMENT, State.DISPENSING)

        assert app.controller.wait_view(closed, WAIT) is not None, app.controller.view()
        done = app.controller.repo.get(order.order_id)
        assert done is not None and done.state is State.COMPLETED, done
        assert [ln.status for ln in done.lines] == [LineStatus.DELIVERED] * 2
        pg = app.store.planogram.load()
        by_board = {pg.slots[ln.slot_no].board: pg.slots[ln.slot_no] for ln in done.lines}
        assert set(by_board) == {0, 1}
        # each board's own motor ran once, for its own line (VMC selection = address + 1)
        vmc_runs = [e for e in vmc.log.entries if e["event"] == "motor_run"]
        our_runs = [e for e in ours.log.entries if e["event"] == "motor_run"]
        assert [e["slot"] for e in vmc_runs] == [by_board[0].address]
        assert [e["slot"] for e in our_runs] == [by_board[1].address]
        counters = app.link.counters()
        assert counters["frames_sent"] > 0 and counters["frames_ok"] > 0  # ours and the VMC's

        # one part of the cabinet gone takes the kiosk out of service; back, it sells again
        app.controller.post(ui.BackToIdle())
        vmc_emu.unplug()
        v = app.controller.wait_view(
            lambda v: (
                v.out_of_service is not None and v.out_of_service.reason_key == "board_offline"
            ),
            WAIT,
        )
        assert v is not None, f"the VMC unplugged, still selling: {app.controller.view()}"
        assert not app.link.online
        vmc_emu.replug()
        v = app.controller.wait_view(lambda v: v.mode == "idle" and app.link.online, WAIT)
        assert v is not None, f"the VMC back, not selling: {app.controller.view()}"
    finally:
        app.close()
        vmc_emu.stop()
        our_emu.stop()
