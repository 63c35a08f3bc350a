"""Every screen, at every supported size, in both languages: nothing overflows its box, no
text below 4.8 mm, every tap target at least 9 mm (>= 48 px), everything on screen."""

from __future__ import annotations

import pytest

from kiosk.sim.render import render_app
from kiosk.ui.app import SCREEN_NAMES
from kiosk.ui.theme import THEME, contrast_ratio, metrics_for

SIZES = [(1080, 1920), (1920, 1080), (1024, 600), (800, 480), (540, 960)]  # 540x960: the demo


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", SCREEN_NAMES)
def test_screen_fits(screen: str, size: tuple[int, int], lang: str) -> None:
    app = render_app(screen, size, lang)
    bounds = app.surface.get_rect()
    m = app.m
    assert app.texts, "nothing drawn"
    for r in app.texts:
        where = f"{r.text!r} box={r.box} drawn={r.drawn}"
        assert r.fits, f"does not fit: {where}"
        assert r.box.contains(r.drawn), f"overflows: {where}"
        assert bounds.contains(r.box), f"off screen: {where}"
        assert r.size >= m.small, f"text {r.size}px < {m.small}px (4.8 mm): {where}"
    for h in app.hits:
        assert h.rect.w >= m.touch and h.rect.h >= m.touch, f"small target {h.name} {h.rect}"
        assert bounds.contains(h.rect), f"target off screen {h.name} {h.rect}"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_metrics_meet_physical_minimums(size: tuple[int, int]) -> None:
    m = metrics_for(*size)
    assert m.touch >= 48 and m.touch >= m.mm(9)
    assert m.small >= m.mm(4.8)


def test_prices_and_names_are_never_cut_on_the_detail_screen() -> None:
    for size in SIZES:
        for lang in ("zh", "en"):
            app = render_app("product", size, lang)
            cut = [r.text for r in app.texts if r.truncated]
            assert not any("¥" in t for t in cut), cut


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
