"""Large-text mode (大字模式, issue 17 req. 5): one tap on the attract or catalog screen, larger
type and fewer, bigger tiles through the whole purchase, a clear on/off state, and back to
normal at idle like the language. (Every screen in this mode at every size: test_layout.py.)"""

from __future__ import annotations

from kiosk.ui.i18n import CATALOGS


def _tiles(d) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for h in d.app.hits if h.name.startswith("tile-"))


def test_one_tap_on_attract_and_the_whole_flow_is_large(make_driver) -> None:  # type: ignore[no-untyped-def]
    d = make_driver((1080, 1920))
    assert d.screen == "attract"
    label = CATALOGS["zh"]["large.toggle"]
    assert any(r.text == label and r.role == "button" for r in d.app.texts)
    d.tap("start")
    normal_tiles, normal_text = _tiles(d), d.app.frame_m.text
    d.advance(61.0)  # idle: back to the attract screen
    assert d.screen == "attract"
    d.tap("large")  # one tap: shopping starts in large text
    assert d.screen == "catalog" and d.app.large
    m = d.app.frame_m
    assert m.large and 1.3 <= m.text / normal_text <= 1.5
    assert _tiles(d) < normal_tiles and _tiles(d) <= 4  # 2 columns on a portrait screen
    tile = next(h.name for h in d.app.hits if h.name.startswith("tile-"))
    d.tap(tile)
    assert d.screen == "product" and d.app.frame_m.large
    d.tap("add")
    d.tap("go-cart")
    assert d.screen == "cart" and d.app.frame_m.large
    d.tap("checkout")
    assert d.screen == "payment" and d.app.frame_m.large
    assert all(r.size >= normal_text or r.size < m.text for r in d.app.texts)  # no cut-down ui


def test_toggle_on_the_catalog_shows_its_state_and_resets_at_idle(make_driver) -> None:  # type: ignore[no-untyped-def]
    d = make_driver((800, 480), lang="en")
    d.tap("start")
    before = d.app.surface.copy()
    big = d.hit("large")
    d.tap("large")
    assert d.app.large and d.app.frame_m.large
    # the "on" state is drawn filled (white) where the "off" state was the red bar
    after = d.app.surface.get_at(d.hit("large").move(4, 0).midleft)
    assert before.get_at(big.move(4, 0).midleft) != after
    d.tap("large")
    assert not d.app.large
    d.tap("large")
    d.tap("lang")
    assert d.app.lang == "zh" and d.app.large
    d.advance(61.0)  # the inactivity timeout: the next shopper gets the defaults
    assert d.screen == "attract" and not d.app.large and d.app.lang == "en"
    assert not d.app.frame_m.large
