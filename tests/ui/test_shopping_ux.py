"""Shopping details of issue 17 req. 4: spec and stock state on every tile, the cart total always
visible, add-to-cart feedback, the product page titled with the product, the failed item named on
the problem screen, and a receipt QR of at least 6 px modules, at every size in both languages."""

from __future__ import annotations

from dataclasses import replace

import pygame
import pytest

from kiosk.clock import ManualClock
from kiosk.contract import ViewState
from kiosk.core.payment import make_order_id
from kiosk.sim.fake_controller import demo_view
from kiosk.sim.render import render_app
from kiosk.ui.i18n import CATALOGS, Translator, product_text
from kiosk.ui.screens.catalog import LOW_STOCK
from kiosk.ui.screens.done import RECEIPT_MODULE_PX

SIZES = [(1080, 1920), (1920, 1080), (800, 480), (540, 960)]
LANGS = ["zh", "en"]
sizes = pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
langs = pytest.mark.parametrize("lang", LANGS)


def _stocked(view: ViewState) -> ViewState:
    """The first product sold out, the second running low, the rest as they are."""
    pvs = list(view.products)
    pvs[0] = replace(pvs[0], stock_left=0)
    pvs[1] = replace(pvs[1], stock_left=2)
    return replace(view, products=tuple(pvs))


@sizes
@langs
def test_tiles_show_spec_and_stock_state(size: tuple[int, int], lang: str) -> None:
    view = _stocked(demo_view("catalog", ManualClock()))
    app = render_app("catalog", size, lang, view)
    t = Translator(lang)
    texts = [r.text for r in app.texts]
    tiles = [h.name.removeprefix("tile-") for h in app.hits if h.name.startswith("tile-")]
    assert tiles
    for pid in tiles:
        pv = view.product(pid)
        assert pv is not None
        assert product_text(pv.product, "spec", lang) in texts, pid
    shown = {pv.product.product_id: pv for pv in view.products if pv.product.product_id in tiles}
    if any(pv.sold_out for pv in shown.values()):
        assert t("catalog.sold_out") in texts
    low = [pv for pv in shown.values() if 0 < pv.stock_left <= LOW_STOCK]
    for pv in low:
        assert t("catalog.low", n=pv.stock_left) in texts
    assert low or size == (800, 480) or size == (540, 960), "the low product is on page one"
    for r in app.texts:
        if r.text.startswith(("¥", t("catalog.low", n=2), t("catalog.sold_out"))):
            assert r.fits and not r.truncated, r


@sizes
@langs
def test_cart_total_always_visible(size: tuple[int, int], lang: str) -> None:
    view = demo_view("catalog", ManualClock())
    app = render_app("catalog", size, lang, view)
    total = Translator(lang).money(view.cart_total_fen)
    cart = next(h.rect for h in app.hits if h.name == "cart")
    labels = [r for r in app.texts if cart.contains(r.box)]
    assert labels and total in labels[0].text and not labels[0].truncated, labels


@pytest.mark.parametrize(("size", "lang"), [((540, 960), "en"), ((1080, 1920), "zh")])
def test_add_to_cart_says_so(make_driver, size: tuple[int, int], lang: str) -> None:  # type: ignore[no-untyped-def]
    d = make_driver(size, lang=lang)
    t = Translator(lang)
    d.tap("start")
    d.tap("tile-TEA-YXCL-100")
    pv = d.app.view.product("TEA-YXCL-100")
    assert pv is not None
    name = product_text(pv.product, "name", lang)
    assert any(r.text == name and r.box.y < d.app.m.touch for r in d.app.texts)  # the title
    assert t("product.added", count=1) not in [r.text for r in d.app.texts]
    d.tap("add")
    added = [r for r in d.app.texts if r.text == t("product.added", count=1)]
    assert added and added[0].fits
    assert d.app.next_wakeup(d.app.now()) is not None  # the toast goes away by itself
    d.advance(3.0)
    assert t("product.added", count=1) not in [r.text for r in d.app.texts]
    d.tap("add")
    assert t("product.added", count=2) in [r.text for r in d.app.texts]


def test_a_refused_add_shows_no_toast(make_driver) -> None:  # type: ignore[no-untyped-def]
    d = make_driver()
    d.tap("start")
    d.tap("tile-TEA-YXCL-100")
    d.fc.max_cart_items = 0  # the controller refuses the add the screen still offers
    d.tap("add")
    assert d.app.view.cart_count == 0
    assert not any(r.text.startswith("已加入") for r in d.app.texts)


@sizes
@langs
def test_problem_screen_names_the_failed_item(size: tuple[int, int], lang: str) -> None:
    view = demo_view("problem", ManualClock())
    assert view.problem is not None and view.problem.failed
    app = render_app("problem", size, lang, view)
    names = []
    for pid in set(view.problem.failed):
        pv = view.product(pid)
        assert pv is not None
        names.append(product_text(pv.product, "name", lang))
    line = [r for r in app.texts if all(n in r.text for n in names)]
    assert line and line[0].fits and not line[0].truncated
    assert CATALOGS[lang]["problem.failed_items"].split("{")[0] in line[0].text


@sizes
@langs
@pytest.mark.parametrize("real_url", [False, True], ids=["demo-url", "kiosk-url"])
def test_receipt_qr_modules_are_big_enough(
    size: tuple[int, int], lang: str, real_url: bool
) -> None:
    view = demo_view("done", ManualClock())
    assert view.done is not None
    if real_url:  # what the controller makes: pay_url_base?receipt=<order id>
        order = make_order_id("AH-340100-0001", 123456, "K7M2")
        url = f"http://127.0.0.1:8780/pay?receipt={order}"
        view = replace(view, done=replace(view.done, receipt_url=url))
    app = render_app("done", size, lang, view)
    ui = app.render()
    assert len(ui.qrs) == 1
    data, rect, module = ui.qrs[0]
    assert data == view.done.receipt_url  # type: ignore[union-attr]
    assert module >= RECEIPT_MODULE_PX, (size, rect, module)
    assert app.surface.get_rect().contains(rect)
    for r in app.texts:
        assert r.fits and not r.box.colliderect(rect), r


@pytest.mark.parametrize("size", [(1080, 1920), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_painted_tiles_follow_what_they_show(make_driver, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    """A catalog tile painted the same twice is kept and reused (`CatalogScreen._tiles`, the
    last frame's): a frame of reused tiles is the frame painted afresh, pixel for pixel, with
    the same texts; a tile shown once keeps no copy; a tile whose stock, language or text size
    changed is painted again; only the tiles on the screen are kept."""
    d = make_driver(size)
    d.tap("start")
    cat = d.app.top
    assert cat.name == "catalog"
    painted: list[str] = []
    real_paint = cat._paint_tile

    def paint(ui, tile, pv, *rest):  # type: ignore[no-untyped-def]
        painted.append(pv.product.product_id)
        real_paint(ui, tile, pv, *rest)

    cat._paint_tile = paint

    def frame(*, fresh: bool = False) -> tuple[bytes, list[str]]:
        if fresh:
            cat._tiles.clear()
        d.app.dirty = True
        d.app.render()
        return pygame.image.tobytes(d.app.surface, "RGB"), [r.text for r in d.app.texts]

    def tiles() -> list[str]:
        return [h.name.removeprefix("tile-") for h in d.app.hits if h.name.startswith("tile-")]

    frame()  # painted the same a second time: kept
    painted.clear()
    reused = frame()
    assert painted == [] and reused == frame(fresh=True)  # the same as painted afresh
    assert not any(cat._tiles.kept(pid) for pid in tiles())  # shown once: no copy kept
    assert len(cat._tiles) == len(tiles()) and all(pid in cat._tiles for pid in tiles())
    frame()
    first = tiles()[0]
    with d.fc._lock:
        for k, s in enumerate(d.fc.planogram.slots_for(first)):
            d.fc.stock[s.slot_no] = 2 if k == 0 else 0
        painted.clear()
        d.fc._publish()
    d.run()
    assert painted == [first]  # only the tile whose stock changed
    low = frame()
    assert Translator("zh")("catalog.low", n=2) in low[1]
    assert low == frame(fresh=True)
    for switch in ("lang", "large"):
        d.tap(switch)
        frame()
        painted.clear()
        reused = frame()
        assert painted == [] and reused == frame(fresh=True), switch
    d.tap("next")
    assert len(cat._tiles) == len(tiles()) and all(pid in cat._tiles for pid in tiles())
    assert first not in cat._tiles
