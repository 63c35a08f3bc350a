"""The UI's words: one name for the control board (控制板, as the outcomes and the technician
guide say), native service counters, English singular and plural, the product page's cart
button meaning what it does, and the payment buttons at one size."""

from __future__ import annotations

import pytest

from kiosk.sim.render import render_app
from kiosk.ui.i18n import CATALOGS, Translator


def test_the_control_board_has_one_name() -> None:
    zh = CATALOGS["zh"]
    assert not [k for k, v in zh.items() if "主板" in v]
    assert zh["service.board"] == "控制板状态"
    assert zh["service.board_n"].startswith("控制板 ")


def test_service_words_read_natively() -> None:
    zh = CATALOGS["zh"]
    assert zh["counter.naks_received"] == "收到的否定应答（NAK）"
    assert zh["counter.late_responses"] == "超时后到达的应答"
    assert zh["service.prio.critical"] == "紧急"
    assert zh["outcome.UNKNOWN_TX"] == "控制板没有这次操作的记录"
    assert zh["outcome.NO_ANSWER"] == "控制板无应答"
    # the product page's button opens the cart, in both languages
    assert zh["product.go_cart"] == "去购物车"
    assert CATALOGS["en"]["product.go_cart"] == "Go to cart"


def test_english_says_singular_and_plural() -> None:
    t = Translator("en")
    assert t("problem.vend_failed", count=1) == "1 item could not be dispensed."
    assert t("problem.vend_failed", count=2) == "2 items could not be dispensed."
    assert (
        t("problem.partly_delivered", delivered=3, failed=1)
        == "3 items were dispensed; 1 could not be."
    )
    assert (
        t("problem.partly_delivered", delivered=1, failed=2)
        == "1 item was dispensed; 2 could not be."
    )
    assert "You don't need to do anything." in t("problem.refund", amount="¥1.00", channel="x")
    assert not [v for v in CATALOGS["en"].values() if "(s)" in v]


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_payment_buttons_share_one_size(lang: str, offline: bool) -> None:
    """540x960 in large text: "Enter code" and "More time" used to shrink on their own, drawn
    smaller than "Cancel"."""
    app = render_app("payment_offline" if offline else "payment", (540, 960), lang, large=True)
    t = Translator(lang)
    labels = {t("payment.cancel"), t("payment.code"), t("payment.more_time")}
    sizes = {r.text: r.size for r in app.texts if r.text in labels and r.role == "button"}
    assert set(sizes) == labels
    assert len(set(sizes.values())) == 1, sizes
