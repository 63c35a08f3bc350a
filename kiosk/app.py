"""Composition root: builds the kiosk from its config, starts its threads, shuts them down.

Owns: the wiring (store -> outbox -> serial link -> boards/cabinet -> controller -> UI or a
headless script) and the test payment source. Decides nothing about sales (the controller and
the core do) and never reads a secret it does not hand straight to the component that needs it.
The test payment source is TEST ONLY: it signs confirmations with a throwaway key that the kiosk
is then told to trust; a field config never uses it (`--test-payments` is refused without it).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.clock import Clock, SystemClock
from kiosk.config import KioskConfig
from kiosk.controller import Controller
from kiosk.core.payment import PaymentConfirmation, sign_confirmation
from kiosk.core.planogram import Planogram
from kiosk.hardware.board import BoardDriver, Cabinet, SerialBoard
from kiosk.hardware.link import LinkTiming, SerialLink
from kiosk.store import Store, open_store
from kiosk.sync.outbox import Outbox
from kiosk.sync.topics import Topics
from kiosk.ui import model as ui

__all__ = [
    "App",
    "TestPaymentSource",
    "build_app",
    "build_cabinet",
    "load_device_secret",
    "run",
    "script_buy3",
]

Say = Callable[[str], None]


class TestPaymentSource:
    """TEST ONLY: a stand-in province that signs payment confirmations with a throwaway key."""

    __test__ = False  # not a pytest class

    def __init__(self, private_key: bytes | None = None) -> None:
        key = (
            Ed25519PrivateKey.from_private_bytes(private_key)
            if private_key is not None
            else Ed25519PrivateKey.generate()
        )
        self._private = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._n = 0

    def confirm(
        self, kiosk_id: str, order_id: str, amount_fen: int, now: float, method: str = "wechat"
    ) -> PaymentConfirmation:
        self._n += 1
        c = PaymentConfirmation(
            kiosk_id=kiosk_id,
            order_id=order_id,
            amount_fen=amount_fen,
            method=method,
            provider_ref=f"test-{order_id}-{self._n}",
            paid_at=int(now),
            event_id=uuid.uuid4().hex,
        )
        return sign_confirmation(self._private, c)


def load_device_secret(config: KioskConfig) -> bytes:
    """The device secret: the file's bytes exactly as stored (see docs/payments.md)."""
    path = config.payments.device_secret_file
    if path is None:
        raise ValueError("payments.device_secret_file is not set")
    return Path(path).read_bytes()


def build_cabinet(
    config: KioskConfig,
    planogram: Planogram,
    *,
    timing: LinkTiming | None = None,
    clock: Clock | None = None,
) -> tuple[SerialLink, Cabinet]:
    """The serial link and a Cabinet that speaks planogram slot numbers."""
    hw = config.hardware
    addresses = tuple(sorted(set(hw.boards) | {s.board for s in planogram}))
    link = SerialLink(hw.port, hw.baud, addresses=addresses, timing=timing, clock=clock)
    boards: dict[int, BoardDriver] = {a: SerialBoard(link, a, clock=clock) for a in addresses}
    slot_map = {s.slot_no: (s.board, s.address) for s in planogram}
    return link, Cabinet(boards, slot_map)


@dataclass
class App:
    config: KioskConfig
    store: Store
    link: SerialLink
    board: Cabinet
    outbox: Outbox
    controller: Controller
    clock: Clock

    def start(self) -> None:
        self.link.add_state_listener(
            lambda online, reason: self.controller.board_state_changed(online, reason)
        )
        self.link.start()
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
        self.link.close()
        self.store.close()


def build_app(
    config: KioskConfig,
    *,
    province_public_key: bytes | None = None,
    clock: Clock | None = None,
    link_timing: LinkTiming | None = None,
    publish_view: Callable[[ui.ViewState], None] | None = None,
    **controller_options: Any,
) -> App:
    """Open the store and wire everything (nothing started yet; call `App.start()`).
    `controller_options` go to `Controller` (timings such as tick_s, start_grace_s)."""
    clock = clock or SystemClock()
    store = open_store(config.store.data_dir, clock)
    try:
        store.counters.next_value("boot")
        if province_public_key is None and config.sync.province_public_key is not None:
            from kiosk.sync.signing import load_public_key_pem

            province_public_key = load_public_key_pem(config.sync.province_public_key)
        outbox = Outbox(store, Topics(config.identity.kiosk_id), clock)
        link, cabinet = build_cabinet(
            config, store.planogram.load(), timing=link_timing, clock=clock
        )
        controller = Controller(
            store,
            cabinet,
            config,
            clock,
            load_device_secret(config),
            province_public_key,
            outbox,
            publish_view,
            **controller_options,
        )
    except BaseException:
        store.close()
        raise
    return App(config, store, link, cabinet, outbox, controller, clock)


# --- the headless shopper -------------------------------------------------------------------


def _describe(v: ui.ViewState) -> str:
    if v.mode == "payment" and v.payment is not None:
        return f"payment: order {v.payment.order_id}, {v.payment.amount_fen} fen"
    if v.mode == "dispensing" and v.dispensing is not None:
        return "dispensing: " + ", ".join(
            f"{i.product_id}@{i.slot_no}={i.status}" for i in v.dispensing.items
        )
    if v.mode == "done" and v.done is not None:
        return f"done: order {v.done.order_id}, paid {v.done.paid_fen} fen"
    if v.mode == "problem" and v.problem is not None:
        return (
            f"problem: {v.problem.message_key}, refund {v.problem.refund_fen} fen "
            f"via {v.problem.refund_channel} (order {v.problem.order_id})"
        )
    if v.mode == "out_of_service" and v.out_of_service is not None:
        return f"out of service: {v.out_of_service.reason_key}"
    return f"{v.mode}: cart {v.cart_count} items, {v.cart_total_fen} fen"


def _changed(seq: int) -> Callable[[ui.ViewState], bool]:
    return lambda v: v.seq != seq


def script_buy3(
    controller: Controller,
    payments: TestPaymentSource | None,
    say: Say,
    *,
    timeout: float = 120.0,
    clock: Clock | None = None,
) -> int:
    """A scripted shopper: buy three items and pay with the test payment source.

    Resumable: if the store already holds an order, it does not start another one; it pays an
    order still waiting for payment and waits until every order is closed (after a crash).
    Returns 0 when the last order closed, 1 otherwise.
    """
    clock = clock or SystemClock()
    kiosk_id = controller.kiosk_id
    orders = controller.repo.all()
    if not orders:
        v = controller.wait_view(lambda v: v.mode == "idle", timeout)
        if v is None:
            say(f"kiosk not ready: {_describe(controller.view())}")
            return 1
        say(_describe(v))
        picks = [p.product.product_id for p in v.products if p.stock_left > 0]
        if not picks:
            say("nothing to sell")
            return 1
        wanted = [picks[0], picks[0], picks[1 % len(picks)]]
        controller.post(ui.StartShopping())
        for pid in wanted:
            controller.post(ui.AddToCart(pid))
            say(f"add {pid}")
        v = controller.wait_view(lambda v: v.cart_count == 3, 10)
        if v is None:
            say(f"cart refused: {controller.view().service.last_result}")
            return 1
        say(_describe(v))
        controller.post(ui.Checkout())
    v = controller.wait_view(lambda v: v.mode != "shopping", timeout)
    for order in controller.repo.unfinished():
        if order.state.value == "awaiting_payment":
            if payments is None:
                say(f"order {order.order_id} waits for payment; no test payment source")
                return 1
            v = controller.wait_view(lambda v: v.mode == "payment", timeout)
            if v is not None:
                say(_describe(v))
            c = payments.confirm(kiosk_id, order.order_id, order.total_fen, clock.time())
            say(f"pay {order.order_id}: {order.total_fen} fen ({c.provider_ref})")
            controller.submit_confirmation(c)
    last = ""
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline:
        v = controller.view()
        text = _describe(v)
        if text != last:
            say(text)
            last = text
        if not controller.repo.unfinished() and v.mode not in ("payment", "dispensing"):
            break
        controller.wait_view(_changed(v.seq), 0.5)
    else:
        say("timed out waiting for the order to close")
        return 1
    for order in controller.repo.all():
        refund = sum(r.amount_fen for r in controller.repo.refunds(order.order_id))
        say(
            f"order {order.order_id}: {order.state.value}, paid {order.paid_fen} fen, "
            f"delivered {order.delivered_fen} fen, refund due {refund} fen"
        )
    problems = controller.repo.verify_ledger()
    say(f"ledger: {len(controller.repo.ledger())} records, {len(problems)} problems")
    controller.post(ui.BackToIdle("finished"))
    return 0 if not problems else 1


def run(
    config: KioskConfig,
    headless: bool,
    payment_source: TestPaymentSource | None = None,
    *,
    script: str | None = None,
    say: Say = print,
    timeout: float = 120.0,
) -> int:
    """`kiosk run`: the kiosk until SIGINT/SIGTERM, or a headless script to its end."""
    app = build_app(
        config,
        province_public_key=payment_source.public_key if payment_source is not None else None,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    app.start()
    try:
        if script == "buy3":
            return script_buy3(app.controller, payment_source, say, timeout=timeout)
        if headless:
            say(f"kiosk {config.identity.kiosk_id} running headless; Ctrl-C stops")
            last = -1
            while not stop.is_set():
                v = app.controller.view()
                if v.seq != last:
                    say(_describe(v))
                    last = v.seq
                app.controller.wait_view(_changed(v.seq), 1.0)
            return 0
        from kiosk.ui.app import run as run_ui

        run_ui(app.controller, config.ui, app.clock, kiosk_mode=config.ui.fullscreen)
        return 0
    finally:
        app.close()
        time.sleep(0)  # let daemon threads notice
