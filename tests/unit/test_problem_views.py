"""Every ProblemView / OutOfServiceView the controller builds formats in every language.

Regression: on a jam the controller built `partly_delivered` / `vend_failed` with only
`{"phone": ...}` while the catalogs need `{delivered}`, `{failed}`, `{count}` -> KeyError in
the problem screen. The views here come from the controller's own code (`order_view` for
each closed-order state, `out_of_service_reasons` for every reason), plus one real jam.
"""

from __future__ import annotations

import itertools

import pytest

from kiosk import contract as ui
from kiosk.controller import ServiceFacts, out_of_service_reasons
from kiosk.controller.view import OrderScreen, order_view
from kiosk.core.payment import Payment, PaymentMethod
from kiosk.core.planogram import SlotKind
from kiosk.core.sale import (
    CancelReason,
    LineStatus,
    Order,
    RefundReason,
    State,
)
from kiosk.core.sale import (
    Line as SaleLine,
)
from kiosk.ui.i18n import CATALOGS, LANGS, Translator, placeholders
from tests.support.kiosk_app import SINGLE, Kiosk

PHONE = "400-000-0000"


def _line(status: LineStatus, n: int) -> SaleLine:
    return SaleLine(
        product_id=f"P-{n}",
        name_zh="商品",
        name_en="item",
        certification_no="C",
        origin_county_zh="县",
        origin_county_en="county",
        origin_area_code="340100",
        price_fen=500 + n,
        slot_no=10 + n,
        slot_kind=SlotKind.SPIRAL,
        status=status,
    )


def _order(state: State, statuses: tuple[LineStatus, ...], **kw: object) -> Order:
    lines = tuple(_line(s, n) for n, s in enumerate(statuses))
    pay = Payment(PaymentMethod.WECHAT, "wx-1", sum(ln.price_fen for ln in lines), 1.0)
    return Order("ORD1", "AH-340100-0001", 1, lines, state=state, payment=pay, **kw)  # type: ignore[arg-type]


_D, _F, _U, _P = LineStatus.DELIVERED, LineStatus.FAILED, LineStatus.UNKNOWN, LineStatus.PENDING

#: closed orders that show the problem screen, with the key the controller must pick
CASES = [
    ("partly_delivered", _order(State.PARTLY_DELIVERED, (_D, _F)), {"delivered": 1, "failed": 1}),
    ("partly_delivered", _order(State.PARTLY_DELIVERED, (_D, _D, _U, _P)), {"failed": 2}),
    ("vend_failed", _order(State.REFUND_DUE, (_F,)), {"count": 1}),
    ("vend_failed", _order(State.REFUND_DUE, (_F, _U, _F)), {"count": 3}),
    (
        "paid_after_cancel",
        _order(State.REFUND_DUE, (_P, _P), refund_reason=RefundReason.LATE_PAYMENT),
        {},
    ),
    ("payment_timeout", _order(State.CANCELLED, (_P,), cancel_reason=CancelReason.TIMEOUT), {}),
]


def _screen() -> OrderScreen:
    return OrderScreen(
        now=0.0,
        kiosk_id="AH-340100-0001",
        service_phone=PHONE,
        pay_url_base="https://pay.example",
        secret=b"",
        mono_offset=0.0,
        province_time=lambda t: t,
        last_view=None,
    )


def _base() -> ui.ViewState:
    return ui.ViewState(seq=0, mode="idle", products=(), cart=(), service_phone=PHONE)


def _render_problem(pb: ui.ProblemView) -> None:
    """What kiosk/ui/screens/problem.py formats, in both languages."""
    for lang in LANGS:
        t = Translator(lang)
        assert t(f"problem.{pb.message_key}", **pb.params)
        assert t("problem.phone", phone=PHONE)
        assert t("problem.order", order=pb.order_id)
        if pb.refund_fen > 0:
            t(
                "problem.refund",
                amount=t.money(pb.refund_fen),
                channel=t(f"channel.{pb.refund_channel}"),
            )


@pytest.mark.parametrize(("key", "order", "expect"), CASES, ids=[c[0] for c in CASES])
def test_controller_problem_views_format(key: str, order: Order, expect: dict[str, int]) -> None:
    v = order_view(_base(), order, _screen())
    assert v is not None and v.mode == "problem" and v.problem is not None
    pb = v.problem
    assert pb.message_key == key
    for name, value in expect.items():
        assert pb.params[name] == value
    for lang in LANGS:  # every placeholder the message uses is provided
        assert placeholders(CATALOGS[lang][f"problem.{key}"]) <= set(pb.params)
    _render_problem(pb)


def test_every_problem_key_is_covered_or_parameterless() -> None:
    """Keys the controller does not build (yet) must not need params it cannot give."""
    built = {c[0] for c in CASES}
    for key in ui.PROBLEM_KEYS:
        if key in built:
            continue
        for lang in LANGS:
            assert placeholders(CATALOGS[lang][f"problem.{key}"]) <= {"phone"}, (lang, key)


def test_every_out_of_service_view_formats() -> None:
    flags: list[dict[str, object]] = [
        dict(sales_locked=True),
        dict(store_writable=False),
        dict(free_mb=1, min_free_mb=50),
        dict(service_door_open=True),
        dict(temperature_c=12.0, max_temperature_c=8.0),
        dict(sellable_units=0),
    ]
    reasons: set[str] = set()
    for online in (None, False, True):
        for n in range(len(flags) + 1):
            for combo in itertools.combinations(flags, n):
                kw: dict[str, object] = {"board_online": online, "sellable_units": 5}
                for c in combo:
                    kw.update(c)
                reasons.update(out_of_service_reasons(ServiceFacts(**kw)))  # type: ignore[arg-type]
    assert reasons <= set(ui.OUT_OF_SERVICE_KEYS)
    for key in reasons | set(ui.OUT_OF_SERVICE_KEYS):
        oos = ui.OutOfServiceView(key)
        for lang in LANGS:
            t = Translator(lang)
            # kiosk/ui/screens/out_of_service.py formats the reason without params
            assert placeholders(CATALOGS[lang][f"oos.{oos.reason_key}"]) == set()
            assert t(f"oos.{oos.reason_key}")
            assert t("oos.phone", phone=PHONE)


def test_real_jam_problem_view_formats(kiosk: Kiosk) -> None:
    """End to end: the only slot of a product is jammed -> vend_failed, formats in zh + en."""
    order = kiosk.checkout(SINGLE)
    single = order.lines[0]
    kiosk.emu.set_fault("jammed", {kiosk.c.planogram.slots[single.slot_no].address})
    kiosk.pay_for(order)
    done = kiosk.closed(order.order_id)
    assert done.state is State.REFUND_DUE
    v = kiosk.wait(lambda v: v.mode == "problem")
    assert v.problem is not None and v.problem.message_key == "vend_failed"
    assert v.problem.params["count"] == 1
    _render_problem(v.problem)
