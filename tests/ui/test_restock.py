"""Restock built for 60 slots (issue 17 req. 6): a fixed layout (a result never moves a row),
fill this page / fill all behind a question, a "needs refilling" filter, a count dialog with the
product and the count now, planogram slot numbers, and 未分配商品 for a slot without a product."""

from __future__ import annotations

from dataclasses import replace

import pygame
import pytest

from kiosk.clock import ManualClock
from kiosk.contract import Restock
from kiosk.sim.fake_controller import demo_view
from kiosk.sim.render import render_app
from kiosk.ui.app import show
from kiosk.ui.i18n import CATALOGS, Translator
from kiosk.ui.screens.service_slots import MIN_ROWS

SIZES = [(1080, 1920), (1920, 1080), (800, 480), (540, 960)]


def _restock(make_driver, size=(1080, 1920), lang="zh"):  # type: ignore[no-untyped-def]
    d = make_driver(size, lang=lang)
    for slot in d.fc.planogram:  # a few slots need refilling, the rest are full
        d.fc.stock[slot.slot_no] = slot.capacity
    for n in (10, 12, 13, 40, 55):
        d.fc.stock[n] = 1
    d.fc.set_out_of_service(None)  # publishes the new counts
    show(d.app, "service_restock")
    d.run()
    return d


def _rows(d) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        h.name: tuple(h.rect)
        for h in d.app.hits
        if h.name.startswith(("fill-", "set-")) and h.name.split("-")[1].isdigit()
    }


def _restocks(d) -> list[Restock]:  # type: ignore[no-untyped-def]
    return [i for i in d.fc.posted if isinstance(i, Restock)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_fill_moves_no_row(make_driver, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    d = _restock(make_driver, size)
    before = _rows(d)
    d.tap("fill-10")
    assert Restock(10, None) in d.fc.posted
    assert _rows(d) == before  # the result shows in the bottom line, nothing shifts
    shown = [r.text for r in d.app.texts]
    assert CATALOGS["zh"]["service.filled_one"].format(slot=10) in shown


def test_fill_page_and_fill_all_ask_first(make_driver) -> None:  # type: ignore[no-untyped-def]
    d = _restock(make_driver)
    on_page = {int(n.removeprefix("fill-")) for n in _rows(d) if n.startswith("fill-")}
    d.tap("fill-page")
    assert d.screen == "service_confirm" and not _restocks(d)
    d.tap("confirm-no")
    assert d.screen == "service_slots" and not _restocks(d)
    d.tap("fill-page")
    d.tap("confirm-yes")
    page_needed = {n for n in (10, 12, 13, 40, 55) if n in on_page}
    assert {r.slot for r in _restocks(d)} == page_needed and page_needed
    d.tap("fill-all")
    body = CATALOGS["zh"]["service.fill_body"]
    left = {10, 12, 13, 40, 55} - page_needed
    assert body.format(
        n=len(left), items=sum(d.fc.planogram.slots[n].capacity - 1 for n in left)
    ) in [r.text for r in d.app.texts]
    d.tap("confirm-yes")
    assert {r.slot for r in _restocks(d)} == {10, 12, 13, 40, 55}
    assert all(r.count is None for r in _restocks(d))
    assert all(s.count == s.capacity for s in d.app.view.service.slots if s.product_id)


def test_needs_refilling_filter(make_driver) -> None:  # type: ignore[no-untyped-def]
    d = _restock(make_driver, (800, 480))
    d.tap("filter-refill")
    shown = {int(n.removeprefix("fill-")) for n in _rows(d) if n.startswith("fill-")}
    assert shown and shown <= {10, 12, 13, 40, 55}
    before = _rows(d)
    first = min(shown)
    d.tap(f"fill-{first}")
    assert _rows(d) == before  # a filled slot stays where it was until the page changes
    d.tap("filter-refill")
    d.tap("filter-refill")
    assert first not in {int(n.removeprefix("fill-")) for n in _rows(d) if n.startswith("fill-")}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_count_dialog_names_the_product_and_the_count(make_driver, lang: str) -> None:  # type: ignore[no-untyped-def]
    d = _restock(make_driver, (540, 960), lang)
    t = Translator(lang)
    d.tap("set-12")
    assert d.screen == "service_count"
    slot = next(s for s in d.app.view.service.slots if s.slot_no == 12)
    pv = d.app.view.product(slot.product_id or "")
    assert pv is not None
    name = pv.product.name_en if lang == "en" else pv.product.name_zh
    texts = [r.text for r in d.app.texts]
    assert t("service.count_title", slot=12, name=name) in texts
    assert t("service.count_now", count=1, cap=slot.capacity) in texts
    d.tap("count-4")
    d.tap("count-ok")
    assert Restock(12, 4) in d.fc.posted


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_unassigned_slot_and_fit(size: tuple[int, int], lang: str) -> None:
    view = demo_view("service_restock", ManualClock())
    slots = list(view.service.slots)
    slots[1] = replace(slots[1], product_id=None, count=0)
    view = replace(view, service=replace(view.service, slots=tuple(slots)))
    for screen in ("service_restock", "service_count", "service_stock"):
        app = render_app(screen, size, lang, view)
        texts = [r.text for r in app.texts]
        if screen != "service_count":
            assert CATALOGS[lang]["service.unassigned"] in texts
            assert f"fill-{slots[1].slot_no}" not in {h.name for h in app.hits}
        t = Translator(lang)  # the planogram's number, in full or short (#10) on a narrow row
        labels = {t(k, slot=slots[0].slot_no) for k in ("service.slot", "service.slot_short")}
        assert labels & set(texts)
        for r in app.texts:
            assert r.fits, r
            if r.text.endswith(f"/{slots[0].capacity}") or r.text in CATALOGS[lang].values():
                assert not r.truncated, r  # counts, buttons and labels are never cut
        m = app.m
        for h in app.hits:
            assert h.rect.w >= m.touch and h.rect.h >= m.touch, h


def test_screen_and_guide_use_the_same_words() -> None:
    from pathlib import Path

    guide = (Path(__file__).parents[2] / "docs" / "technician-guide.md").read_text("utf-8")
    zh = CATALOGS["zh"]
    for key in ("service.fill", "service.title", "service.restock", "service.fill_all"):
        assert zh[key] in guide, key
    assert "维护密码" in zh["service.pin_hint"] and "维护密码" in guide
    for old in ("装满", "服务菜单", "服务密码", "空货道"):
        assert old not in guide and not any(old in v for v in zh.values()), old


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_800x480_shows_six_rows_a_page(lang: str) -> None:
    """A 7" panel: at least MIN_ROWS (6) rows a page in both languages (60 slots in 10 pages,
    not 20 in English), the tools in the header bar, every name whole on one line."""
    view = demo_view("service_restock", ManualClock())
    app = render_app("service_restock", (800, 480), lang, view)
    rows = [h for h in app.hits if h.name.startswith("fill-") and h.name[5:].isdigit()]
    assert len(rows) >= MIN_ROWS, len(rows)
    pages = -(-len(view.service.slots) // len(rows))
    assert pages <= 10 and Translator(lang)("catalog.page", page=1, pages=pages) in [
        r.text for r in app.texts
    ]
    assert {"filter-refill", "fill-page", "fill-all"} <= {h.name for h in app.hits}
    names = {
        r.text: r.lines
        for r in app.texts
        if any(r.text == p.product.name_en or r.text == p.product.name_zh for p in view.products)
    }
    assert names and all(len(lines) == 1 for lines in names.values()), names
    assert not [r for r in app.texts if r.truncated or not r.fits]


@pytest.mark.parametrize("size", [(1080, 1920), (800, 480)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_kept_rows_are_the_rows_painted_afresh(make_driver, size, lang) -> None:  # type: ignore[no-untyped-def]
    """Restock rows painted the same twice are kept (KeptPieces): a frame of kept rows equals
    one painted afresh (pixels, texts, touch targets), a fill repaints only the rows whose
    count changed, and a kept row's buttons still act."""
    d = _restock(make_driver, size, lang)
    scr = d.app.top
    painted: list[int] = []
    real = scr._draw_row

    def draw_row(ui, row, s, shape):  # type: ignore[no-untyped-def]
        painted.append(s.slot_no)
        real(ui, row, s, shape)

    scr._draw_row = draw_row

    def frame(*, fresh: bool = False):  # type: ignore[no-untyped-def]
        if fresh:
            scr._rows.clear()
        d.app.dirty = True
        d.app.render()
        return (
            pygame.image.tobytes(d.app.surface, "RGB"),
            list(d.app.texts),
            [(h.name, tuple(h.rect)) for h in d.app.hits],
        )

    frame()
    painted.clear()
    kept = frame()
    assert painted == [] and kept == frame(fresh=True)
    frame()
    painted.clear()
    d.tap(next(n for n in _rows(d) if n.startswith("fill-")))  # a kept row's button
    assert any(isinstance(i, Restock) for i in d.fc.posted)
    d.run()
    assert 0 < len(set(painted)) <= 2  # the filled row (and its green edge), nothing else
    frame()
    assert frame() == frame(fresh=True)
    frame()
    sold = [int(n.split("-")[1]) for n in _rows(d) if n.startswith("set-")][-1]
    d.fc.stock[sold] -= 1  # a sale meanwhile: only that row changes
    painted.clear()
    d.fc.set_out_of_service(None)  # publishes the count
    d.run()
    assert painted == [sold]
    assert frame() == frame(fresh=True)
