"""The whole kiosk app (kiosk.app.build_app) in this process against the in-process board
emulator: the `kiosk` / `locker_kiosk` fixtures of tests/unit/conftest.py build it from here.

The store is seeded with the demo catalog and planogram, the emulator runs at time_scale 0.01
behind an ``emu://`` name, the payment source is the test signer, link timing is FAST.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk import contract as ui
from kiosk.app import App, build_app
from kiosk.core.planogram import SlotKind
from kiosk.core.sale import Order, State
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.emulator_transports import Emulator, InProcessTransport
from kiosk.sim.shopper import Shopper, TestPaymentSource
from tests.support.board_peer import FAST
from tests.support.config import write_kiosk_config
from tests.support.store import seed_store

WAIT = 15.0
MULTI = "DRY-LQFS-500"  # slots 48, 49, 50
SINGLE = "TEA-LAGP-250"  # slot 67 only
OTHER = "DRY-LQZM-250"

_names = itertools.count()


def emulator_name() -> str:
    """A fresh ``emu://`` name for an in-process emulator."""
    return f"ctl-{next(_names)}"


@dataclass
class Kiosk:
    app: App
    emu: Emulator
    board: EmulatedBoard
    pay: TestPaymentSource
    levels0: dict[int, int]

    @property
    def c(self):  # type: ignore[no-untyped-def]
        return self.app.controller

    def wait(self, pred: Callable[[ui.ViewState], bool], timeout: float = WAIT) -> ui.ViewState:
        v = self.c.wait_view(pred, timeout)
        assert v is not None, f"view never matched; last: {self.c.view()}"
        return v

    @property
    def shopper(self) -> Shopper:
        """The one scripted shopper (kiosk.sim.shopper), paying with `pay`."""
        return Shopper(self.app.controller, self.pay, clock=self.app.clock)

    def checkout(self, *products: str) -> Order:
        self.wait(lambda v: v.mode == "idle")
        self.shopper.fill_cart(products, start=False)
        self.shopper.checkout()
        v = self.wait(lambda v: v.mode == "payment")
        assert v.payment is not None
        order = self.c.repo.get(v.payment.order_id)
        assert order is not None
        return order

    def pay_for(self, order: Order) -> None:
        self.shopper.pay(order)

    def closed(self, order_id: str) -> Order:
        def done(v: ui.ViewState) -> bool:
            o = self.c.repo.get(order_id)
            return o is not None and o.state not in (
                State.AWAITING_PAYMENT,
                State.DISPENSING,
                State.SUSPENDED,
            )

        self.wait(done)
        o = self.c.repo.get(order_id)
        assert o is not None
        return o

    def runs(self) -> list[dict[str, object]]:
        return [e for e in self.board.log.entries if e["event"] == "motor_run"]


def start_app(
    tmp_path: Path, name: str, **sections: Mapping[str, Any]
) -> tuple[App, Emulator, TestPaymentSource]:
    """A 6x10 spiral emulator named ``name`` and a started app on the store in
    ``tmp_path / "data"`` (seed it first); ``sections`` go into the config."""
    board = EmulatedBoard(BoardModel.spiral(6, 10, stock=5), time_scale=0.01)
    emu = Emulator(board, InProcessTransport(name)).start()
    pay = TestPaymentSource()
    cfg = write_kiosk_config(
        tmp_path / "kiosk.toml", f"emu://{name}", tmp_path / "data", **sections
    )
    app = build_app(cfg, province_public_key=pay.public_key, link_timing=FAST, tick_s=0.2)
    app.start()
    return app, emu, pay


def running_kiosk(tmp_path: Path, kind: SlotKind) -> Iterator[Kiosk]:
    """Seeded store + emulator + started app (a fixture body: yields the Kiosk, then closes)."""
    levels = seed_store(tmp_path / "data", kind)
    name = emulator_name()
    model = BoardModel.spiral(6, 10, stock=5) if kind is SlotKind.SPIRAL else BoardModel.locker()
    board = EmulatedBoard(model, time_scale=0.01)
    emu = Emulator(board, InProcessTransport(name)).start()
    pay = TestPaymentSource()
    hardware = {"cabinet": "locker", "default_capacity": 1} if kind is SlotKind.LOCKER else {}
    cfg = write_kiosk_config(
        tmp_path / "kiosk.toml", f"emu://{name}", tmp_path / "data", hardware=hardware
    )
    app = build_app(cfg, province_public_key=pay.public_key, link_timing=FAST, tick_s=0.2)
    app.start()
    try:
        yield Kiosk(app, emu, board, pay, levels)
    finally:
        app.close()
        emu.stop()
