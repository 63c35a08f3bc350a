"""The order state machine: one sale, from checkout to every line delivered or refunded.

Owns: everything that decides how an order moves — the states, the inputs, the actions, and the
transition table `TRANSITIONS` that names a result for every (state, input type) pair. Like h11's
`_state.py`, every rule that affects a transition lives in this one file.

Pure: no I/O, no clock, no threads, no logging. Time arrives as `now` inside inputs; the shell
(kiosk.controller) carries out the returned actions in order. Illegal inputs raise
`IllegalTransition` (the pair is not allowed) or `InputRejected` (allowed pair, failed guard);
the shell logs them and carries on.

Never: emits Vend/Unlock before a verified payment is in the order; emits a second vend for a
transaction whose outcome is not known as not-delivered (it asks the board with QueryOutcome
instead); emits an action before the Persist of the state that enables it (a Persist, when the
order changed, is always the first action).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from kiosk.core.payment import Payment, PaymentMethod, offline_code_matches
from kiosk.core.planogram import Slot, SlotKind

__all__ = [
    "FINAL_STATES",
    "INPUT_TYPES",
    "MAX_ATTEMPTS",
    "MAX_LINES",
    "TRANSITIONS",
    "Action",
    "Alarm",
    "AlarmKind",
    "BoardWentOffline",
    "CancelReason",
    "CheckoutStarted",
    "ExtendRequested",
    "Illegal",
    "IllegalTransition",
    "Input",
    "InputRejected",
    "Line",
    "LineStatus",
    "OfflineCodeEntered",
    "Order",
    "OutcomeClass",
    "PaymentConfirmed",
    "Persist",
    "QueryOutcome",
    "QueryPaymentStatus",
    "RecordSale",
    "Recovery",
    "RefundDue",
    "RefundReason",
    "ReleaseReservation",
    "Rule",
    "SaleError",
    "SaleRules",
    "ShopperCancel",
    "Show",
    "State",
    "StockDelivered",
    "Tick",
    "Unlock",
    "Vend",
    "VendOutcome",
    "VendReported",
    "View",
    "classify_outcome",
    "make_tx",
    "render_state_diagram",
    "render_transition_table",
    "split_tx",
    "step",
]

# --- states ---------------------------------------------------------------------------------


class State(StrEnum):
    NEW = "new"  # built by cart.checkout, not yet persisted or shown
    AWAITING_PAYMENT = "awaiting_payment"  # QR shown, window running
    DISPENSING = "dispensing"  # paid; exactly one line is VENDING (line k, tx t)
    SUSPENDED = "suspended"  # paid, dispensing, board offline: waits, never resends
    COMPLETED = "completed"  # every line delivered
    PARTLY_DELIVERED = "partly_delivered"  # some delivered, rest refund due
    REFUND_DUE = "refund_due"  # paid, nothing delivered (all lines failed, or paid too late)
    CANCELLED = "cancelled"  # unpaid: shopper, timeout or board offline


# Closed states: no more dispensing. CANCELLED can still become REFUND_DUE (a late payment).
FINAL_STATES = frozenset(
    {State.COMPLETED, State.PARTLY_DELIVERED, State.REFUND_DUE, State.CANCELLED}
)


class LineStatus(StrEnum):
    PENDING = "pending"
    VENDING = "vending"  # a vend with `tx` is committed and (maybe) sent
    DELIVERED = "delivered"
    FAILED = "failed"  # certainly not delivered: refunded
    UNKNOWN = "unknown"  # may or may not have been delivered: refunded + technician alarm


class CancelReason(StrEnum):
    SHOPPER = "shopper"
    TIMEOUT = "timeout"
    BOARD_OFFLINE = "board_offline"


class RefundReason(StrEnum):
    NOT_DELIVERED = "not_delivered"  # some or all lines failed / unknown
    LATE_PAYMENT = "late_payment"  # paid after the order was cancelled
    DOUBLE_PAYMENT = "double_payment"  # a second provider payment for a paid order


class VendOutcome(StrEnum):
    """Board outcomes by their protocol names, plus two verdicts only the kiosk can reach."""

    ACCEPTED = "ACCEPTED"
    IN_PROGRESS = "IN_PROGRESS"
    DELIVERED = "DELIVERED"
    NOTHING_DROPPED = "NOTHING_DROPPED"
    JAMMED = "JAMMED"
    MOTOR_MISSING = "MOTOR_MISSING"
    SLOT_EMPTY = "SLOT_EMPTY"
    DOOR_OPENED_AND_CLOSED = "DOOR_OPENED_AND_CLOSED"
    DOOR_NOT_OPENED = "DOOR_NOT_OPENED"
    DOOR_NOT_CLOSED = "DOOR_NOT_CLOSED"
    BUSY = "BUSY"
    UNKNOWN_TX = "UNKNOWN_TX"  # memory lost: we cannot know
    INVALID_SLOT = "INVALID_SLOT"
    WRONG_SLOT_KIND = "WRONG_SLOT_KIND"
    TX_CONFLICT = "TX_CONFLICT"
    REFUSED_FAULT = "REFUSED_FAULT"
    INTERRUPTED = "INTERRUPTED"
    LOCK_FAILED = "LOCK_FAILED"
    # kiosk verdicts:
    NOT_ACCEPTED = "NOT_ACCEPTED"  # OUTCOME said UNKNOWN_TX and the board's memory proves the
    #                                tx was never accepted (within its window, memory kept)
    NOT_ATTEMPTED = "NOT_ATTEMPTED"  # line given up before any vend (board offline too long)


class OutcomeClass(StrEnum):
    RUNNING = "running"  # not final: wait
    DELIVERED = "delivered"
    RETRY = "retry"  # not executed, slot fine: same slot again, new tx
    FAILED = "failed"  # certainly not delivered: next alternative slot, else refund
    UNKNOWN = "unknown"  # cannot know: refund + technician


_OUTCOME_CLASS: Mapping[VendOutcome, OutcomeClass] = {
    VendOutcome.ACCEPTED: OutcomeClass.RUNNING,
    VendOutcome.IN_PROGRESS: OutcomeClass.RUNNING,
    VendOutcome.DELIVERED: OutcomeClass.DELIVERED,
    VendOutcome.DOOR_OPENED_AND_CLOSED: OutcomeClass.DELIVERED,
    # the shopper opened the door: the item is gone; alarm for the open door
    VendOutcome.DOOR_NOT_CLOSED: OutcomeClass.DELIVERED,
    VendOutcome.BUSY: OutcomeClass.RETRY,
    VendOutcome.NOT_ACCEPTED: OutcomeClass.RETRY,
    VendOutcome.NOTHING_DROPPED: OutcomeClass.FAILED,
    VendOutcome.JAMMED: OutcomeClass.FAILED,
    VendOutcome.MOTOR_MISSING: OutcomeClass.FAILED,
    VendOutcome.SLOT_EMPTY: OutcomeClass.FAILED,
    VendOutcome.DOOR_NOT_OPENED: OutcomeClass.FAILED,
    VendOutcome.LOCK_FAILED: OutcomeClass.FAILED,
    VendOutcome.INVALID_SLOT: OutcomeClass.FAILED,
    VendOutcome.WRONG_SLOT_KIND: OutcomeClass.FAILED,
    VendOutcome.TX_CONFLICT: OutcomeClass.FAILED,
    VendOutcome.REFUSED_FAULT: OutcomeClass.FAILED,
    VendOutcome.NOT_ATTEMPTED: OutcomeClass.FAILED,
    VendOutcome.UNKNOWN_TX: OutcomeClass.UNKNOWN,
    VendOutcome.INTERRUPTED: OutcomeClass.UNKNOWN,
}


def classify_outcome(outcome: VendOutcome) -> OutcomeClass:
    return _OUTCOME_CLASS[outcome]


# --- transaction ids ------------------------------------------------------------------------
#
# tx = order_seq << 8 | line_index << 3 | attempt      (u32, never 0 since order_seq >= 1)
#
# Derived, not allocated: the same pure step that moves line k to VENDING also fixes its tx, so
# the single Persist before the vend commits "line k, slot s, tx t" in one write; there is no
# second counter to keep in step with the orders. It is unique across reboots because order_seq
# is (persisted with the order), and unique within an order because each attempt on a line bumps
# `attempt`. Limits: 2^24 orders per kiosk, 32 lines per order, 8 vend attempts per line.

MAX_LINES = 32
MAX_ATTEMPTS = 8
_ORDER_SEQ_MAX = (1 << 24) - 1


def make_tx(order_seq: int, line_index: int, attempt: int) -> int:
    if not 1 <= order_seq <= _ORDER_SEQ_MAX:
        raise ValueError(f"order_seq must be 1..{_ORDER_SEQ_MAX}, got {order_seq}")
    if not 0 <= line_index < MAX_LINES:
        raise ValueError(f"line_index must be 0..{MAX_LINES - 1}, got {line_index}")
    if not 0 <= attempt < MAX_ATTEMPTS:
        raise ValueError(f"attempt must be 0..{MAX_ATTEMPTS - 1}, got {attempt}")
    return order_seq << 8 | line_index << 3 | attempt


def split_tx(tx: int) -> tuple[int, int, int]:
    """tx -> (order_seq, line_index, attempt)."""
    return tx >> 8, (tx >> 3) & 0x1F, tx & 0x07


# --- the order ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleRules:
    """Timing and limits, frozen into each order at checkout (seconds)."""

    payment_window_s: float = 120.0
    extension_s: float = 60.0
    extend_offer_before_s: float = 20.0  # "need more time?" shown this long before expiry
    max_extensions: int = 10
    payment_query_after_s: float = 60.0  # no confirmation this long -> ask the province
    payment_query_every_s: float = 30.0
    vend_timeout_s: float = 90.0  # no outcome this long -> ask the board (never resend)
    outcome_query_every_s: float = 15.0
    offline_give_up_s: float = 600.0  # board offline this long while dispensing -> refund rest
    max_code_tries: int = 3


@dataclass(frozen=True, slots=True)
class Line:
    """One unit of one product. A cart item of qty 3 is three lines."""

    product_id: str
    name_zh: str
    name_en: str
    certification_no: str
    origin_county_zh: str
    origin_county_en: str
    origin_area_code: str
    price_fen: int  # frozen at checkout
    slot_no: int  # slot of the current / last attempt
    slot_kind: SlotKind
    status: LineStatus = LineStatus.PENDING
    tx: int | None = None  # tx of the current / last attempt
    attempts: int = 0  # vends issued; their txs are make_tx(seq, k, 0..attempts-1)
    tried_slots: tuple[int, ...] = ()
    outcome: VendOutcome | None = None  # last outcome reported for this line


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    kiosk_id: str
    order_seq: int
    lines: tuple[Line, ...]
    rules: SaleRules = field(default_factory=SaleRules)
    state: State = State.NEW
    created_at: float = 0.0  # when the payment QR was first shown (CheckoutStarted input)
    expires_at: float = 0.0
    extensions: int = 0
    extend_offered: bool = False
    last_payment_query_at: float | None = None
    code_tries: int = 0
    payment: Payment | None = None
    cancel_reason: CancelReason | None = None
    refund_due_fen: int = 0  # refund of the primary payment (paid - delivered)
    refund_reason: RefundReason | None = None
    extra_payments: tuple[Payment, ...] = ()  # second payments, each refunded in full
    vend_started_at: float | None = None
    last_outcome_query_at: float | None = None
    suspended_at: float | None = None
    finished_at: float | None = None

    @property
    def total_fen(self) -> int:
        return sum(line.price_fen for line in self.lines)

    @property
    def paid_fen(self) -> int:
        return self.payment.amount_fen if self.payment is not None else 0

    @property
    def delivered_fen(self) -> int:
        return sum(ln.price_fen for ln in self.lines if ln.status is LineStatus.DELIVERED)

    @property
    def code_locked(self) -> bool:
        return self.code_tries >= self.rules.max_code_tries

    @property
    def vending_line(self) -> int | None:
        for k, ln in enumerate(self.lines):
            if ln.status is LineStatus.VENDING:
                return k
        return None


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckoutStarted:
    """The order was committed by the shell: show the payment QR, start the window."""

    now: float


@dataclass(frozen=True, slots=True)
class PaymentConfirmed:
    """A payment verified by `payment.verify_confirmation` (or the status query).

    `withheld`: slots that must not dispense now (chilled goods stopped for temperature since
    checkout, kiosk.core.chilled): their lines fail before any vend and are refunded."""

    payment: Payment
    now: float
    withheld: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class OfflineCodeEntered:
    code: str
    now: float
    secret: bytes = field(repr=False)  # device secret; never logged
    withheld: frozenset[int] = frozenset()  # as PaymentConfirmed.withheld


@dataclass(frozen=True, slots=True)
class ExtendRequested:
    now: float


@dataclass(frozen=True, slots=True)
class ShopperCancel:
    now: float


@dataclass(frozen=True, slots=True)
class VendReported:
    """A final or running outcome for `tx` (VEND_RESULT, TX_REPLY refusal or OUTCOME reply).

    `alternatives`: slots the shell currently knows hold the same product with unreserved stock
    (a fresh snapshot); used only if this outcome fails the line.
    """

    tx: int
    outcome: VendOutcome
    now: float
    alternatives: tuple[Slot, ...] = ()


@dataclass(frozen=True, slots=True)
class BoardWentOffline:
    now: float


@dataclass(frozen=True, slots=True)
class Recovery:
    """The board is reachable again, or the kiosk restarted and reloaded this order."""

    now: float


@dataclass(frozen=True, slots=True)
class Tick:
    now: float


Input = (
    CheckoutStarted
    | PaymentConfirmed
    | OfflineCodeEntered
    | ExtendRequested
    | ShopperCancel
    | VendReported
    | BoardWentOffline
    | Recovery
    | Tick
)
INPUT_TYPES: tuple[type[Input], ...] = (
    CheckoutStarted,
    PaymentConfirmed,
    OfflineCodeEntered,
    ExtendRequested,
    ShopperCancel,
    VendReported,
    BoardWentOffline,
    Recovery,
    Tick,
)

# --- actions --------------------------------------------------------------------------------


class View(StrEnum):
    PAYMENT = "payment"
    EXTEND_OFFER = "extend_offer"
    CODE_WRONG = "code_wrong"
    CODE_LOCKED = "code_locked"
    DISPENSING = "dispensing"
    WAITING_FOR_BOARD = "waiting_for_board"
    COMPLETED = "completed"
    PARTLY_DELIVERED = "partly_delivered"
    REFUND_DUE = "refund_due"
    CANCELLED = "cancelled"


class AlarmKind(StrEnum):
    SLOT_FAULT = "slot_fault"  # jam, motor missing, lock failed, invalid slot / kind
    STOCK_MISMATCH = "stock_mismatch"  # slot empty or nothing dropped: count is wrong
    BOARD_FAULT = "board_fault"
    BOARD_OFFLINE = "board_offline"
    UNKNOWN_OUTCOME = "unknown_outcome"  # a line may have been delivered; refunded anyway
    DOOR_LEFT_OPEN = "door_left_open"
    TX_CONFLICT = "tx_conflict"
    LATE_OUTCOME = "late_outcome"  # an outcome arrived that contradicts a settled line
    DOUBLE_PAYMENT = "double_payment"


@dataclass(frozen=True, slots=True)
class Persist:
    """Commit `order` (fsync) before carrying out any later action of the same step."""

    order: Order


@dataclass(frozen=True, slots=True)
class Vend:
    order_id: str
    line_index: int
    slot_no: int
    tx: int


@dataclass(frozen=True, slots=True)
class Unlock:
    order_id: str
    line_index: int
    slot_no: int
    tx: int


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """Ask the board OUTCOME(tx); feed the answer back as VendReported."""

    order_id: str
    line_index: int
    tx: int


@dataclass(frozen=True, slots=True)
class QueryPaymentStatus:
    order_id: str


@dataclass(frozen=True, slots=True)
class StockDelivered:
    """One item left `slot_no`: apply StockChange(slot, -1, SALE, ref=tx)."""

    order_id: str
    line_index: int
    slot_no: int
    tx: int


@dataclass(frozen=True, slots=True)
class ReleaseReservation:
    """Drop every stock reservation held by the order (idempotent)."""

    order_id: str


@dataclass(frozen=True, slots=True)
class Show:
    view: View
    order: Order


@dataclass(frozen=True, slots=True)
class RecordSale:
    """Turn the closed, paid order into a ledger record and queue it (idempotent by order id)."""

    order: Order


@dataclass(frozen=True, slots=True)
class RefundDue:
    """Ask the province for a refund (idempotent by (order_id, provider_ref, reason))."""

    order_id: str
    amount_fen: int
    reason: RefundReason
    provider_ref: str


@dataclass(frozen=True, slots=True)
class Alarm:
    kind: AlarmKind
    order_id: str
    detail: str
    slot_no: int | None = None


Action = (
    Persist
    | Vend
    | Unlock
    | QueryOutcome
    | QueryPaymentStatus
    | StockDelivered
    | ReleaseReservation
    | Show
    | RecordSale
    | RefundDue
    | Alarm
)

# --- errors ---------------------------------------------------------------------------------


class SaleError(Exception):
    """Base of the sale machine's named errors. The order is unchanged when one is raised."""

    def __init__(self, state: State, inp: Input, reason: str) -> None:
        self.state = state
        self.input = inp
        self.reason = reason
        super().__init__(f"{type(inp).__name__} in state {state.value}: {reason}")


class IllegalTransition(SaleError):
    """The (state, input type) pair is marked illegal in the table."""


class InputRejected(SaleError):
    """The pair is legal but this input fails a guard (wrong tx, limit reached, ...)."""


# --- handlers -------------------------------------------------------------------------------

Result = tuple[Order, list[Action]]
Handler = Callable[[Order, Input], Result]


def _persisted(before: Order, after: Order, actions: list[Action]) -> Result:
    """Prepend Persist(after) when the order changed: commit before the actions it enables."""
    if after != before:
        return after, [Persist(after), *actions]
    return after, actions


def _vend_action(order: Order, k: int) -> Action:
    ln = order.lines[k]
    assert ln.tx is not None
    if ln.slot_kind is SlotKind.LOCKER:
        return Unlock(order.order_id, k, ln.slot_no, ln.tx)
    return Vend(order.order_id, k, ln.slot_no, ln.tx)


def _set_line(order: Order, k: int, line: Line) -> Order:
    lines = list(order.lines)
    lines[k] = line
    return replace(order, lines=tuple(lines))


def _start_attempt(order: Order, k: int, slot_no: int, kind: SlotKind, now: float) -> Result:
    ln = order.lines[k]
    tx = make_tx(order.order_seq, k, ln.attempts)
    tried = ln.tried_slots if slot_no in ln.tried_slots else (*ln.tried_slots, slot_no)
    ln = replace(
        ln,
        status=LineStatus.VENDING,
        tx=tx,
        attempts=ln.attempts + 1,
        tried_slots=tried,
        slot_no=slot_no,
        slot_kind=kind,
    )
    new = replace(
        _set_line(order, k, ln),
        state=State.DISPENSING,
        vend_started_at=now,
        last_outcome_query_at=None,
        suspended_at=None,
    )
    return new, [_vend_action(new, k), Show(View.DISPENSING, new)]


def _advance(order: Order, now: float) -> Result:
    """Start the next pending line, or close the order when none is left."""
    for k, ln in enumerate(order.lines):
        if ln.status is LineStatus.PENDING:
            return _start_attempt(order, k, ln.slot_no, ln.slot_kind, now)
    return _finish(order, now)


def _finish(order: Order, now: float) -> Result:
    assert order.payment is not None
    delivered = order.delivered_fen
    refund = order.payment.amount_fen - delivered
    if refund == 0:
        state, view = State.COMPLETED, View.COMPLETED
    elif delivered == 0:
        state, view = State.REFUND_DUE, View.REFUND_DUE
    else:
        state, view = State.PARTLY_DELIVERED, View.PARTLY_DELIVERED
    new = replace(
        order,
        state=state,
        refund_due_fen=refund,
        refund_reason=RefundReason.NOT_DELIVERED if refund else None,
        finished_at=now,
        vend_started_at=None,
        last_outcome_query_at=None,
        suspended_at=None,
    )
    actions: list[Action] = [RecordSale(new)]
    if refund:
        actions.append(
            RefundDue(new.order_id, refund, RefundReason.NOT_DELIVERED, order.payment.provider_ref)
        )
    actions += [ReleaseReservation(new.order_id), Show(view, new)]
    return new, actions


def _pay(order: Order, inp: Input, payment: Payment, now: float) -> Result:
    if payment.amount_fen != order.total_fen:
        raise InputRejected(
            order.state, inp, f"paid {payment.amount_fen} fen, order is {order.total_fen} fen"
        )
    paid = replace(order, state=State.DISPENSING, payment=payment)
    withheld = inp.withheld if isinstance(inp, PaymentConfirmed | OfflineCodeEntered) else ()
    for k, ln in enumerate(paid.lines):
        if ln.status is LineStatus.PENDING and ln.slot_no in withheld:
            # stopped for temperature between checkout and payment: never dispensed, refunded
            failed = replace(ln, status=LineStatus.FAILED, outcome=VendOutcome.NOT_ATTEMPTED)
            paid = _set_line(paid, k, failed)
    return _advance(paid, now)


def _cancel(order: Order, reason: CancelReason, now: float) -> Result:
    new = replace(order, state=State.CANCELLED, cancel_reason=reason, finished_at=now)
    actions: list[Action] = [ReleaseReservation(order.order_id), Show(View.CANCELLED, new)]
    if order.state is State.AWAITING_PAYMENT:
        # one last question: a payment whose notice got lost becomes a refund record
        actions.append(QueryPaymentStatus(order.order_id))
    return new, actions


def _noop(order: Order, inp: Input) -> Result:
    return order, []


# NEW


def _new_checkout(order: Order, inp: Input) -> Result:
    assert isinstance(inp, CheckoutStarted)
    if not order.lines:
        raise InputRejected(order.state, inp, "an order needs at least one line")
    new = replace(
        order,
        state=State.AWAITING_PAYMENT,
        created_at=inp.now,
        expires_at=inp.now + order.rules.payment_window_s,
    )
    return _persisted(order, new, [Show(View.PAYMENT, new)])


def _cancel_input(order: Order, inp: Input) -> Result:
    assert isinstance(inp, ShopperCancel | BoardWentOffline)
    reason = CancelReason.SHOPPER if isinstance(inp, ShopperCancel) else CancelReason.BOARD_OFFLINE
    return _persisted(order, *_cancel(order, reason, inp.now))


# AWAITING_PAYMENT


def _awaiting_paid(order: Order, inp: Input) -> Result:
    assert isinstance(inp, PaymentConfirmed)
    return _persisted(order, *_pay(order, inp, inp.payment, inp.now))


def _awaiting_code(order: Order, inp: Input) -> Result:
    assert isinstance(inp, OfflineCodeEntered)
    if order.code_locked:
        raise InputRejected(order.state, inp, "code entry locked after 3 wrong codes")
    if inp.now >= order.expires_at:
        raise InputRejected(order.state, inp, "payment window is over")
    if offline_code_matches(inp.secret, order.order_id, order.total_fen, inp.code):
        payment = Payment(PaymentMethod.OFFLINE_CODE, "", order.total_fen, inp.now)
        return _persisted(order, *_pay(order, inp, payment, inp.now))
    # persisted, so a reboot does not hand out fresh tries
    new = replace(order, code_tries=order.code_tries + 1)
    view = View.CODE_LOCKED if new.code_locked else View.CODE_WRONG
    return _persisted(order, new, [Show(view, new)])


def _awaiting_extend(order: Order, inp: Input) -> Result:
    assert isinstance(inp, ExtendRequested)
    if order.extensions >= order.rules.max_extensions:
        raise InputRejected(order.state, inp, f"at most {order.rules.max_extensions} extensions")
    if inp.now >= order.expires_at:
        raise InputRejected(order.state, inp, "payment window is over")
    new = replace(
        order,
        expires_at=order.expires_at + order.rules.extension_s,
        extensions=order.extensions + 1,
        extend_offered=False,
    )
    return _persisted(order, new, [Show(View.PAYMENT, new)])


def _awaiting_tick(order: Order, inp: Input) -> Result:
    assert isinstance(inp, Tick | Recovery)
    now, rules = inp.now, order.rules
    if now >= order.expires_at:
        return _persisted(order, *_cancel(order, CancelReason.TIMEOUT, now))
    new = order
    views: list[View] = [View.PAYMENT] if isinstance(inp, Recovery) else []
    queries: list[Action] = []
    if (
        not new.extend_offered
        and new.extensions < rules.max_extensions
        and now >= new.expires_at - rules.extend_offer_before_s
    ):
        new = replace(new, extend_offered=True)
        views.append(View.EXTEND_OFFER)
    last = new.last_payment_query_at
    if isinstance(inp, Recovery) or (
        now - new.created_at >= rules.payment_query_after_s
        and (last is None or now - last >= rules.payment_query_every_s)
    ):
        new = replace(new, last_payment_query_at=now)
        queries.append(QueryPaymentStatus(new.order_id))
    return _persisted(order, new, [*(Show(v, new) for v in views), *queries])


# DISPENSING / SUSPENDED


def _late_report(order: Order, inp: VendReported) -> Result:
    """A report for a tx that is not the running one: duplicate, stale, or foreign."""
    seq, k, attempt = split_tx(inp.tx)
    if seq != order.order_seq or k >= len(order.lines) or attempt >= order.lines[k].attempts:
        raise InputRejected(order.state, inp, f"tx {inp.tx} is not a vend of this order")
    ln = order.lines[k]
    cls = classify_outcome(inp.outcome)
    if cls is OutcomeClass.DELIVERED and ln.status is not LineStatus.DELIVERED:
        detail = f"line {k} tx {inp.tx} reported {inp.outcome.value} after it was settled"
        return order, [Alarm(AlarmKind.LATE_OUTCOME, order.order_id, detail, ln.slot_no)]
    return order, []  # duplicate or no news


def _failure_alarm(order: Order, k: int, outcome: VendOutcome, slot_no: int) -> Alarm | None:
    kind = {
        VendOutcome.JAMMED: AlarmKind.SLOT_FAULT,
        VendOutcome.MOTOR_MISSING: AlarmKind.SLOT_FAULT,
        VendOutcome.LOCK_FAILED: AlarmKind.SLOT_FAULT,
        VendOutcome.INVALID_SLOT: AlarmKind.SLOT_FAULT,
        VendOutcome.WRONG_SLOT_KIND: AlarmKind.SLOT_FAULT,
        VendOutcome.SLOT_EMPTY: AlarmKind.STOCK_MISMATCH,
        VendOutcome.NOTHING_DROPPED: AlarmKind.STOCK_MISMATCH,
        VendOutcome.REFUSED_FAULT: AlarmKind.BOARD_FAULT,
        VendOutcome.TX_CONFLICT: AlarmKind.TX_CONFLICT,
    }.get(outcome)
    if kind is None:
        return None
    return Alarm(kind, order.order_id, f"line {k}: {outcome.value}", slot_no)


def _dispensing_report(order: Order, inp: Input) -> Result:
    assert isinstance(inp, VendReported)
    k = order.vending_line
    if k is None or order.lines[k].tx != inp.tx:
        return _late_report(order, inp)
    ln = order.lines[k]
    cls = classify_outcome(inp.outcome)
    if cls is OutcomeClass.RUNNING:
        return order, []
    cur = replace(order, state=State.DISPENSING, suspended_at=None)
    actions: list[Action] = []
    assert ln.tx is not None
    if cls is OutcomeClass.DELIVERED:
        cur = _set_line(cur, k, replace(ln, status=LineStatus.DELIVERED, outcome=inp.outcome))
        actions.append(StockDelivered(order.order_id, k, ln.slot_no, ln.tx))
        if inp.outcome is VendOutcome.DOOR_NOT_CLOSED:
            actions.append(Alarm(AlarmKind.DOOR_LEFT_OPEN, order.order_id, f"line {k}", ln.slot_no))
    elif cls is OutcomeClass.UNKNOWN:
        cur = _set_line(cur, k, replace(ln, status=LineStatus.UNKNOWN, outcome=inp.outcome))
        detail = f"line {k} tx {ln.tx}: {inp.outcome.value}; refunded, check the slot"
        actions.append(Alarm(AlarmKind.UNKNOWN_OUTCOME, order.order_id, detail, ln.slot_no))
    else:
        alarm = _failure_alarm(order, k, inp.outcome, ln.slot_no)
        if alarm is not None:
            actions.append(alarm)
        ln = replace(ln, outcome=inp.outcome)
        cur = _set_line(cur, k, ln)
        if ln.attempts < MAX_ATTEMPTS:
            if cls is OutcomeClass.RETRY:
                cur, more = _start_attempt(cur, k, ln.slot_no, ln.slot_kind, inp.now)
                return _persisted(order, cur, actions + more)
            for alt in inp.alternatives:
                if alt.product_id == ln.product_id and alt.slot_no not in ln.tried_slots:
                    cur, more = _start_attempt(cur, k, alt.slot_no, alt.kind, inp.now)
                    return _persisted(order, cur, actions + more)
        cur = _set_line(cur, k, replace(ln, status=LineStatus.FAILED))
    cur, more = _advance(cur, inp.now)
    return _persisted(order, cur, actions + more)


def _dispensing_tick(order: Order, inp: Input) -> Result:
    assert isinstance(inp, Tick)
    k = order.vending_line
    if k is None or order.vend_started_at is None:
        return order, []
    rules, last = order.rules, order.last_outcome_query_at
    if inp.now - order.vend_started_at >= rules.vend_timeout_s and (
        last is None or inp.now - last >= rules.outcome_query_every_s
    ):
        new = replace(order, last_outcome_query_at=inp.now)
        tx = order.lines[k].tx
        assert tx is not None
        return _persisted(order, new, [QueryOutcome(order.order_id, k, tx)])
    return order, []


def _dispensing_offline(order: Order, inp: Input) -> Result:
    assert isinstance(inp, BoardWentOffline)
    new = replace(order, state=State.SUSPENDED, suspended_at=inp.now)
    alarm = Alarm(AlarmKind.BOARD_OFFLINE, order.order_id, "board offline while dispensing")
    return _persisted(order, new, [alarm, Show(View.WAITING_FOR_BOARD, new)])


def _dispensing_recovery(order: Order, inp: Input) -> Result:
    """After a reboot or a link outage: ask the board what became of the running tx."""
    assert isinstance(inp, Recovery)
    k = order.vending_line
    if k is None:  # defensive: a DISPENSING order always has a vending line
        return _persisted(order, *_advance(order, inp.now))
    tx = order.lines[k].tx
    assert tx is not None
    new = replace(order, state=State.DISPENSING, suspended_at=None, last_outcome_query_at=inp.now)
    return _persisted(order, new, [QueryOutcome(order.order_id, k, tx), Show(View.DISPENSING, new)])


def _suspended_tick(order: Order, inp: Input) -> Result:
    """Offline too long: the running line becomes UNKNOWN, untried lines FAILED; refund them."""
    assert isinstance(inp, Tick)
    if order.suspended_at is None or inp.now - order.suspended_at < order.rules.offline_give_up_s:
        return order, []
    cur = order
    actions: list[Action] = []
    for k, ln in enumerate(order.lines):
        if ln.status is LineStatus.VENDING:
            cur = _set_line(cur, k, replace(ln, status=LineStatus.UNKNOWN))
            detail = f"line {k} tx {ln.tx}: board offline, outcome unknown; refunded"
            actions.append(Alarm(AlarmKind.UNKNOWN_OUTCOME, order.order_id, detail, ln.slot_no))
        elif ln.status is LineStatus.PENDING:
            cur = _set_line(
                cur, k, replace(ln, status=LineStatus.FAILED, outcome=VendOutcome.NOT_ATTEMPTED)
            )
    cur, more = _finish(cur, inp.now)
    return _persisted(order, cur, actions + more)


def _paid_again(order: Order, inp: Input) -> Result:
    """A confirmation for an order that already has a payment."""
    assert isinstance(inp, PaymentConfirmed)
    p, q = order.payment, inp.payment
    assert p is not None
    refs = {p.provider_ref} | {e.provider_ref for e in order.extra_payments}
    if q.provider_ref in refs:
        return order, []  # provider retry / duplicate notice
    if (
        p.method is PaymentMethod.OFFLINE_CODE
        and not p.provider_ref
        and q.amount_fen == p.amount_fen
    ):
        # the online notice of the payment the offline code stood for: fill in its reference
        new = replace(order, payment=replace(p, provider_ref=q.provider_ref))
        return _persisted(order, new, [])
    new = replace(order, extra_payments=(*order.extra_payments, q))
    detail = f"second payment {q.provider_ref} ({q.amount_fen} fen); refunded"
    return _persisted(
        order,
        new,
        [
            RefundDue(order.order_id, q.amount_fen, RefundReason.DOUBLE_PAYMENT, q.provider_ref),
            Alarm(AlarmKind.DOUBLE_PAYMENT, order.order_id, detail),
        ],
    )


# closed states


def _cancelled_paid(order: Order, inp: Input) -> Result:
    """Paid after the order was cancelled: a refund record for the full amount, no dispense."""
    assert isinstance(inp, PaymentConfirmed)
    q = inp.payment
    if q.amount_fen != order.total_fen:
        raise InputRejected(
            order.state, inp, f"paid {q.amount_fen} fen, order is {order.total_fen} fen"
        )
    lines = tuple(
        replace(ln, status=LineStatus.FAILED, outcome=VendOutcome.NOT_ATTEMPTED)
        for ln in order.lines
    )
    new = replace(
        order,
        lines=lines,
        state=State.REFUND_DUE,
        payment=q,
        refund_due_fen=q.amount_fen,
        refund_reason=RefundReason.LATE_PAYMENT,
        finished_at=inp.now,
    )
    actions: list[Action] = [
        RecordSale(new),
        RefundDue(order.order_id, q.amount_fen, RefundReason.LATE_PAYMENT, q.provider_ref),
        Show(View.REFUND_DUE, new),
    ]
    return _persisted(order, new, actions)


def _closed_recovery(order: Order, inp: Input) -> Result:
    """Re-emit the idempotent follow-ups in case the shell died between Persist and them."""
    actions: list[Action] = []
    if order.payment is not None:
        actions.append(RecordSale(order))
        if order.refund_due_fen and order.refund_reason is not None:
            actions.append(
                RefundDue(
                    order.order_id,
                    order.refund_due_fen,
                    order.refund_reason,
                    order.payment.provider_ref,
                )
            )
    actions += [
        RefundDue(order.order_id, e.amount_fen, RefundReason.DOUBLE_PAYMENT, e.provider_ref)
        for e in order.extra_payments
    ]
    actions.append(ReleaseReservation(order.order_id))
    return order, actions


def _closed_report(order: Order, inp: Input) -> Result:
    assert isinstance(inp, VendReported)
    if order.payment is None:
        raise InputRejected(order.state, inp, "no vend was ever started for this order")
    return _late_report(order, inp)


# --- the transition table -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    handler: Handler
    targets: frozenset[State]  # every state the handler can lead to
    summary: str


@dataclass(frozen=True, slots=True)
class Illegal:
    reason: str


def _r(handler: Handler, summary: str, *targets: State) -> Rule:
    return Rule(handler, frozenset(targets), summary)


_S = State
_PAID_AGAIN = "duplicate ignored; other provider ref refunded"
_CLOSED = "order is closed"

_table: dict[tuple[State, type[Input]], Rule | Illegal] = {
    # NEW
    (_S.NEW, CheckoutStarted): _r(_new_checkout, "show QR, start window", _S.AWAITING_PAYMENT),
    (_S.NEW, PaymentConfirmed): Illegal("QR never shown"),
    (_S.NEW, OfflineCodeEntered): Illegal("QR never shown"),
    (_S.NEW, ExtendRequested): Illegal("no payment window yet"),
    (_S.NEW, ShopperCancel): _r(_cancel_input, "release stock", _S.CANCELLED),
    (_S.NEW, VendReported): Illegal("not paid"),
    (_S.NEW, BoardWentOffline): _r(_cancel_input, "release stock", _S.CANCELLED),
    (_S.NEW, Recovery): Illegal("a NEW order is never persisted"),
    (_S.NEW, Tick): _r(_noop, "nothing", _S.NEW),
    # AWAITING_PAYMENT
    (_S.AWAITING_PAYMENT, CheckoutStarted): Illegal("already checked out"),
    (_S.AWAITING_PAYMENT, PaymentConfirmed): _r(
        _awaiting_paid, "persist paid + line 0 tx, vend", _S.DISPENSING
    ),
    (_S.AWAITING_PAYMENT, OfflineCodeEntered): _r(
        _awaiting_code,
        "right: as paid; wrong: count, lock at 3",
        _S.AWAITING_PAYMENT,
        _S.DISPENSING,
    ),
    (_S.AWAITING_PAYMENT, ExtendRequested): _r(
        _awaiting_extend, "extend window (max 10)", _S.AWAITING_PAYMENT
    ),
    (_S.AWAITING_PAYMENT, ShopperCancel): _r(_cancel_input, "release stock", _S.CANCELLED),
    (_S.AWAITING_PAYMENT, VendReported): Illegal("not paid"),
    (_S.AWAITING_PAYMENT, BoardWentOffline): _r(
        _cancel_input, "stop selling: cancel", _S.CANCELLED
    ),
    (_S.AWAITING_PAYMENT, Recovery): _r(
        _awaiting_tick, "show QR again, ask province", _S.AWAITING_PAYMENT, _S.CANCELLED
    ),
    (_S.AWAITING_PAYMENT, Tick): _r(
        _awaiting_tick,
        "offer more time, ask province, expire",
        _S.AWAITING_PAYMENT,
        _S.CANCELLED,
    ),
    # DISPENSING
    (_S.DISPENSING, CheckoutStarted): Illegal("already checked out"),
    (_S.DISPENSING, PaymentConfirmed): _r(_paid_again, _PAID_AGAIN, _S.DISPENSING),
    (_S.DISPENSING, OfflineCodeEntered): Illegal("already paid"),
    (_S.DISPENSING, ExtendRequested): Illegal("already paid"),
    (_S.DISPENSING, ShopperCancel): Illegal("paid: ends in delivery or refund"),
    (_S.DISPENSING, VendReported): _r(
        _dispensing_report,
        "settle line, next slot / next line / close",
        _S.DISPENSING,
        _S.COMPLETED,
        _S.PARTLY_DELIVERED,
        _S.REFUND_DUE,
    ),
    (_S.DISPENSING, BoardWentOffline): _r(_dispensing_offline, "wait, never resend", _S.SUSPENDED),
    (_S.DISPENSING, Recovery): _r(_dispensing_recovery, "QueryOutcome(tx)", _S.DISPENSING),
    (_S.DISPENSING, Tick): _r(_dispensing_tick, "no outcome: QueryOutcome(tx)", _S.DISPENSING),
    # SUSPENDED
    (_S.SUSPENDED, CheckoutStarted): Illegal("already checked out"),
    (_S.SUSPENDED, PaymentConfirmed): _r(_paid_again, _PAID_AGAIN, _S.SUSPENDED),
    (_S.SUSPENDED, OfflineCodeEntered): Illegal("already paid"),
    (_S.SUSPENDED, ExtendRequested): Illegal("already paid"),
    (_S.SUSPENDED, ShopperCancel): Illegal("paid: ends in delivery or refund"),
    (_S.SUSPENDED, VendReported): _r(
        _dispensing_report,
        "board spoke: as in dispensing",
        _S.SUSPENDED,
        _S.DISPENSING,
        _S.COMPLETED,
        _S.PARTLY_DELIVERED,
        _S.REFUND_DUE,
    ),
    (_S.SUSPENDED, BoardWentOffline): _r(_noop, "nothing", _S.SUSPENDED),
    (_S.SUSPENDED, Recovery): _r(_dispensing_recovery, "QueryOutcome(tx)", _S.DISPENSING),
    (_S.SUSPENDED, Tick): _r(
        _suspended_tick,
        "offline too long: unknown + refund",
        _S.SUSPENDED,
        _S.PARTLY_DELIVERED,
        _S.REFUND_DUE,
    ),
}

for _closed in (State.COMPLETED, State.PARTLY_DELIVERED, State.REFUND_DUE):
    _table |= {
        (_closed, CheckoutStarted): Illegal(_CLOSED),
        (_closed, PaymentConfirmed): _r(_paid_again, _PAID_AGAIN, _closed),
        (_closed, OfflineCodeEntered): Illegal(_CLOSED),
        (_closed, ExtendRequested): Illegal(_CLOSED),
        (_closed, ShopperCancel): Illegal(_CLOSED),
        (_closed, VendReported): _r(_closed_report, "late outcome: alarm if it differs", _closed),
        (_closed, BoardWentOffline): _r(_noop, "nothing", _closed),
        (_closed, Recovery): _r(_closed_recovery, "re-emit record, refund", _closed),
        (_closed, Tick): _r(_noop, "nothing", _closed),
    }

_table |= {
    (_S.CANCELLED, CheckoutStarted): Illegal(_CLOSED),
    (_S.CANCELLED, PaymentConfirmed): _r(
        _cancelled_paid, "late payment: full refund, no vend", _S.REFUND_DUE
    ),
    (_S.CANCELLED, OfflineCodeEntered): Illegal(_CLOSED),
    (_S.CANCELLED, ExtendRequested): Illegal(_CLOSED),
    (_S.CANCELLED, ShopperCancel): _r(_noop, "nothing (double tap)", _S.CANCELLED),
    (_S.CANCELLED, VendReported): Illegal("never paid"),
    (_S.CANCELLED, BoardWentOffline): _r(_noop, "nothing", _S.CANCELLED),
    (_S.CANCELLED, Recovery): _r(_closed_recovery, "release stock again", _S.CANCELLED),
    (_S.CANCELLED, Tick): _r(_noop, "nothing", _S.CANCELLED),
}
TRANSITIONS: Mapping[tuple[State, type[Input]], Rule | Illegal] = _table


def step(order: Order, inp: Input) -> Result:
    """Feed one input. Returns the new order and the actions to carry out, in order.

    Raises IllegalTransition or InputRejected (both SaleError) and then nothing changed.
    """
    entry = TRANSITIONS.get((order.state, type(inp)))
    if entry is None:
        raise IllegalTransition(order.state, inp, "not an input of the sale machine")
    if isinstance(entry, Illegal):
        raise IllegalTransition(order.state, inp, entry.reason)
    return entry.handler(order, inp)


# --- rendering for docs/sales.md ------------------------------------------------------------


def render_state_diagram() -> str:
    """Mermaid stateDiagram-v2 generated from TRANSITIONS (self-loops left out)."""
    edges: dict[tuple[State, State], list[str]] = {}
    for (src, typ), entry in TRANSITIONS.items():
        if isinstance(entry, Illegal):
            continue
        for dst in sorted(entry.targets, key=list(State).index):
            if dst is not src:
                edges.setdefault((src, dst), []).append(typ.__name__)
    out = ["```mermaid", "stateDiagram-v2"]
    out.append(f"    [*] --> {State.NEW.name}")
    for (src, dst), names in edges.items():
        out.append(f"    {src.name} --> {dst.name} : {', '.join(names)}")
    for s in (State.COMPLETED, State.PARTLY_DELIVERED, State.REFUND_DUE, State.CANCELLED):
        out.append(f"    {s.name} --> [*]")
    out.append("```")
    return "\n".join(out) + "\n"


def render_transition_table() -> str:
    """Markdown table: one row per state, one column per input type."""
    head = "| state | " + " | ".join(t.__name__ for t in INPUT_TYPES) + " |"
    sep = "|---" * (len(INPUT_TYPES) + 1) + "|"
    rows = [head, sep]
    for s in State:
        cells = []
        for t in INPUT_TYPES:
            entry = TRANSITIONS[(s, t)]
            if isinstance(entry, Illegal):
                cells.append(f"✗ *{entry.reason}*")
            else:
                dst = ", ".join(d.name for d in sorted(entry.targets, key=list(State).index))
                cells.append(f"→ {dst}: {entry.summary}")
        rows.append(f"| **{s.name}** | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - `python -m kiosk.core.sale` prints the docs
    print(render_transition_table())
    print(render_state_diagram())
