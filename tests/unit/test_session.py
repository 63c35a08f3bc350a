"""Unit tests for the pure shopping session (kiosk.core.session) and the re-vend rule
(kiosk.core.revend): no store, no board, no threads."""

from __future__ import annotations

import re
from pathlib import Path

from kiosk.core import revend, sale
from kiosk.core import session as ss
from kiosk.core.catalog import Catalog, Category, Product
from kiosk.core.planogram import Planogram, Slot, SlotKind

DOCS = Path(__file__).parents[2] / "docs" / "architecture.md"


def _product(pid: str, price: int) -> Product:
    return Product(
        product_id=pid,
        name_zh="六安瓜片",
        name_en="tea",
        certification_no=f"AH-FP-2020-{pid}",
        origin_county_zh="金寨县",
        origin_county_en="Jinzhai",
        origin_area_code="341524",
        producer_zh="合作社",
        producer_en="Co-op",
        category=Category.TEA,
        price_fen=price,
        spec_zh="250克/罐",
        spec_en="250 g jar",
        shelf_life_days=365,
    )


SHELF = ss.Shelf(
    catalog=Catalog.of(1, [_product("tea", 3800), _product("pear", 2500)]),
    planogram=Planogram.of(
        1,
        [
            Slot(11, 1, 0, SlotKind.SPIRAL, 10, "tea"),
            Slot(21, 1, 1, SlotKind.SPIRAL, 10, "pear"),
        ],
    ),
    levels={11: 2, 21: 1},
    reserved={},
    bad_slots=frozenset(),
)


def _run(s: ss.Session, *inputs: ss.Input) -> tuple[ss.Session, list[ss.Command]]:
    commands: list[ss.Command] = []
    for inp in inputs:
        s, cmds = ss.step(s, inp)
        commands += cmds
    return s, commands


def test_the_table_names_a_rule_for_every_phase_and_input() -> None:
    for ph in ss.Phase:
        for t in ss.INPUT_TYPES:
            assert (ph, t) in ss.TRANSITIONS, (ph, t)
    assert len(ss.TRANSITIONS) == len(ss.Phase) * len(ss.INPUT_TYPES)


def test_docs_contain_the_generated_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(
        r"<!-- BEGIN GENERATED: session-table -->\n(.*?)<!-- END GENERATED: session-table -->",
        text,
        re.S,
    )
    assert m, "markers for session-table missing in docs/architecture.md"
    assert m.group(1) == ss.render_transition_table()


def test_browse_add_checkout_then_the_order_takes_the_screen() -> None:
    s = ss.new_session(10)
    assert ss.phase(s) is ss.Phase.IDLE
    s, cmds = _run(s, ss.Browse(), ss.AddOne("tea", SHELF), ss.AddOne("tea", SHELF))
    assert ss.phase(s) is ss.Phase.SHOPPING and cmds == []
    assert s.cart.qty_of("tea") == 2 and s.prices == {"tea": 3800}
    s, cmds = ss.step(s, ss.AddOne("tea", SHELF))  # only 2 in stock
    assert s.cart.qty_of("tea") == 2 and len(cmds) == 1 and isinstance(cmds[0], ss.Note)
    s, cmds = ss.step(s, ss.PressCheckout())
    assert cmds == [ss.PlaceOrder(s.cart)]
    s, _ = _run(
        s,
        ss.OrderPlaced("O1"),
        ss.OrderShown("O1", sale.State.AWAITING_PAYMENT, sale.View.PAYMENT),
    )
    assert ss.phase(s) is ss.Phase.PAYING and not s.cart.items and not s.shopping
    s, cmds = _run(s, ss.Browse(), ss.AddOne("pear", SHELF), ss.PressCheckout())
    assert cmds == [] and ss.phase(s) is ss.Phase.PAYING  # busy: taps ignored


def test_leaving_a_payment_cancels_it_and_goes_idle_once_cancelled() -> None:
    s, _ = _run(
        ss.new_session(10),
        ss.Browse(),
        ss.OrderShown("O1", sale.State.AWAITING_PAYMENT, sale.View.PAYMENT),
    )
    s, cmds = ss.step(s, ss.Leave(5.0))
    assert cmds == [ss.FeedShown("O1", sale.ShopperCancel(5.0))] and s.leaving
    s, _ = ss.step(s, ss.OrderStepped("O1", sale.State.CANCELLED))
    assert ss.phase(s) is ss.Phase.RESULT
    s, _ = ss.step(s, ss.Fed("O1", sale.State.CANCELLED))
    assert ss.phase(s) is ss.Phase.IDLE and s.shown is None and not s.leaving


def test_a_refused_cancel_keeps_the_payment_on_screen() -> None:
    s, _ = ss.step(
        ss.new_session(10), ss.OrderShown("O1", sale.State.AWAITING_PAYMENT, sale.View.PAYMENT)
    )
    s, _ = _run(s, ss.Leave(5.0), ss.Fed("O1", sale.State.AWAITING_PAYMENT))
    assert ss.phase(s) is ss.Phase.PAYING and not s.leaving


def test_out_of_service_blocks_starting_but_not_leaving() -> None:
    s, _ = ss.step(ss.new_session(10), ss.ServiceChanged(("board_offline",)))
    s, cmds = _run(s, ss.Browse(), ss.AddOne("tea", SHELF), ss.PressCheckout())
    assert ss.phase(s) is ss.Phase.IDLE and cmds == []
    s, cmds = ss.step(s, ss.Leave(1.0))
    assert ss.phase(s) is ss.Phase.IDLE and cmds == []


def test_a_dispensing_order_ignores_shopping_and_leaving() -> None:
    s, _ = ss.step(
        ss.new_session(10), ss.OrderShown("O1", sale.State.DISPENSING, sale.View.DISPENSING)
    )
    for inp in (ss.Browse(), ss.AddOne("tea", SHELF), ss.Cancel(1.0), ss.Leave(1.0)):
        s2, cmds = ss.step(s, inp)
        assert s2 == s and cmds == []


def test_the_service_menu_is_logged_and_tracked() -> None:
    s, cmds = ss.step(ss.new_session(10), ss.ServiceMenu("ServiceLogin", {"who": "t"}))
    assert s.service_menu and cmds == [ss.LogTechnician("ServiceLogin", {"who": "t"})]
    s, _ = ss.step(s, ss.ServiceMenu("ServiceExit", {}))
    assert not s.service_menu


def test_revend_only_with_proof_from_the_anchor() -> None:
    V = sale.VendOutcome
    assert revend.queried_verdict(V.UNKNOWN_TX, V.DELIVERED) is V.NOT_ACCEPTED
    assert revend.queried_verdict(V.UNKNOWN_TX, V.UNKNOWN_TX) is V.UNKNOWN_TX  # memory lost
    assert revend.queried_verdict(V.UNKNOWN_TX, None) is V.UNKNOWN_TX  # no anchor yet
    assert revend.queried_verdict(V.DELIVERED, V.DELIVERED) is V.DELIVERED
    assert revend.needs_proof(V.UNKNOWN_TX) and not revend.needs_proof(V.JAMMED)
