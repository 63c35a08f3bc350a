"""The published view: a pure function of the controller's state.

Owns: turning a snapshot (`Snapshot`: stock, the session, the order on screen, the out-of-service
reasons, service facts) into the `ViewState` the UI draws, and the order screens (`order_view`);
`Published` holds the last view for readers on other threads.
Never: reads the store, a clock or the board (the shell gathers the snapshot), decides whether
the kiosk is out of service (that is `kiosk.core.service`; the reasons arrive in the snapshot).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import kiosk
from kiosk import contract as ui
from kiosk.core import sale
from kiosk.core.catalog import Catalog
from kiosk.core.payment import Payment, PaymentMethod, pay_url
from kiosk.core.planogram import Planogram, SlotKind
from kiosk.core.session import Session

__all__ = ["OrderScreen", "Published", "Snapshot", "build_view", "order_view", "same_view"]


@dataclass(frozen=True, slots=True)
class OrderScreen:
    """What the order screens need besides the order."""

    now: float
    kiosk_id: str
    service_phone: str
    pay_url_base: str
    secret: bytes
    mono_offset: float  # wall -> monotonic, for the UI's countdown
    province_time: Callable[[float], float]  # the pay URL's expiry is in the province's time
    last_view: sale.View | None  # what the sale machine last asked to show for the order


@dataclass(frozen=True, slots=True)
class Snapshot:
    catalog: Catalog
    planogram: Planogram
    levels: Mapping[int, int]
    available: Mapping[str, int]  # `kiosk.core.service.sellable_units`
    reasons: list[str]
    session: Session
    shown: sale.Order | None
    screen: OrderScreen
    sales_locked: bool
    board_online: bool | None
    queue_depths: Mapping[str, int]
    last_result: str
    pin: ui.PinView = field(default_factory=ui.PinView)


def build_view(s: Snapshot) -> ui.ViewState:
    products = tuple(
        ui.ProductView(s.catalog.products[pid], left) for pid, left in s.available.items()
    )
    prices = s.session.prices
    cart = s.session.cart
    cart_lines = tuple(
        ui.CartLine(
            i.product_id,
            i.qty,
            prices.get(i.product_id, 0),
            prices.get(i.product_id, 0) * i.qty,
        )
        for i in cart.items
    )
    base = ui.ViewState(
        seq=0,
        mode="idle",
        products=products,
        cart=cart_lines,
        max_cart_items=cart.max_units,
        service_phone=s.screen.service_phone,
        service=_service_info(s),
    )
    if s.shown is not None:
        v = order_view(base, s.shown, s.screen)
        if v is not None:
            return v
    if s.reasons:
        return replace(
            base, mode="out_of_service", out_of_service=ui.OutOfServiceView(s.reasons[0])
        )
    return replace(base, mode="shopping" if s.session.shopping or cart.items else "idle")


def order_view(base: ui.ViewState, o: sale.Order, sc: OrderScreen) -> ui.ViewState | None:
    """The screen for the order on screen; None: shopper cancelled / board offline (idle or out
    of service instead)."""
    st = o.state
    if st is sale.State.AWAITING_PAYMENT:
        return replace(base, mode="payment", payment=_payment_view(o, sc))
    if st in (sale.State.DISPENSING, sale.State.SUSPENDED):
        return replace(base, mode="dispensing", dispensing=_dispensing_view(o))
    if st is sale.State.COMPLETED:
        receipt = f"{sc.pay_url_base}?receipt={o.order_id}"
        return replace(base, mode="done", done=ui.DoneView(o.order_id, receipt, o.paid_fen))
    if st in (sale.State.PARTLY_DELIVERED, sale.State.REFUND_DUE):
        return replace(base, mode="problem", problem=_problem_view(o, sc))
    if st is sale.State.CANCELLED and o.cancel_reason is sale.CancelReason.TIMEOUT:
        return replace(
            base, mode="problem", problem=ui.ProblemView("payment_timeout", order_id=o.order_id)
        )
    return None


def _payment_view(o: sale.Order, sc: OrderScreen) -> ui.PaymentView:
    url = pay_url(
        sc.pay_url_base,
        sc.kiosk_id,
        o.order_id,
        o.total_fen,
        sc.province_time(o.expires_at),
        sc.secret,
    )
    lines: dict[str, tuple[int, int]] = {}
    for ln in o.lines:
        q, _ = lines.get(ln.product_id, (0, ln.price_fen))
        lines[ln.product_id] = (q + 1, ln.price_fen)
    return ui.PaymentView(
        order_id=o.order_id,
        pay_url=url,
        amount_fen=o.total_fen,
        lines=tuple(ui.CartLine(p, q, f, q * f) for p, (q, f) in lines.items()),
        expires_at=o.expires_at + sc.mono_offset,
        can_extend=o.extensions < o.rules.max_extensions and sc.now < o.expires_at,
        extensions_left=o.rules.max_extensions - o.extensions,
        offline_code_tries_left=max(0, o.rules.max_code_tries - o.code_tries),
        code_entry_locked=o.code_locked,
        last_code_rejected=sc.last_view in (sale.View.CODE_WRONG, sale.View.CODE_LOCKED),
    )


def _dispensing_view(o: sale.Order) -> ui.DispensingView:
    items = tuple(
        ui.DispenseItem(
            ln.product_id,
            ln.slot_no,
            _item_status(ln.status),
            ln.slot_no if ln.slot_kind is SlotKind.LOCKER else None,
        )
        for ln in o.lines
    )
    k = o.vending_line
    door = None
    if k is not None and o.lines[k].slot_kind is SlotKind.LOCKER:
        door = o.lines[k].slot_no
    return ui.DispensingView(o.order_id, items, door)


def _problem_view(o: sale.Order, sc: OrderScreen) -> ui.ProblemView:
    st = o.state
    key = "partly_delivered" if st is sale.State.PARTLY_DELIVERED else "vend_failed"
    if o.refund_reason is sale.RefundReason.LATE_PAYMENT:
        key = "paid_after_cancel"
    delivered = sum(1 for ln in o.lines if ln.status is sale.LineStatus.DELIVERED)
    failed = len(o.lines) - delivered
    return ui.ProblemView(
        key,
        {
            "phone": sc.service_phone,
            "delivered": delivered,
            "failed": failed,
            "count": failed,
        },
        refund_fen=o.refund_due_fen,
        refund_channel=_channel(o.payment),
        order_id=o.order_id,
    )


def _service_info(s: Snapshot) -> ui.ServiceInfo:
    slots = tuple(
        ui.SlotView(
            slot.slot_no,
            slot.product_id,
            "locker" if slot.kind is SlotKind.LOCKER else "spiral",
            slot.capacity,
            s.levels.get(slot.slot_no, 0),
        )
        for slot in s.planogram
    )
    return ui.ServiceInfo(
        kiosk_id=s.screen.kiosk_id,
        version=kiosk.__version__,
        sales_locked=s.sales_locked,
        queue_depths=dict(s.queue_depths),
        boards=(ui.BoardInfoView(connected=bool(s.board_online)),),
        slots=slots,
        last_result=s.last_result,
        pin=s.pin,
    )


def same_view(a: ui.ViewState, b: ui.ViewState) -> bool:
    return replace(a, seq=0) == replace(b, seq=0)


def _item_status(s: sale.LineStatus) -> ui.DispenseStatus:
    if s is sale.LineStatus.DELIVERED:
        return "delivered"
    if s is sale.LineStatus.VENDING:
        return "vending"
    if s is sale.LineStatus.PENDING:
        return "pending"
    return "failed"


def _channel(p: Payment | None) -> ui.RefundChannel:
    if p is not None and p.method is PaymentMethod.WECHAT:
        return "wechat"
    if p is not None and p.method is PaymentMethod.ALIPAY:
        return "alipay"
    return "original"


class Published:
    """The last published view, safe to read from any thread; only the controller thread
    publishes. A view equal to the last one (but for `seq`) is not published again."""

    def __init__(
        self,
        clock_monotonic: Callable[[], float],
        on_publish: Callable[[ui.ViewState], None] | None,
    ) -> None:
        self._monotonic = clock_monotonic
        self._on_publish = on_publish
        self.notify: Callable[[], None] | None = None  # the UI's wake-up (`set_notify`)
        self._lock = threading.Condition()
        self._seq = 0
        self._view = ui.ViewState(seq=0, mode="out_of_service")

    def get(self) -> ui.ViewState:
        with self._lock:
            return self._view

    def publish(self, view: ui.ViewState) -> None:
        with self._lock:
            if same_view(view, self._view):
                return
            self._seq += 1
            self._view = replace(view, seq=self._seq)
            published = self._view
            self._lock.notify_all()
        if self._on_publish is not None:
            self._on_publish(published)
        if self.notify is not None:
            self.notify()

    def wait(
        self, predicate: Callable[[ui.ViewState], bool], timeout: float
    ) -> ui.ViewState | None:
        """Block until a published view satisfies `predicate` (None on timeout)."""
        deadline = self._monotonic() + timeout
        with self._lock:
            while not predicate(self._view):
                left = deadline - self._monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.2))
            return self._view
