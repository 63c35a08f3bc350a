"""Every screen, at every supported size, in both languages, in normal and large-text mode:
nothing overflows its box, no text below 4.8 mm, every tap target at least 9 mm (>= 48 px),
everything on screen; no price, total, button label, product name or header title cut, no
text cut on a service screen, and no orphan (one character, or only punctuation, alone on a
line)."""

from __future__ import annotations

import pygame
import pytest
import zxingcpp
from PIL import Image

from kiosk.sim.render import render_app
from kiosk.ui.app import SCREEN_NAMES, UiApp
from kiosk.ui.i18n import CATALOGS
from kiosk.ui.screens.payment import QR_MODULE_PX
from kiosk.ui.textlayout import orphan_lines
from kiosk.ui.theme import THEME, contrast_ratio, metrics_for

SIZES = [(1080, 1920), (1920, 1080), (1024, 600), (800, 480), (540, 960)]  # 540x960: the demo


#: Never cut: a product name too (on a tile, the grid takes fewer columns or gives the name a
#: third line before that), and a header's title (it wraps into a taller bar instead).
NEVER_CUT = ("price", "total", "button", "name", "title")
PRODUCT_ROWS = ("origin", "producer", "cert", "spec", "shelf_life", "stock")


def text_faults(app: UiApp) -> list[str]:
    """What the frame drew wrong: a price, total, button label, product name or header title
    cut (or anything with a money amount), any text cut on a technician's screen, an orphan
    line."""
    faults = []
    for r in app.texts:
        where = f"{r.role or 'text'} {r.text!r} drawn as {r.lines}"
        if (r.role in NEVER_CUT or "¥" in r.text) and (r.truncated or not r.fits):
            faults.append(f"cut: {where}")
        elif app.in_service and r.truncated:  # names, URLs: a technician needs all of it
            faults.append(f"cut on a service screen: {where}")
        if orphan_lines(r.text, r.lines):
            faults.append(f"orphan {orphan_lines(r.text, r.lines)}: {where}")
    return faults


# Large text at every size too; the service screens are a technician's, always the normal
# size, so drawn once.
LARGE_SIZES = SIZES
CASES = [
    pytest.param(
        screen, large, size, id=f"{screen}-{'large' if large else 'normal'}-{size[0]}x{size[1]}"
    )
    for screen in SCREEN_NAMES
    for large in (False, True)
    for size in (LARGE_SIZES if large else SIZES)
    if not (large and screen.startswith("service_"))
]


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize(("screen", "large", "size"), CASES)
def test_screen_fits(screen: str, size: tuple[int, int], lang: str, large: bool) -> None:
    app = render_app(screen, size, lang, large=large)
    assert app.large is large
    assert not text_faults(app)
    bounds = app.surface.get_rect()
    m = app.frame_m
    # large text on every panel: never the normal size instead (no fallback on a 7" one)
    assert m.large is (large and not app.in_service), "drawn at the normal size"
    assert app.texts, "nothing drawn"
    d = app.view.dispensing
    if screen.startswith("dispensing") and d is not None:  # every item listed, none dropped
        statuses = {CATALOGS[lang][f"dispense.{i.status}"] for i in d.items}
        listed = [r.text for r in app.texts if r.text in statuses]
        assert len(listed) == len(d.items), f"{len(listed)} of {len(d.items)} items listed"
    if any(s.name == "product" for s in app.stack):  # every row of the product's table
        labels = [CATALOGS[lang][f"product.{k}"] for k in PRODUCT_ROWS]
        shown = [r.text for r in app.texts if r.text in labels]
        assert len(shown) == len(labels), f"product table rows: {shown}"
    for r in app.texts:
        where = f"{r.text!r} box={r.box} drawn={r.drawn}"
        assert r.fits, f"does not fit: {where}"
        assert r.box.contains(r.drawn), f"overflows: {where}"
        assert bounds.contains(r.box), f"off screen: {where}"
        assert r.size >= m.floor, f"text {r.size}px < {m.floor}px (4.8 mm): {where}"
    for h in app.hits:
        assert h.rect.w >= m.touch and h.rect.h >= m.touch, f"small target {h.name} {h.rect}"
        assert bounds.contains(h.rect), f"target off screen {h.name} {h.rect}"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_metrics_meet_physical_minimums(size: tuple[int, int]) -> None:
    m = metrics_for(*size)
    assert m.touch >= 48 and m.touch >= m.mm(9)
    assert m.small >= m.mm(4.8) and m.floor >= m.mm(4.8)


def test_the_check_fails_on_a_cut_label(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CATALOGS["en"], "payment.cancel", "Cancel this order and go back")
    faults = text_faults(render_app("payment", (540, 960), "en"))
    assert any("Cancel this order" in f and f.startswith("cut: button") for f in faults), faults


def test_the_check_fails_on_an_orphan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Greedy breaking alone (the old layout: no orphan rule, no unbreakable words) leaves 货。
    alone on the last line."""
    import re

    import kiosk.ui.textlayout as textlayout

    app = render_app("payment_cancel", (800, 480), "zh")
    assert not text_faults(app)
    import kiosk.ui.widgets as widgets

    monkeypatch.setattr(textlayout, "_fix_orphans", lambda *a: None)
    monkeypatch.setattr(textlayout, "_GLUE", re.compile(r"(?!)"))
    monkeypatch.setattr(widgets, "_LAYOUT_CACHE", {})
    faults = text_faults(render_app("payment_cancel", (800, 480), "zh"))
    assert any(f.startswith("orphan ['货。']") for f in faults), faults


def test_palette_contrast() -> None:
    c = THEME
    pairs = [
        (c.text, c.bg),
        (c.muted, c.bg),
        (c.on_primary, c.primary),
        (c.price, c.surface),
        (c.on_badge, c.badge),
        (c.on_secondary, c.secondary),
        (c.on_dark, c.dark_bg),
        (c.on_header, c.header),
        (c.ok, c.bg),
        (c.error, c.surface),
        (c.warn, c.surface),
        (c.on_disabled, c.disabled),
        (c.on_dark_accent, c.dark_bg),
        (c.warn, c.banner),
        (c.text, c.banner),
        (c.on_primary, c.wechat),
        (c.on_primary, c.alipay),
    ]
    for fg, bg in pairs:
        assert contrast_ratio(fg, bg) >= 4.5, (fg, bg)


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
@pytest.mark.parametrize("large", [False, True], ids=["normal", "large"])
@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_payment_qr_modules_are_big_enough(
    size: tuple[int, int], lang: str, large: bool, offline: bool
) -> None:
    """The payment QR (online and offline) has at least QR_MODULE_PX per module at every size,
    in both languages and both text sizes, on screen, clear of every text, and decodes to the
    pay URL (zxing-cpp)."""
    app = render_app("payment_offline" if offline else "payment", size, lang, large=large)
    assert app.view.payment is not None
    ui = app.render()
    assert len(ui.qrs) == 1
    data, rect, module = ui.qrs[0]
    assert data == app.view.payment.pay_url
    assert module >= QR_MODULE_PX, (rect, module)
    assert app.surface.get_rect().contains(rect)
    for r in app.texts:
        assert not r.box.colliderect(rect), r
    raw = pygame.image.tobytes(app.surface, "RGB")
    image = Image.frombytes("RGB", app.surface.get_size(), raw)
    assert [b.text for b in zxingcpp.read_barcodes(image)] == [data]
