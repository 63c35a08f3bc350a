"""The whole kiosk app with its province link (`build_app(sync=True)`) in this process, against
a real broker: an in-process board emulator, a seeded store, mutual TLS with the given client
certificate, and the shopper's taps as intents. For attack tests that need the kiosk's own
payment checks (offline codes, confirmations) on the network."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kiosk import contract as ui
from kiosk.app import App, build_app
from kiosk.core.sale import Order, State
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard
from kiosk.sim.emulator_transports import Emulator, InProcessTransport
from kiosk.sync.signing import public_key_pem
from tests.support.board_peer import FAST
from tests.support.config import write_kiosk_config
from tests.support.kiosk_app import emulator_name

WAIT = 30.0  # generous: a loaded 2-core machine


def wait_for(cond: Callable[[], object], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


@dataclass(frozen=True)
class KioskIdentity:
    """What registration leaves on the kiosk's disk."""

    cert: Path
    key: Path
    secret: Path


@contextmanager
def live_kiosk(
    directory: Path,
    broker_url: str,
    ca_file: Path,
    ident: KioskIdentity,
    province_public_key: bytes,
    pay_url_base: str = "http://127.0.0.1:9/pay",
) -> Iterator[App]:
    """A started app on the store in `directory`/data (seeded by the caller); closed after."""
    name = emulator_name()
    board = EmulatedBoard(BoardModel.spiral(6, 10, stock=5), time_scale=0.01)
    emu = Emulator(board, InProcessTransport(name)).start()
    pub = directory / "province-public.pem"
    pub.write_bytes(public_key_pem(province_public_key))
    cfg = write_kiosk_config(
        directory / "kiosk.toml",
        f"emu://{name}",
        directory / "data",
        sync={
            "broker_url": broker_url,
            "allow_plaintext": None,
            "ca_file": ca_file,
            "cert_file": ident.cert,
            "key_file": ident.key,
            "province_public_key": pub,
            "keepalive_s": 10,
        },
        payments={"device_secret_file": ident.secret, "pay_url_base": pay_url_base},
    )
    try:
        app = build_app(
            cfg,
            sync=True,
            link_timing=FAST,
            tick_s=0.2,
            sync_options={"client_options": {"backoff_base_s": 0.05, "backoff_cap_s": 0.5}},
        )
        app.start()
        try:
            assert app.sync is not None and app.sync.client.wait_connected(WAIT), "no broker"
            yield app
        finally:
            app.close()
    finally:
        emu.stop()


def checkout_one(app: App) -> ui.PaymentView:
    """From any screen: back to idle, one unit of the first product in stock, checkout; the
    payment screen's view (order id, pay URL, amount)."""
    c = app.controller
    c.post(ui.BackToIdle("finished"))
    assert c.wait_view(lambda v: v.mode == "idle", WAIT) is not None, c.view()
    product = next(p.product.product_id for p in c.view().products if p.stock_left > 0)
    c.post(ui.StartShopping())
    c.post(ui.AddToCart(product))
    assert c.wait_view(lambda v: v.cart_count == 1, WAIT) is not None
    c.post(ui.Checkout())
    v = c.wait_view(lambda v: v.mode == "payment" and v.payment is not None, WAIT)
    assert v is not None and v.payment is not None, c.view()
    return v.payment


def order_of(app: App, order_id: str) -> Order:
    o = app.controller.repo.get(order_id)
    assert o is not None, order_id
    return o


def closed(app: App, order_id: str) -> State:
    """Wait until the order is completed or cancelled; its state."""
    ok = wait_for(lambda: order_of(app, order_id).state in (State.COMPLETED, State.CANCELLED))
    assert ok, order_of(app, order_id)
    return order_of(app, order_id).state
