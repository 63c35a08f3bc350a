"""Unit tests for kiosk.core.sale: the table, the happy path, jams, late payments, offline codes."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.core import sale as s
from kiosk.core.payment import Payment, PaymentMethod, offline_code
from kiosk.core.planogram import Slot, SlotKind
from kiosk.core.sale import (
    Alarm,
    AlarmKind,
    BoardWentOffline,
    CancelReason,
    CheckoutStarted,
    ExtendRequested,
    IllegalTransition,
    InputRejected,
    Line,
    LineStatus,
    OfflineCodeEntered,
    Order,
    OutcomeClass,
    PaymentConfirmed,
    Persist,
    QueryOutcome,
    QueryPaymentStatus,
    RecordSale,
    Recovery,
    RefundDue,
    RefundReason,
    ReleaseReservation,
    ShopperCancel,
    Show,
    State,
    StockDelivered,
    Tick,
    Unlock,
    Vend,
    VendOutcome,
    VendReported,
    View,
)

SECRET = b"test-device-secret-0123456789abcdef"
T0 = 1_790_000_000.0
DOCS = Path(__file__).resolve().parents[2] / "docs" / "sales.md"


def line(
    pid: str = "tea", price: int = 3800, slot: int = 11, kind: SlotKind = SlotKind.SPIRAL
) -> Line:
    return Line(
        product_id=pid,
        name_zh="六安瓜片",
        name_en="Lu'an Guapian tea",
        certification_no="AH-FP-2020-0001",
        origin_county_zh="金寨县",
        origin_county_en="Jinzhai",
        origin_area_code="341524",
        price_fen=price,
        slot_no=slot,
        slot_kind=kind,
    )


def make_order(*lines: Line, seq: int = 7) -> Order:
    return Order(
        order_id=f"AH-340100-0001-0000{seq}",
        kiosk_id="AH-340100-0001",
        order_seq=seq,
        lines=lines or (line(),),
    )


def paid(amount: int, ref: str = "wx-1", now: float = T0 + 10) -> PaymentConfirmed:
    return PaymentConfirmed(Payment(PaymentMethod.WECHAT, ref, amount, now), now)


def run(order: Order, *inputs: s.Input) -> tuple[Order, list[s.Action]]:
    actions: list[s.Action] = []
    for i in inputs:
        order, acts = s.step(order, i)
        actions += acts
    return order, actions


def vends(actions: list[s.Action]) -> list[Vend | Unlock]:
    return [a for a in actions if isinstance(a, Vend | Unlock)]


def awaiting(*lines: Line) -> Order:
    o, _ = s.step(make_order(*lines), CheckoutStarted(T0))
    return o


def alt(slot_no: int, pid: str = "tea", kind: SlotKind = SlotKind.SPIRAL) -> Slot:
    return Slot(slot_no, 1, slot_no, kind, 1 if kind is SlotKind.LOCKER else 10, pid)


# --- the table ------------------------------------------------------------------------------


def test_every_state_input_pair_is_defined() -> None:
    for state in State:
        for typ in s.INPUT_TYPES:
            assert (state, typ) in s.TRANSITIONS, (state, typ)
    assert len(s.TRANSITIONS) == len(State) * len(s.INPUT_TYPES)


def test_illegal_pairs_raise_named_error_and_leave_order_unchanged() -> None:
    samples: dict[type[s.Input], s.Input] = {
        CheckoutStarted: CheckoutStarted(T0),
        PaymentConfirmed: paid(3800),
        OfflineCodeEntered: OfflineCodeEntered("12345678", T0, SECRET),
        ExtendRequested: ExtendRequested(T0),
        ShopperCancel: ShopperCancel(T0),
        VendReported: VendReported(1, VendOutcome.DELIVERED, T0),
        BoardWentOffline: BoardWentOffline(T0),
        Recovery: Recovery(T0),
        Tick: Tick(T0),
    }
    for (state, typ), entry in s.TRANSITIONS.items():
        if isinstance(entry, s.Illegal):
            order = replace(make_order(), state=state)
            with pytest.raises(IllegalTransition) as exc:
                s.step(order, samples[typ])
            assert exc.value.state is state
            assert state.value in str(exc.value)


def test_secret_never_in_input_repr() -> None:
    assert "secret" not in repr(OfflineCodeEntered("1", T0, SECRET))
    with pytest.raises(IllegalTransition) as exc:
        s.step(make_order(), OfflineCodeEntered("1", T0, SECRET))
    assert SECRET.decode() not in repr(exc.value.input)


def test_every_outcome_has_a_class_and_matches_protocol_names() -> None:
    from kiosk.hardware.protocol import Outcome

    for o in VendOutcome:
        assert isinstance(s.classify_outcome(o), OutcomeClass)
    assert {o.name for o in Outcome} <= {o.value for o in VendOutcome}


def test_tx_scheme_roundtrip_and_uniqueness() -> None:
    seen = set()
    for seq in (1, 2, 255, (1 << 24) - 1):
        for k in range(s.MAX_LINES):
            for a in range(s.MAX_ATTEMPTS):
                tx = s.make_tx(seq, k, a)
                assert 1 <= tx <= 0xFFFF_FFFF
                assert s.split_tx(tx) == (seq, k, a)
                seen.add(tx)
    assert len(seen) == 4 * s.MAX_LINES * s.MAX_ATTEMPTS
    with pytest.raises(ValueError):
        s.make_tx(0, 0, 0)
    with pytest.raises(ValueError):
        s.make_tx(1, 0, s.MAX_ATTEMPTS)


# --- checkout and the payment window -------------------------------------------------------


def test_checkout_persists_before_showing_the_qr() -> None:
    o, acts = s.step(make_order(), CheckoutStarted(T0))
    assert o.state is State.AWAITING_PAYMENT
    assert o.expires_at == T0 + 120
    assert acts == [Persist(o), Show(View.PAYMENT, o)]


def test_extension_offer_extend_and_limit() -> None:
    o = awaiting(line())
    o, acts = s.step(o, Tick(T0 + 99))
    assert not any(isinstance(a, Show) for a in acts)
    o, acts = s.step(o, Tick(T0 + 100))  # 20 s before expiry
    assert Show(View.EXTEND_OFFER, o) in acts
    o, acts = s.step(o, Tick(T0 + 101))
    assert not any(isinstance(a, Show) for a in acts)  # offered once per window
    for n in range(10):
        o, _ = s.step(o, ExtendRequested(o.expires_at - 5))
        assert o.extensions == n + 1
    assert o.expires_at == T0 + 120 + 10 * 60
    with pytest.raises(InputRejected):
        s.step(o, ExtendRequested(o.expires_at - 5))


def test_timeout_cancels_releases_and_asks_once_more() -> None:
    o = awaiting(line())
    o, acts = s.step(o, Tick(T0 + 120))
    assert o.state is State.CANCELLED and o.cancel_reason is CancelReason.TIMEOUT
    assert isinstance(acts[0], Persist)
    assert ReleaseReservation(o.order_id) in acts
    assert QueryPaymentStatus(o.order_id) in acts


def test_payment_status_query_after_threshold() -> None:
    o = awaiting(line())
    o, acts = s.step(o, Tick(T0 + 59))
    assert QueryPaymentStatus(o.order_id) not in acts
    o, acts = s.step(o, Tick(T0 + 60))
    assert QueryPaymentStatus(o.order_id) in acts
    o, acts = s.step(o, Tick(T0 + 70))
    assert QueryPaymentStatus(o.order_id) not in acts
    o, acts = s.step(o, Tick(T0 + 90))
    assert QueryPaymentStatus(o.order_id) in acts


def test_board_offline_while_awaiting_payment_stops_the_sale() -> None:
    o, _ = s.step(awaiting(line()), BoardWentOffline(T0 + 5))
    assert o.state is State.CANCELLED and o.cancel_reason is CancelReason.BOARD_OFFLINE


def test_wrong_amount_is_rejected() -> None:
    with pytest.raises(InputRejected):
        s.step(awaiting(line(price=3800)), paid(3700))


# --- dispensing -----------------------------------------------------------------------------


def test_happy_path_three_items() -> None:
    o = awaiting(line("tea", 3800, 11), line("tea", 3800, 12), line("pear", 2500, 21))
    o, acts = s.step(o, paid(10100))
    assert o.state is State.DISPENSING
    assert isinstance(acts[0], Persist) and acts[0].order.lines[0].status is LineStatus.VENDING
    (v0,) = vends(acts)
    assert v0 == Vend(o.order_id, 0, 11, s.make_tx(7, 0, 0))
    o, acts = s.step(o, VendReported(v0.tx, VendOutcome.DELIVERED, T0 + 20))
    assert StockDelivered(o.order_id, 0, 11, v0.tx) in acts
    (v1,) = vends(acts)
    assert (v1.line_index, v1.slot_no) == (1, 12)
    o, acts = s.step(o, VendReported(v1.tx, VendOutcome.DELIVERED, T0 + 30))
    (v2,) = vends(acts)
    o, acts = s.step(o, VendReported(v2.tx, VendOutcome.DELIVERED, T0 + 40))
    assert o.state is State.COMPLETED
    assert o.delivered_fen == 10100 and o.refund_due_fen == 0
    assert acts[0] == Persist(o)
    assert RecordSale(o) in acts
    assert not any(isinstance(a, RefundDue) for a in acts)
    assert Show(View.COMPLETED, o) in acts


def test_locker_lines_unlock() -> None:
    o = awaiting(line(slot=5, kind=SlotKind.LOCKER))
    o, acts = s.step(o, paid(3800))
    (u,) = vends(acts)
    assert isinstance(u, Unlock)
    o, _ = s.step(o, VendReported(u.tx, VendOutcome.DOOR_OPENED_AND_CLOSED, T0 + 40))
    assert o.state is State.COMPLETED


def test_jam_on_line_2_with_alternative_slot_delivers() -> None:
    o = awaiting(line("tea", 3800, 11), line("pear", 2500, 21), line("tea", 3800, 12))
    o, acts = run(o, paid(10100))
    o, acts = s.step(o, VendReported(vends(acts)[0].tx, VendOutcome.DELIVERED, T0 + 20))
    (v1,) = vends(acts)
    o, acts = s.step(
        o,
        VendReported(
            v1.tx, VendOutcome.JAMMED, T0 + 30, alternatives=(alt(21, "pear"), alt(22, "pear"))
        ),
    )
    assert any(
        isinstance(a, Alarm) and a.kind is AlarmKind.SLOT_FAULT and a.slot_no == 21 for a in acts
    )
    (retry,) = vends(acts)
    assert retry.line_index == 1 and retry.slot_no == 22  # 21 was tried already
    assert retry.tx == s.make_tx(7, 1, 1) != v1.tx
    o, acts = s.step(o, VendReported(retry.tx, VendOutcome.DELIVERED, T0 + 35))
    (v2,) = vends(acts)
    o, acts = s.step(o, VendReported(v2.tx, VendOutcome.DELIVERED, T0 + 45))
    assert o.state is State.COMPLETED
    assert o.lines[1].slot_no == 22 and o.lines[1].tried_slots == (21, 22)


def test_jam_without_alternative_partly_delivers_and_refunds_that_line() -> None:
    o = awaiting(line("tea", 3800, 11), line("pear", 2500, 21), line("tea", 3800, 12))
    o, acts = run(o, paid(10100))
    o, acts = s.step(o, VendReported(vends(acts)[0].tx, VendOutcome.DELIVERED, T0 + 20))
    o, acts = s.step(o, VendReported(vends(acts)[0].tx, VendOutcome.JAMMED, T0 + 30))
    assert o.lines[1].status is LineStatus.FAILED
    (v2,) = vends(acts)
    o, acts = s.step(o, VendReported(v2.tx, VendOutcome.DELIVERED, T0 + 40))
    assert o.state is State.PARTLY_DELIVERED
    assert o.refund_due_fen == 2500 and o.delivered_fen == 7600
    assert RefundDue(o.order_id, 2500, RefundReason.NOT_DELIVERED, "wx-1") in acts
    assert [a for a in acts if isinstance(a, RefundDue)] == [
        RefundDue(o.order_id, 2500, RefundReason.NOT_DELIVERED, "wx-1")
    ]


def test_all_lines_fail_gives_full_refund() -> None:
    o = awaiting(line())
    o, acts = run(o, paid(3800))
    o, acts = s.step(o, VendReported(vends(acts)[0].tx, VendOutcome.SLOT_EMPTY, T0 + 20))
    assert o.state is State.REFUND_DUE and o.refund_due_fen == 3800
    assert any(isinstance(a, Alarm) and a.kind is AlarmKind.STOCK_MISMATCH for a in acts)


def test_unknown_outcome_refunds_and_alarms_never_resends() -> None:
    o = awaiting(line(), line(slot=12))
    o, acts = run(o, paid(7600))
    tx = vends(acts)[0].tx
    o, acts = s.step(o, VendReported(tx, VendOutcome.UNKNOWN_TX, T0 + 20, alternatives=(alt(13),)))
    assert o.lines[0].status is LineStatus.UNKNOWN
    assert any(isinstance(a, Alarm) and a.kind is AlarmKind.UNKNOWN_OUTCOME for a in acts)
    assert [v.line_index for v in vends(acts)] == [1]  # line 0 never vended again
    o, acts = s.step(o, VendReported(vends(acts)[0].tx, VendOutcome.DELIVERED, T0 + 30))
    assert o.state is State.PARTLY_DELIVERED and o.refund_due_fen == 3800


def test_busy_or_not_accepted_retries_same_slot_with_new_tx() -> None:
    o = awaiting(line())
    o, acts = run(o, paid(3800))
    tx0 = vends(acts)[0].tx
    o, acts = s.step(o, VendReported(tx0, VendOutcome.NOT_ACCEPTED, T0 + 20))
    (v,) = vends(acts)
    assert v.slot_no == 11 and v.tx != tx0


def test_attempts_are_bounded() -> None:
    o = awaiting(line())
    o, acts = run(o, paid(3800))
    for _ in range(20):
        vs = vends(acts)
        if not vs:
            break
        o, acts = s.step(o, VendReported(vs[0].tx, VendOutcome.BUSY, T0 + 20))
    assert o.state is State.REFUND_DUE
    assert o.lines[0].attempts == s.MAX_ATTEMPTS


def test_running_and_duplicate_reports_change_nothing() -> None:
    o = awaiting(line(), line(slot=12))
    o, acts = run(o, paid(7600))
    tx = vends(acts)[0].tx
    assert s.step(o, VendReported(tx, VendOutcome.IN_PROGRESS, T0 + 15)) == (o, [])
    o, _ = s.step(o, VendReported(tx, VendOutcome.DELIVERED, T0 + 20))
    assert s.step(o, VendReported(tx, VendOutcome.DELIVERED, T0 + 21)) == (o, [])
    with pytest.raises(InputRejected):
        s.step(o, VendReported(999_999, VendOutcome.DELIVERED, T0 + 21))


def test_vend_timeout_asks_the_board_instead_of_resending() -> None:
    o = awaiting(line())
    o, acts = run(o, paid(3800))
    tx = vends(acts)[0].tx
    o, acts = s.step(o, Tick(T0 + 10 + 89))
    assert acts == []
    o, acts = s.step(o, Tick(T0 + 10 + 90))
    assert QueryOutcome(o.order_id, 0, tx) in acts and not vends(acts)
    o, acts = s.step(o, Tick(T0 + 10 + 95))
    assert acts == []


def test_board_offline_during_dispensing_waits_then_queries_outcome() -> None:
    o = awaiting(line(), line(slot=12))
    o, acts = run(o, paid(7600))
    tx = vends(acts)[0].tx
    o, acts = s.step(o, BoardWentOffline(T0 + 15))
    assert o.state is State.SUSPENDED and not vends(acts)
    assert Show(View.WAITING_FOR_BOARD, o) in acts
    o, acts = s.step(o, Tick(T0 + 100))
    assert acts == []
    o, acts = s.step(o, Recovery(T0 + 120))
    assert o.state is State.DISPENSING
    assert QueryOutcome(o.order_id, 0, tx) in acts and not vends(acts)
    o, acts = s.step(o, VendReported(tx, VendOutcome.DELIVERED, T0 + 121))
    assert vends(acts)[0].line_index == 1


def test_board_offline_too_long_refunds_the_rest() -> None:
    o = awaiting(line(), line(slot=12), line(slot=13))
    o, acts = run(o, paid(11400))
    o, acts = s.step(o, VendReported(vends(acts)[0].tx, VendOutcome.DELIVERED, T0 + 20))
    o, _ = s.step(o, BoardWentOffline(T0 + 25))
    o, acts = s.step(o, Tick(T0 + 25 + 600))
    assert o.state is State.PARTLY_DELIVERED
    assert [ln.status for ln in o.lines] == [
        LineStatus.DELIVERED,
        LineStatus.UNKNOWN,
        LineStatus.FAILED,
    ]
    assert o.refund_due_fen == 7600
    assert not vends(acts)


def test_late_delivered_report_after_giving_up_alarms() -> None:
    o = awaiting(line())
    o, acts = run(o, paid(3800))
    tx = vends(acts)[0].tx
    o, _ = run(o, BoardWentOffline(T0 + 15), Tick(T0 + 700))
    assert o.state is State.REFUND_DUE
    o2, acts = s.step(o, VendReported(tx, VendOutcome.DELIVERED, T0 + 800))
    assert o2 == o
    assert [a.kind for a in acts if isinstance(a, Alarm)] == [AlarmKind.LATE_OUTCOME]


# --- payments arriving at odd times ---------------------------------------------------------


def test_confirmation_after_cancel_is_full_refund_no_vend() -> None:
    o, _ = s.step(awaiting(line(), line(slot=12)), ShopperCancel(T0 + 5))
    o, acts = s.step(o, paid(7600, now=T0 + 30))
    assert o.state is State.REFUND_DUE
    assert o.refund_due_fen == 7600 and o.refund_reason is RefundReason.LATE_PAYMENT
    assert not vends(acts)
    assert RefundDue(o.order_id, 7600, RefundReason.LATE_PAYMENT, "wx-1") in acts
    assert isinstance(acts[0], Persist)
    # the provider retries its notice: nothing more
    assert s.step(o, paid(7600, now=T0 + 40)) == (o, [])


def test_confirmation_after_expiry_is_full_refund() -> None:
    o, _ = s.step(awaiting(line()), Tick(T0 + 200))
    o, acts = s.step(o, paid(3800))
    assert o.state is State.REFUND_DUE and not vends(acts)


def test_duplicate_confirmation_is_ignored() -> None:
    o = awaiting(line())
    o, _ = s.step(o, paid(3800))
    assert s.step(o, paid(3800, now=T0 + 11)) == (o, [])


def test_second_payment_with_other_reference_is_refunded() -> None:
    o = awaiting(line())
    o, _ = s.step(o, paid(3800, ref="wx-1"))
    o, acts = s.step(o, paid(3800, ref="ali-9"))
    assert RefundDue(o.order_id, 3800, RefundReason.DOUBLE_PAYMENT, "ali-9") in acts
    assert o.payment is not None and o.payment.provider_ref == "wx-1"
    assert s.step(o, paid(3800, ref="ali-9")) == (o, [])


# --- offline code ---------------------------------------------------------------------------


def test_offline_code_right_dispenses() -> None:
    o = awaiting(line())
    code = offline_code(SECRET, o.order_id, o.total_fen)
    o, acts = s.step(o, OfflineCodeEntered(code, T0 + 30, SECRET))
    assert o.state is State.DISPENSING
    assert o.payment is not None and o.payment.method is PaymentMethod.OFFLINE_CODE
    assert len(vends(acts)) == 1
    # later the province's own confirmation arrives: it fills in the reference, no refund
    o, acts = s.step(o, paid(3800, ref="wx-77"))
    assert o.payment is not None and o.payment.provider_ref == "wx-77"
    assert not any(isinstance(a, RefundDue) for a in acts)


def test_offline_code_wrong_then_right() -> None:
    o = awaiting(line())
    o, acts = s.step(o, OfflineCodeEntered("00000000", T0 + 30, SECRET))
    assert o.code_tries == 1 and acts == [Persist(o), Show(View.CODE_WRONG, o)]
    code = offline_code(SECRET, o.order_id, o.total_fen)
    o, _ = s.step(o, OfflineCodeEntered(code, T0 + 31, SECRET))
    assert o.state is State.DISPENSING


def test_three_wrong_codes_lock_entry() -> None:
    o = awaiting(line())
    good = offline_code(SECRET, o.order_id, o.total_fen)
    wrong = f"{(int(good) + 1) % 10**8:08d}"
    for n in range(3):
        o, acts = s.step(o, OfflineCodeEntered(wrong, T0 + 30 + n, SECRET))
    assert o.code_locked and Show(View.CODE_LOCKED, o) in acts
    with pytest.raises(InputRejected):
        s.step(o, OfflineCodeEntered(good, T0 + 40, SECRET))
    # the shopper can still pay online or cancel
    o2, _ = s.step(o, paid(3800))
    assert o2.state is State.DISPENSING
    o3, _ = s.step(o, ShopperCancel(T0 + 41))
    assert o3.state is State.CANCELLED


def test_offline_code_for_other_amount_is_wrong() -> None:
    o = awaiting(line())
    code = offline_code(SECRET, o.order_id, o.total_fen + 1)
    o, _ = s.step(o, OfflineCodeEntered(code, T0 + 30, SECRET))
    assert o.state is State.AWAITING_PAYMENT and o.code_tries == 1


# --- recovery after a restart ---------------------------------------------------------------


def test_recovery_of_closed_order_reemits_idempotent_followups() -> None:
    o = awaiting(line())
    o, acts = run(o, paid(3800))
    o, _ = s.step(o, VendReported(vends(acts)[0].tx, VendOutcome.JAMMED, T0 + 20))
    o2, acts = s.step(o, Recovery(T0 + 1000))
    assert o2 == o
    assert RecordSale(o) in acts
    assert RefundDue(o.order_id, 3800, RefundReason.NOT_DELIVERED, "wx-1") in acts


def test_recovery_while_awaiting_payment_asks_the_province() -> None:
    o = awaiting(line())
    o, acts = s.step(o, Recovery(T0 + 30))
    assert QueryPaymentStatus(o.order_id) in acts and Show(View.PAYMENT, o) in acts


# --- docs -----------------------------------------------------------------------------------


def _between(text: str, name: str) -> str:
    m = re.search(
        rf"<!-- BEGIN GENERATED: {name} -->\n(.*?)<!-- END GENERATED: {name} -->", text, re.S
    )
    assert m, f"markers for {name} missing in docs/sales.md"
    return m.group(1)


def test_docs_contain_the_generated_table_and_diagram() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert _between(text, "state-diagram") == s.render_state_diagram()
    assert _between(text, "transition-table") == s.render_transition_table()


def test_diagram_names_every_state() -> None:
    d = s.render_state_diagram()
    for st in State:
        assert st.name in d


def test_goods_stopped_for_temperature_after_checkout_are_refunded_not_dispensed() -> None:
    """A chilled product stopped between checkout and payment: its lines never vend."""
    o = awaiting(line("milk", 1200, 31), line("tea", 3800, 11))
    stopped = paid(5000)
    o, acts = s.step(o, replace(stopped, withheld=frozenset({31})))
    assert o.lines[0].status is LineStatus.FAILED
    assert o.lines[0].outcome is VendOutcome.NOT_ATTEMPTED
    (v,) = vends(acts)
    assert v.slot_no == 11
    o, acts = s.step(o, VendReported(v.tx, VendOutcome.DELIVERED, T0 + 20))
    assert o.state is State.PARTLY_DELIVERED and o.refund_due_fen == 1200
    assert RefundDue(o.order_id, 1200, RefundReason.NOT_DELIVERED, "wx-1") in acts
    # every line withheld (offline code path too): a full refund, nothing vended
    o = awaiting(line("milk", 1200, 31))
    code = offline_code(SECRET, o.order_id, o.total_fen)
    o, acts = s.step(o, OfflineCodeEntered(code, T0 + 5, SECRET, frozenset({31})))
    assert not vends(acts) and o.state is State.REFUND_DUE and o.refund_due_fen == 1200
