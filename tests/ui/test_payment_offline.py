"""Offline payment explains itself (issue 17 req. 3) and the payment screen's other parts
(req. 4): the "kiosk offline" band in the pay page's words, 8 code boxes, WeChat Pay / Alipay
marks, "more time" no louder than the rest, and a question before an order is cancelled."""

from __future__ import annotations

import pygame
import pytest

from kiosk.contract import CancelOrder, EnterOfflineCode
from kiosk.core.payment import OFFLINE_CODE_DIGITS
from kiosk.sim import paypage
from kiosk.sim.render import render_app
from kiosk.ui.i18n import CATALOGS
from kiosk.ui.theme import THEME

SIZES = [(1080, 1920), (1920, 1080), (800, 480), (540, 960)]


def _shown(app) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(r.text for r in app.texts)


def _has_colour(surface: pygame.Surface, color: tuple[int, int, int]) -> bool:
    return pygame.mask.from_threshold(surface, color, (2, 2, 2, 255)).count() > 0


def _to_payment(d):  # type: ignore[no-untyped-def]
    d.tap("start")
    d.tap("tile-TEA-YXCL-100")
    d.tap("add")
    d.tap("go-cart")
    d.tap("checkout")
    assert d.screen == "payment"


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_offline_band_marks_and_buttons_fit(size: tuple[int, int], lang: str) -> None:
    msgs = CATALOGS[lang]
    online = render_app("payment", size, lang)
    offline = render_app("payment_offline", size, lang)
    assert msgs["payment.offline_title"] not in _shown(online)
    shown = _shown(offline)
    assert msgs["payment.offline_title"] in shown and msgs["payment.offline_body"] in shown
    for app in (online, offline):
        texts = _shown(app)
        assert msgs["payment.wechat"] in texts and msgs["payment.alipay"] in texts
        assert _has_colour(app.surface, THEME.wechat) and _has_colour(app.surface, THEME.alipay)
        for r in app.texts:  # nothing cut: prices, the band, the buttons
            assert r.fits and not r.truncated, (r.text, r.box, r.drawn)
        names = {h.name for h in app.hits}
        assert {"cancel", "code", "more-time"} <= names
    # offline, the code button is the prominent (filled) one: its centre is the primary colour
    code = next(h.rect for h in offline.hits if h.name == "code")
    edge = (code.x + 4, code.centery)
    assert offline.surface.get_at(edge)[:3] == THEME.primary
    assert online.surface.get_at(edge)[:3] != THEME.primary
    # "more time" is never filled: it is secondary to the QR code
    more = next(h.rect for h in offline.hits if h.name == "more-time")
    assert offline.surface.get_at((more.x + 4, more.centery))[:3] == THEME.surface


def test_kiosk_and_pay_page_use_the_same_words() -> None:
    zh, en = CATALOGS["zh"], CATALOGS["en"]
    note = paypage._OFFLINE_NOTE
    for msgs in (zh, en):
        assert f"“{msgs['payment.offline_title']}”" in note
        assert f"“{msgs['payment.code']}”" in note  # the button the shopper taps
        assert str(OFFLINE_CODE_DIGITS) in msgs["payment.offline_body"]
    assert zh["payment.offline_title"] == "网络断开"
    assert zh["oos.network_down"].startswith(zh["payment.offline_title"])  # one word for it
    assert not any("网络中断" in v for v in zh.values())


@pytest.mark.parametrize("size", [(1080, 1920), (800, 480), (540, 960)])
def test_code_pad_has_a_box_per_digit(make_driver, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    d = make_driver(size)
    _to_payment(d)
    d.fc.set_province_online(False)
    d.run()
    assert CATALOGS["zh"]["payment.offline_title"] in _shown(d.app)
    d.tap("code")
    assert d.screen == "offline_code"
    code = d.fc.offline_code
    assert len(code) == OFFLINE_CODE_DIGITS == 8
    for digit in code[:-1]:
        d.tap(f"key-{digit}")
        assert "key-ok" not in {h.name for h in d.app.hits}  # OK only with all 8 digits
    d.tap(f"key-{code[-1]}")
    drawn = [r for r in d.app.texts if len(r.text) == 1 and r.text.isdigit()]
    keys = [h.rect for h in d.app.hits if h.name.startswith("key-")]
    boxes = [r for r in drawn if not any(k.contains(r.box) for k in keys)]  # not the keys
    assert "".join(r.text for r in sorted(boxes, key=lambda r: r.box.x)) == code
    assert all(r.fits for r in boxes)
    d.tap("key-ok")
    assert EnterOfflineCode(code) in d.fc.posted
    assert d.screen == "dispensing"


def test_cancel_asks_first(make_driver) -> None:  # type: ignore[no-untyped-def]
    d = make_driver((540, 960), lang="en")
    _to_payment(d)
    d.tap("cancel")
    assert d.screen == "confirm"
    assert CATALOGS["en"]["payment.cancel_title"] in _shown(d.app)
    assert not any(isinstance(i, CancelOrder) for i in d.fc.posted)
    d.tap("confirm-no")
    assert d.screen == "payment"
    d.tap("cancel")
    d.tap("confirm-yes")
    assert CancelOrder() in d.fc.posted
    assert d.screen == "catalog"
