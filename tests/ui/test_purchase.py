"""Whole purchases driven by real pygame touch and mouse events against the fake controller."""

from __future__ import annotations

import pytest

from kiosk.contract import AddToCart, BackToIdle, Checkout, EnterOfflineCode, StartShopping
from kiosk.core.planogram import SlotKind


@pytest.mark.parametrize("size", [(1080, 1920), (800, 480)])
@pytest.mark.parametrize("mouse", [False, True], ids=["touch", "mouse"])
def test_full_purchase(make_driver, size, mouse) -> None:
    d = make_driver(size)
    assert d.screen == "attract"
    d.tap("start", mouse=mouse)
    assert d.screen == "catalog"
    d.tap("tile-TEA-YXCL-100", mouse=mouse)
    assert d.screen == "product"
    d.tap("add", mouse=mouse)
    d.tap("add", mouse=mouse)
    assert d.app.view.qty_in_cart("TEA-YXCL-100") == 2
    d.tap("go-cart", mouse=mouse)
    assert d.screen == "cart"
    d.tap("minus-TEA-YXCL-100", mouse=mouse)
    assert d.app.view.cart_total_fen == 8800
    d.tap("checkout", mouse=mouse)
    assert d.screen == "payment"
    pay = d.app.view.payment
    assert pay is not None and pay.amount_fen == 8800
    d.fc.simulate_payment()
    d.run()
    assert d.screen == "dispensing"
    d.advance(2.0)
    assert d.screen == "done"
    d.tap("finish", mouse=mouse)
    assert d.screen == "attract"
    kinds = [type(i) for i in d.fc.posted]
    assert kinds.count(AddToCart) == 2 and kinds.count(Checkout) == 1
    assert kinds[0] is StartShopping and kinds[-1] is BackToIdle


def test_synthesized_mouse_does_not_double_count(make_driver) -> None:
    d = make_driver((1024, 600))
    d.tap("start")
    d.tap("tile-TEA-YXCL-100")
    d.tap("add", synth_mouse=True)
    assert d.app.view.qty_in_cart("TEA-YXCL-100") == 1
    assert sum(isinstance(i, AddToCart) for i in d.fc.posted) == 1


def test_drag_off_a_button_does_not_tap(make_driver) -> None:
    d = make_driver()
    d.tap("start")
    d.tap("tile-TEA-YXCL-100")
    add = d.hit("add")
    x0, y0 = d._norm(add.center)
    x1, y1 = d._norm((add.right + 50, add.y - 50))
    import pygame

    pygame.event.post(pygame.event.Event(pygame.FINGERDOWN, x=x0, y=y0, finger_id=1, touch_id=1))
    pygame.event.post(pygame.event.Event(pygame.FINGERUP, x=x1, y=y1, finger_id=1, touch_id=1))
    d.run()
    assert d.app.view.qty_in_cart("TEA-YXCL-100") == 0


def test_offline_code_then_locker_door(make_driver) -> None:
    d = make_driver((1920, 1080), kind=SlotKind.LOCKER)
    d.tap("start")
    d.tap("tile-HNY-YXTF-500")
    d.tap("add")
    d.tap("go-cart")
    d.tap("checkout")
    d.tap("code")
    assert d.screen == "offline_code"
    for digit in "11111111":  # wrong
        d.tap(f"key-{digit}")
    d.tap("key-ok")
    pay = d.app.view.payment
    assert pay is not None and pay.last_code_rejected and pay.offline_code_tries_left == 2
    assert d.app.top.digits == ""  # type: ignore[attr-defined]
    for digit in d.fc.offline_code:
        d.tap(f"key-{digit}")
    d.tap("key-ok")
    assert EnterOfflineCode(d.fc.offline_code) in d.fc.posted
    assert d.screen == "dispensing"
    disp = d.app.view.dispensing
    assert disp is not None and disp.open_door is not None
    assert any(str(disp.open_door) in r.text for r in d.app.texts)
    d.advance(2.0)
    assert d.screen == "done"


def test_failed_vend_shows_refund(make_driver) -> None:
    d = make_driver((800, 480), lang="en")
    d.fc.fail_slots.update(s.slot_no for s in d.fc.planogram.slots_for("TEA-YXCL-100"))
    d.tap("start")
    d.tap("tile-TEA-YXCL-100")
    d.tap("add")
    d.tap("go-cart")
    d.tap("checkout")
    d.fc.simulate_payment()
    d.advance(2.0)
    assert d.screen == "problem"
    shown = " ".join(r.text for r in d.app.texts)
    assert "¥88.00" in shown and "WeChat" in shown and "400-000-0000" in shown
    d.tap("problem-ok")
    assert d.screen == "attract"


def test_cancel_and_extend_payment(make_driver) -> None:
    d = make_driver()
    d.tap("start")
    d.tap("tile-TEA-YXCL-100")
    d.tap("add")
    d.tap("go-cart")
    d.tap("checkout")
    before = d.app.view.payment.expires_at  # type: ignore[union-attr]
    d.tap("more-time")
    assert d.app.view.payment.expires_at > before  # type: ignore[union-attr]
    d.tap("cancel")
    assert d.screen == "confirm"  # asks first
    d.tap("confirm-yes")
    assert d.screen == "catalog"
    assert d.app.view.cart_count == 1


def test_language_toggle_on_every_shopper_screen(make_driver) -> None:
    d = make_driver()
    d.tap("lang")  # on the attract screen: English, and start
    assert d.screen == "catalog" and d.app.lang == "en"
    assert any(r.text == "Choose a product" for r in d.app.texts)
    d.tap("lang")
    assert d.app.lang == "zh"
    for name in ("tile-TEA-YXCL-100",):
        d.tap(name)
        d.hit("lang")
    d.tap("add")
    d.tap("go-cart")
    d.hit("lang")
    d.tap("checkout")
    d.hit("lang")
