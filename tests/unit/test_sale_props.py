"""Property tests for kiosk.core.sale: any sequence of inputs keeps the sale invariants.

Invariants checked after every step (architecture.md, invariants 1-4):
- a Vend/Unlock only when the order holds a verified payment, and only right after a Persist of
  the order that records "line k, slot s, tx t";
- never two vends with the same tx; a line gets a new vend only when it was pending or its last
  tx was reported as certainly not delivered;
- a changed order is always persisted first; a rejected input changes nothing;
- at every closed paid state: paid = delivered + refund due (int fen), one refund request at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.core import sale as s
from kiosk.core.payment import Payment, PaymentMethod, offline_code
from kiosk.core.planogram import Slot, SlotKind
from kiosk.core.sale import (
    CheckoutStarted,
    LineStatus,
    OfflineCodeEntered,
    Order,
    OutcomeClass,
    PaymentConfirmed,
    Persist,
    RefundDue,
    RefundReason,
    State,
    StockDelivered,
    Unlock,
    Vend,
    VendOutcome,
    VendReported,
)

SECRET = b"props-device-secret"
T0 = 1_790_000_000.0
PRODUCTS = ("tea", "pear", "nuts")


@st.composite
def orders(draw: st.DrawFn) -> Order:
    n = draw(st.integers(1, 5))
    lines = []
    for k in range(n):
        pid = draw(st.sampled_from(PRODUCTS))
        kind = draw(st.sampled_from(list(SlotKind)))
        lines.append(
            s.Line(
                product_id=pid,
                name_zh="品",
                name_en="item",
                certification_no="C-1",
                origin_county_zh="岳西县",
                origin_county_en="Yuexi",
                origin_area_code="340828",
                price_fen=draw(st.integers(1, 20_000)),
                slot_no=10 + k,
                slot_kind=kind,
            )
        )
    seq = draw(st.integers(1, (1 << 24) - 1))
    return Order(
        order_id=f"AH-340100-0001-{seq:05d}",
        kiosk_id="AH-340100-0001",
        order_seq=seq,
        lines=tuple(lines),
    )


ALT_SLOTS = (
    *(Slot(20 + n, 1, 20 + n, SlotKind.SPIRAL, 10, PRODUCTS[n % 3]) for n in range(6)),
    Slot(40, 1, 40, SlotKind.LOCKER, 1, "tea"),
)


def draw_input(data: st.DataObject, order: Order, now: float) -> s.Input:
    # every input can come in any state, but weighted so that runs get deep into dispensing
    common = ["checkout", "paid", "code", "extend", "cancel", "report", "offline", "recovery"]
    likely = {
        State.NEW: ["checkout"] * 6,
        State.AWAITING_PAYMENT: ["paid"] * 4 + ["code"] * 2 + ["tick"],
        State.DISPENSING: ["report"] * 12 + ["tick"],
        State.SUSPENDED: ["report", "recovery", "tick"],
    }.get(order.state, ["paid", "report", "tick"])
    kind = data.draw(st.sampled_from(common + likely + ["tick"]))
    if kind == "checkout":
        return CheckoutStarted(now)
    if kind == "paid":
        amount = data.draw(st.sampled_from([order.total_fen, order.total_fen, order.total_fen + 1]))
        ref = data.draw(st.sampled_from(["wx-1", "wx-1", "ali-2"]))
        method = PaymentMethod.ALIPAY if ref.startswith("ali") else PaymentMethod.WECHAT
        return PaymentConfirmed(Payment(method, ref, amount, now), now)
    if kind == "code":
        good = offline_code(SECRET, order.order_id, order.total_fen)
        code = data.draw(st.sampled_from([good, "00000000", "1234"]))
        return OfflineCodeEntered(code, now, SECRET)
    if kind == "extend":
        return s.ExtendRequested(now)
    if kind == "cancel":
        return s.ShopperCancel(now)
    if kind == "report":
        k = order.vending_line
        current = order.lines[k].tx if k is not None else None
        candidates = [t for t in (current,) if t is not None]
        old = [
            s.make_tx(order.order_seq, i, a)
            for i, ln in enumerate(order.lines)
            for a in range(ln.attempts)
        ]
        tx = data.draw(
            st.sampled_from(candidates * 6 + old + [1, s.make_tx(order.order_seq, 0, 7)])
            if candidates or old
            else st.just(1)
        )
        outcome = data.draw(st.sampled_from(list(VendOutcome)))
        alts = tuple(data.draw(st.lists(st.sampled_from(ALT_SLOTS), max_size=3, unique=True)))
        return VendReported(tx, outcome, now, alts)
    if kind == "offline":
        return s.BoardWentOffline(now)
    if kind == "recovery":
        return s.Recovery(now)
    return s.Tick(now)


@dataclass
class Watch:
    """What the test remembers across steps."""

    txs: set[int] = field(default_factory=set)
    refunds: set[RefundDue] = field(default_factory=set)
    delivered: set[tuple[int, int]] = field(default_factory=set)


def check_step(old: Order, inp: s.Input, new: Order, actions: list[s.Action], w: Watch) -> None:
    entry = s.TRANSITIONS[(old.state, type(inp))]
    assert isinstance(entry, s.Rule)
    assert new.state in entry.targets, (old.state, type(inp).__name__, new.state)

    # invariant 3: a changed order is persisted, first
    if new != old:
        assert actions and actions[0] == Persist(new)
    assert all(a == Persist(new) for a in actions if isinstance(a, Persist))

    vends = [a for a in actions if isinstance(a, Vend | Unlock)]
    assert len(vends) <= 1
    for v in vends:
        # invariant 1: a verified payment first
        assert new.payment is not None
        assert old.state in (State.AWAITING_PAYMENT, State.DISPENSING, State.SUSPENDED)
        # the persisted order already says "line k, slot s, tx t"
        ln = new.lines[v.line_index]
        assert (ln.status, ln.slot_no, ln.tx) == (LineStatus.VENDING, v.slot_no, v.tx)
        assert isinstance(v, Unlock) == (ln.slot_kind is SlotKind.LOCKER)
        # invariant 2: never the same tx twice; a line again only after a known non-delivery
        assert v.tx not in w.txs
        w.txs.add(v.tx)
        prev = old.lines[v.line_index]
        if prev.status is not LineStatus.PENDING:
            assert isinstance(inp, VendReported) and inp.tx == prev.tx
            assert s.classify_outcome(inp.outcome) in (OutcomeClass.FAILED, OutcomeClass.RETRY)
        else:
            assert prev.attempts == 0
    for a in actions:
        if isinstance(a, StockDelivered):
            assert (a.line_index, a.tx) not in w.delivered
            w.delivered.add((a.line_index, a.tx))
        if isinstance(a, RefundDue):
            w.refunds.add(a)

    # a paid order never goes back to unpaid states
    if old.payment is not None:
        assert new.payment is not None
        assert new.state not in (State.NEW, State.AWAITING_PAYMENT, State.CANCELLED)
    # dispensing always has exactly one line in flight
    if new.state in (State.DISPENSING, State.SUSPENDED):
        assert sum(ln.status is LineStatus.VENDING for ln in new.lines) == 1
    # invariant 4 at every closed paid state
    if new.state in s.FINAL_STATES and new.payment is not None:
        assert all(ln.status not in (LineStatus.PENDING, LineStatus.VENDING) for ln in new.lines)
        assert new.payment.amount_fen == new.delivered_fen + new.refund_due_fen
        assert new.refund_due_fen >= 0
        # one refund request for the undelivered amount (idempotency key: order, reason)
        primary = {
            (r.order_id, r.reason, r.amount_fen)
            for r in w.refunds
            if r.reason in (RefundReason.NOT_DELIVERED, RefundReason.LATE_PAYMENT)
        }
        if new.refund_due_fen:
            assert primary == {(new.order_id, new.refund_reason, new.refund_due_fen)}
        else:
            assert primary == set()
        assert new.state is not State.CANCELLED
        delivered_lines = {k for k, ln in enumerate(new.lines) if ln.status is LineStatus.DELIVERED}
        assert {k for k, _ in w.delivered} == delivered_lines
    if new.state is State.COMPLETED:
        assert new.refund_due_fen == 0


@settings(max_examples=400)
@given(order=orders(), data=st.data())
def test_any_input_sequence_keeps_the_invariants(order: Order, data: st.DataObject) -> None:
    w = Watch()
    now = T0
    o = order
    for _ in range(data.draw(st.integers(1, 60))):
        now += data.draw(st.sampled_from([0.0, 1.0, 1.0, 5.0, 5.0, 30.0, 100.0, 700.0]))
        inp = draw_input(data, o, now)
        try:
            new, actions = s.step(o, inp)
        except s.SaleError:
            continue  # rejected: `o` is immutable, so nothing changed by construction
        check_step(o, inp, new, actions, w)
        o = new


@settings(max_examples=200)
@given(order=orders(), data=st.data())
def test_paid_orders_always_reach_a_closed_state(order: Order, data: st.DataObject) -> None:
    """Drive a paid order with arbitrary outcomes (and outages): it always closes, balanced."""
    o, _ = s.step(order, CheckoutStarted(T0))
    o, _ = s.step(o, PaymentConfirmed(Payment(PaymentMethod.WECHAT, "wx", o.total_fen, T0), T0))
    now = T0
    for _ in range(200):
        if o.state in s.FINAL_STATES:
            break
        now += 1
        k = o.vending_line
        assert k is not None
        tx = o.lines[k].tx
        assert tx is not None
        if o.state is State.SUSPENDED:
            wake: list[s.Input] = [s.Tick(now + 1000), s.Recovery(now)]
            inp: s.Input = data.draw(st.sampled_from(wake))
        elif data.draw(st.integers(0, 9)) == 0:
            inp = s.BoardWentOffline(now)
        else:
            outcome = data.draw(
                st.sampled_from(
                    [o for o in VendOutcome if o.name not in ("ACCEPTED", "IN_PROGRESS")]
                )
            )
            alts = tuple(data.draw(st.lists(st.sampled_from(ALT_SLOTS), max_size=3, unique=True)))
            inp = VendReported(tx, outcome, now, alts)
        o, _ = s.step(o, inp)
    assert o.state in s.FINAL_STATES
    assert o.payment is not None
    assert o.payment.amount_fen == o.delivered_fen + o.refund_due_fen
