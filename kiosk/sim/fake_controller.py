"""An in-memory controller over the demo data, for tests, screenshots and the UI demo
(`python -m kiosk.sim.ui_demo`). Part of the simulator: the kiosk itself never imports it.

Owns: a toy sale flow (cart -> payment -> dispensing with delays -> done or problem) that honours
the `kiosk.contract` contract. It is not the real controller: no store, no board, no payment
provider, no signatures. `simulate_payment()` stands in for the province's confirmation; time
moves with `pump()` (tests, with a ManualClock) or with `start()` (a thread, for demos).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import kiosk
from kiosk.clock import Clock, ManualClock
from kiosk.contract import (
    AddToCart,
    BackToIdle,
    BoardInfoView,
    CancelOrder,
    CartLine,
    Checkout,
    CheckSlot,
    DispenseItem,
    DispensingView,
    DoneView,
    EnterOfflineCode,
    ExtendPayment,
    Intent,
    LockSales,
    Mode,
    NetworkInfo,
    OpenDoor,
    OutOfServiceView,
    PaymentView,
    PinView,
    ProblemView,
    ProductView,
    Restock,
    ServiceInfo,
    ServiceLogin,
    ServiceResult,
    SetQuantity,
    SlotView,
    StartShopping,
    TestVend,
    ViewState,
)
from kiosk.core.pin import DEMO_PIN, DEMO_PIN_HASH, PinLockout
from kiosk.core.planogram import Planogram, SlotKind
from kiosk.sim.demo_data import demo_catalog, demo_planogram, demo_stock

__all__ = ["DEMO_PIN", "DEMO_PIN_HASH", "FakeController", "demo_view"]

# DEMO_PIN, DEMO_PIN_HASH: kiosk.core.pin's (low iteration count: demo and tests only; real
# hashes come from kiosk-provision, and a field config refuses this one).


class FakeController:
    """Intents are handled at once, under a lock, then `notify` is called."""

    def __init__(
        self,
        clock: Clock,
        *,
        kind: SlotKind = SlotKind.SPIRAL,
        vend_s: float = 1.5,
        payment_window_s: float = 120.0,
        extension_s: float = 60.0,
        max_extensions: int = 2,
        max_cart_items: int = 5,
        offline_code: str = "24681357",
        service_phone: str = "400-000-0000",
        kiosk_id: str = "AH-341524-0001",
    ) -> None:
        self.clock = clock
        self.kind = kind
        self.vend_s = vend_s
        self.payment_window_s = payment_window_s
        self.extension_s = extension_s
        self.max_extensions = max_extensions
        self.max_cart_items = max_cart_items
        self.offline_code = offline_code
        self.service_phone = service_phone
        self.kiosk_id = kiosk_id
        self.province_online: bool | None = True  # the province link, as the view shows it
        self.catalog = demo_catalog()
        self.planogram: Planogram = demo_planogram(kind)
        self.stock: dict[int, int] = demo_stock(self.planogram)
        self.posted: list[Intent] = []
        self.fail_slots: set[int] = set()
        self._lock = threading.RLock()
        self._notify: Callable[[], None] | None = None
        self._seq = 0
        self._mode: Mode = "idle"
        self._cart: dict[str, int] = {}
        self._orders = 0
        self._payment: PaymentView | None = None
        self._dispensing: DispensingView | None = None
        self._next_step_at: float | None = None
        self._done: DoneView | None = None
        self._problem: ProblemView | None = None
        self._oos: OutOfServiceView | None = None
        self._sales_locked = False
        self._last_result = ""
        self._result: ServiceResult | None = None
        self._pin_lock = PinLockout()  # the controller's rule, on the monotonic clock here
        self._pin_attempts = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # set on every state change: the pump thread re-plans
        self._view = self._build()

    # --- Controller protocol -------------------------------------------------------------
    def set_notify(self, notify: Callable[[], None]) -> None:
        self._notify = notify

    def view(self) -> ViewState:
        return self._view

    def post(self, intent: Intent) -> None:
        with self._lock:
            self.posted.append(intent)
            self._handle(intent)
            self._publish()

    # --- test hooks ----------------------------------------------------------------------
    def simulate_payment(self) -> None:
        """The province confirmed payment of the current order."""
        with self._lock:
            if self._mode == "payment":
                self._start_dispensing()
                self._publish()

    def set_province_online(self, online: bool | None) -> None:
        """The province link went up or down (the payment screen explains an offline kiosk)."""
        with self._lock:
            self.province_online = online
            self._publish()

    def set_out_of_service(self, reason_key: str | None) -> None:
        with self._lock:
            self._oos = OutOfServiceView(reason_key) if reason_key else None
            self._mode = "out_of_service" if reason_key else "idle"
            self._publish()

    def pump(self) -> bool:
        """Advance time-driven steps up to now; True if the view changed."""
        with self._lock:
            now = self.clock.monotonic()
            changed = False
            if self._mode == "payment" and self._payment and now >= self._payment.expires_at:
                self._mode = "problem"
                self._problem = ProblemView("payment_timeout", order_id=self._payment.order_id)
                self._payment = None
                changed = True
            while (
                self._mode == "dispensing"
                and self._next_step_at is not None
                and now >= self._next_step_at
            ):
                self._vend_step(self._next_step_at)
                changed = True
            if changed:
                self._publish()
            return changed

    def _due_in(self) -> float | None:
        """Seconds until the next time-driven step (payment expiry, vend step); None: none."""
        with self._lock:
            dues = []
            if self._mode == "payment" and self._payment:
                dues.append(self._payment.expires_at)
            if self._mode == "dispensing" and self._next_step_at is not None:
                dues.append(self._next_step_at)
            return max(0.0, min(dues) - self.clock.monotonic()) if dues else None

    def start(self, interval: float = 0.05) -> None:
        """Pump from a thread (demos with a real clock). The thread sleeps until the next
        time-driven step (at least `interval` apart) or a state change; with nothing pending
        (idle, shopping) it uses no CPU, like the real controller."""

        def run() -> None:
            while not self._stop.is_set():
                self._wake.clear()
                self.pump()
                due = self._due_in()
                self._wake.wait(None if due is None else max(interval, due))

        self._thread = threading.Thread(target=run, name="fake-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    # --- the toy sale flow ---------------------------------------------------------------
    def _stock_of(self, product_id: str) -> int:
        return sum(self.stock.get(s.slot_no, 0) for s in self.planogram.slots_for(product_id))

    def _handle(self, intent: Intent) -> None:
        mode = self._mode
        if isinstance(intent, StartShopping) and mode == "idle":
            self._mode = "shopping"
        elif isinstance(intent, AddToCart) and mode in ("idle", "shopping"):
            self._mode = "shopping"
            pid = intent.product_id
            if (
                pid in self.catalog
                and sum(self._cart.values()) < self.max_cart_items
                and self._cart.get(pid, 0) < self._stock_of(pid)
            ):
                self._cart[pid] = self._cart.get(pid, 0) + 1
        elif isinstance(intent, SetQuantity) and mode == "shopping":
            pid = intent.product_id
            others = sum(q for p, q in self._cart.items() if p != pid)
            qty = max(0, min(intent.qty, self._stock_of(pid), self.max_cart_items - others))
            if qty:
                self._cart[pid] = qty
            else:
                self._cart.pop(pid, None)
        elif isinstance(intent, Checkout) and mode == "shopping" and self._cart:
            self._checkout()
        elif isinstance(intent, CancelOrder) and mode == "payment":
            self._payment = None
            self._mode = "shopping"
        elif isinstance(intent, ExtendPayment) and mode == "payment" and self._payment:
            p = self._payment
            if p.extensions_left > 0:
                left = p.extensions_left - 1
                self._payment = replace(
                    p,
                    expires_at=max(p.expires_at, self.clock.monotonic()) + self.extension_s,
                    extensions_left=left,
                    can_extend=left > 0,
                )
        elif isinstance(intent, EnterOfflineCode) and mode == "payment" and self._payment:
            p = self._payment
            if p.code_entry_locked:
                return
            if intent.code == self.offline_code:
                self._start_dispensing()
            else:
                tries = p.offline_code_tries_left - 1
                self._payment = replace(
                    p,
                    offline_code_tries_left=tries,
                    code_entry_locked=tries <= 0,
                    last_code_rejected=True,
                )
        elif isinstance(intent, BackToIdle) and mode in ("shopping", "done", "problem"):
            self._cart.clear()
            self._done = self._problem = None
            self._mode = "idle"
        elif isinstance(intent, Restock):
            slot = self.planogram.slots.get(intent.slot)
            if slot is not None:
                n = (
                    slot.capacity
                    if intent.count is None
                    else max(0, min(intent.count, slot.capacity))
                )
                self.stock[slot.slot_no] = n
                self._said(f"slot {slot.slot_no}: {n}", "restocked", slot=slot.slot_no, level=n)
        elif isinstance(intent, TestVend):
            if self.stock.get(intent.slot, 0) > 0:
                self.stock[intent.slot] -= 1
                self._said(
                    f"slot {intent.slot}: DELIVERED",
                    "tested",
                    slot=intent.slot,
                    outcome="DELIVERED",
                )
            else:
                self._said(
                    f"slot {intent.slot}: SLOT_EMPTY",
                    "tested",
                    slot=intent.slot,
                    outcome="SLOT_EMPTY",
                )
        elif isinstance(intent, CheckSlot):
            self._said(f"slot {intent.slot}: READY", "checked", slot=intent.slot, outcome="READY")
        elif isinstance(intent, OpenDoor):
            self._said(f"door {intent.slot} opened", "door_opened", slot=intent.slot)
        elif isinstance(intent, LockSales):
            self._sales_locked = intent.locked
            if intent.locked and mode in ("idle", "shopping"):
                self._cart.clear()
                self._mode, self._oos = "out_of_service", OutOfServiceView("sales_locked")
            elif not intent.locked and mode == "out_of_service":
                self._mode, self._oos = "idle", None
            self._said(
                "sales locked" if intent.locked else "sales unlocked",
                "locked" if intent.locked else "unlocked",
            )
        elif isinstance(intent, ServiceLogin):
            self._pin_attempts += 1
            if intent.ok:
                self._pin_lock = self._pin_lock.succeeded()
            elif not intent.locked_out:
                self._pin_lock = self._pin_lock.failed(self.clock.monotonic())
        # ServiceExit / ServiceViewed: recorded in `posted` only

    def _said(self, text: str, key: str, **params: str | int) -> None:
        self._last_result, self._result = text, ServiceResult(key, params)

    def _checkout(self) -> None:
        self._orders += 1
        order_id = f"D{self._orders:06d}"
        lines = tuple(
            CartLine(pid, q, self.catalog[pid].price_fen, self.catalog[pid].price_fen * q)
            for pid, q in self._cart.items()
        )
        amount = sum(line.total_fen for line in lines)
        self._payment = PaymentView(
            order_id=order_id,
            pay_url=f"https://pay.example.invalid/p?k={self.kiosk_id}&o={order_id}&a={amount}",
            amount_fen=amount,
            lines=lines,
            expires_at=self.clock.monotonic() + self.payment_window_s,
            can_extend=self.max_extensions > 0,
            extensions_left=self.max_extensions,
            offline_code_tries_left=3,
            code_entry_locked=False,
        )
        self._mode = "payment"

    def _start_dispensing(self) -> None:
        assert self._payment is not None
        items: list[DispenseItem] = []
        used: dict[int, int] = {}
        for line in self._payment.lines:
            for _ in range(line.qty):
                slot = next(
                    s
                    for s in self.planogram.slots_for(line.product_id)
                    if self.stock.get(s.slot_no, 0) - used.get(s.slot_no, 0) > 0
                )
                used[slot.slot_no] = used.get(slot.slot_no, 0) + 1
                door = slot.slot_no if slot.kind is SlotKind.LOCKER else None
                items.append(DispenseItem(line.product_id, slot.slot_no, "pending", door))
        items[0] = replace(items[0], status="vending")
        self._dispensing = DispensingView(
            self._payment.order_id, tuple(items), open_door=items[0].door
        )
        self._next_step_at = self.clock.monotonic() + self.vend_s
        self._mode = "dispensing"

    def _vend_step(self, at: float) -> None:
        d = self._dispensing
        assert d is not None and self._payment is not None
        items = list(d.items)
        i = next(k for k, it in enumerate(items) if it.status == "vending")
        it = items[i]
        if it.slot_no in self.fail_slots:
            items[i] = replace(it, status="failed")
        else:
            items[i] = replace(it, status="delivered")
            self.stock[it.slot_no] -= 1
        if i + 1 < len(items):
            items[i + 1] = replace(items[i + 1], status="vending")
            self._dispensing = replace(d, items=tuple(items), open_door=items[i + 1].door)
            self._next_step_at = at + self.vend_s
            return
        self._dispensing = replace(d, items=tuple(items), open_door=None)
        self._next_step_at = None
        failed = [x for x in items if x.status == "failed"]
        pay = self._payment
        if not failed:
            self._done = DoneView(
                pay.order_id, f"https://r.example.invalid/{pay.order_id}", pay.amount_fen
            )
            self._mode = "done"
        else:
            refund = sum(self.catalog[x.product_id].price_fen for x in failed)
            delivered = len(items) - len(failed)
            key = "partly_delivered" if delivered else "vend_failed"
            self._problem = ProblemView(
                key,
                {"delivered": delivered, "failed": len(failed), "count": len(failed)},
                refund_fen=refund,
                refund_channel="wechat",
                order_id=pay.order_id,
                failed=tuple(x.product_id for x in failed),
            )
            self._mode = "problem"
        self._payment = None
        self._cart.clear()

    # --- publishing ----------------------------------------------------------------------
    def _build(self) -> ViewState:
        products = tuple(
            ProductView(p, self._stock_of(p.product_id))
            for p in self.catalog
            if self.planogram.slots_for(p.product_id)
        )
        cart = tuple(
            CartLine(pid, q, self.catalog[pid].price_fen, self.catalog[pid].price_fen * q)
            for pid, q in self._cart.items()
        )
        now = self.clock.time()
        service = ServiceInfo(
            kiosk_id=self.kiosk_id,
            version=kiosk.__version__,
            sales_locked=self._sales_locked,
            queue_depths={"critical": 0, "high": 1, "normal": 14, "low": 3},
            last_connection=now - 12,
            last_ack=now - 47,
            boards=(
                BoardInfoView(
                    True,
                    1,
                    "vb-1.4.2",
                    {
                        "frames_sent": 1840,
                        "frames_received": 1838,
                        "retransmits": 3,
                        "crc_errors": 1,
                        "timeouts": 0,
                    },
                ),
            ),
            network=NetworkInfo(
                bool(self.province_online),
                "eth0",
                "192.168.10.23",
                "mqtts://mqtt.example.invalid:8883",
            ),
            slots=tuple(
                SlotView(
                    s.slot_no, s.product_id, s.kind.value, s.capacity, self.stock.get(s.slot_no, 0)
                )
                for s in self.planogram
            ),
            last_result=self._last_result,
            result=self._result,
            pin=self._pin_view(),
        )
        return ViewState(
            seq=self._seq,
            mode=self._mode,
            products=products,
            cart=cart,
            max_cart_items=self.max_cart_items,
            service_phone=self.service_phone,
            payment=self._payment if self._mode == "payment" else None,
            dispensing=self._dispensing if self._mode == "dispensing" else None,
            done=self._done if self._mode == "done" else None,
            problem=self._problem if self._mode == "problem" else None,
            out_of_service=self._oos if self._mode == "out_of_service" else None,
            service=service,
            province_online=self.province_online,
        )

    def _pin_view(self) -> PinView:
        mono, lock = self.clock.monotonic(), self._pin_lock
        return PinView(
            ready=True,
            attempts=self._pin_attempts,
            failures=lock.failures,
            locked_until=lock.locked_until if lock.locked(mono) else None,
            tries_left=lock.tries_left(mono),
        )

    def _publish(self) -> None:
        self._seq += 1
        self._view = self._build()
        self._wake.set()
        if self._notify is not None:
            self._notify()


def demo_view(screen: str, clock: ManualClock | None = None) -> ViewState:
    """A view state that shows `screen` (one of kiosk.ui.app.SCREEN_NAMES) with demo data."""
    clock = clock or ManualClock()
    kind = SlotKind.LOCKER if screen == "dispensing_locker" else SlotKind.SPIRAL
    fc = FakeController(clock, kind=kind)
    if screen in ("attract", "attract_dimmed") or screen.startswith("service_"):
        return fc.view()
    if screen == "out_of_service":
        fc.set_out_of_service("board_offline")
        return fc.view()
    fc.post(StartShopping())
    picks = (
        ["TEA-LAGP-250", "FRT-DSSL-5KG", "NUT-JZHT-GIFT"]
        if kind is SlotKind.LOCKER
        else ["TEA-YXCL-100", "SNK-DSLP-50", "NUT-JZHT-250"]
    )
    for pid in picks:
        fc.post(AddToCart(pid))
    fc.post(AddToCart(picks[1]))
    if screen == "catalog":  # the stock states a tile shows: 仅剩N件 (and 已售罄, listed last)
        shown = [p.product_id for p in fc.catalog if fc.planogram.slots_for(p.product_id)]
        others = [pid for pid in shown if pid not in picks]
        for pid, left in ((others[1], 3), (others[2], 0)):
            slots = fc.planogram.slots_for(pid)
            for k, s in enumerate(slots):
                fc.stock[s.slot_no] = left if k == 0 else 0
        fc._publish()
    if screen in ("catalog", "category_picker", "product", "cart", "idle_prompt"):
        return fc.view()
    fc.post(Checkout())
    if screen in ("payment", "payment_offline", "payment_cancel", "offline_code"):
        if screen in ("payment_offline", "offline_code"):
            fc.set_province_online(False)  # the code is what an offline kiosk asks for
        clock.advance(25.4)
        return fc.view()
    if screen == "problem":
        fc.fail_slots.update(s.slot_no for s in fc.planogram.slots_for(picks[2]))
    fc.simulate_payment()
    if screen in ("dispensing", "dispensing_locker"):
        clock.advance(fc.vend_s * 1.5)
        fc.pump()
        return fc.view()
    clock.advance(fc.vend_s * 10)
    fc.pump()
    return fc.view()
