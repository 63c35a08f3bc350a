"""Service panels in the UI's language with the links at a glance (issue 17 req. 7): no raw
counter names such as `frames_sent` in the Chinese UI, and "省平台 在线/离线", "控制板 在线/离线"
on the menu and the sync, board and network panels, at every size in both languages."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest

from kiosk.clock import ManualClock
from kiosk.contract import BoardInfoView, ViewState
from kiosk.hardware.link_parts import FrameReader, LinkCounters
from kiosk.sim.fake_controller import demo_view
from kiosk.sim.render import render_app
from kiosk.ui.i18n import CATALOGS, Translator

SIZES = [(1080, 1920), (1920, 1080), (800, 480), (540, 960)]
PANELS = ["service_menu", "service_sync", "service_board", "service_network"]
#: every counter the serial link reports (SerialLink.counters)
COUNTERS = [f.name for f in dataclasses.fields(LinkCounters)] + [
    *FrameReader._KEYS,
    "rto_ms",
    "srtt_ms",
]


def _view(province: bool | None, board: bool) -> ViewState:
    v = demo_view("service_menu", ManualClock())
    counters = dict.fromkeys(COUNTERS, 7)
    boards = (BoardInfoView(board, 1, "vb-1.4.2", counters),)
    return replace(v, province_online=province, service=replace(v.service, boards=boards))


def test_every_link_counter_has_words_in_both_languages() -> None:
    for lang, msgs in CATALOGS.items():
        for name in COUNTERS:
            assert f"counter.{name}" in msgs, (lang, name)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_board_panel_speaks_the_ui_language(size: tuple[int, int], lang: str) -> None:
    app = render_app("service_board", size, lang, _view(True, True))
    texts = [r.text for r in app.texts]
    assert not [x for x in texts if x.strip() in COUNTERS], texts  # no raw names
    t = Translator(lang)
    assert t("counter.crc_errors") in texts and t("counter.timeouts") in texts  # trouble first
    if size == (1080, 1920):
        assert all(t(f"counter.{k}") in texts for k in COUNTERS)
    for r in app.texts:
        assert r.fits, r


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize(
    ("province", "board"), [(True, True), (False, True), (True, False), (None, False)]
)
def test_links_at_a_glance(
    size: tuple[int, int], lang: str, province: bool | None, board: bool
) -> None:
    t = Translator(lang)

    def state(up: bool | None) -> str:
        return (
            t("service.link_unknown")
            if up is None
            else t(f"service.{'online' if up else 'offline'}")
        )

    want = {
        f"{t('service.link_province')} {state(province)}",
        f"{t('service.link_board')} {state(board)}",
    }
    for panel in PANELS:
        app = render_app(panel, size, lang, _view(province, board))
        shown = {r.text for r in app.texts}
        assert want <= shown, (panel, want, shown)
        for r in app.texts:
            if r.text in want:
                assert r.fits and not r.truncated, r


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_results_are_worded_in_the_ui_language(make_driver, lang: str) -> None:  # type: ignore[no-untyped-def]
    from kiosk.ui.app import show

    d = make_driver((800, 480), lang=lang)
    t = Translator(lang)
    show(d.app, "service_restock")
    d.run()
    d.tap("set-11")
    d.tap("count-3")
    d.tap("count-ok")
    assert t("result.restocked", slot=11, level=3) in [r.text for r in d.app.texts]
    d.tap("back")
    d.tap("slots:test_vend")
    d.tap("check-12")  # issue 17 req. 6: a check that drops nothing
    assert t("result.checked", slot=12, outcome=t("outcome.READY")) in [r.text for r in d.app.texts]
    d.tap("vend-12")  # drops an item: asked first
    assert d.screen == "service_confirm"
    assert t("service.vend_title", slot=12) in [r.text for r in d.app.texts]
    d.tap("confirm-yes")
    want = t("result.tested", slot=12, outcome=t("outcome.DELIVERED"))
    assert want in [r.text for r in d.app.texts]
    d.tap("back")
    assert want in [r.text for r in d.app.texts]  # the menu says it too
    assert not any("DELIVERED" in r.text for r in d.app.texts)


@pytest.mark.parametrize("size", [(1080, 1920), (1920, 1080), (800, 480), (540, 960)])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_test_vend_offers_a_check_and_asks_before_a_drop(make_driver, size, lang) -> None:  # type: ignore[no-untyped-def]
    """Issue 17 req. 6: each row has 检查 (nothing drops) and 出货, which says first that an
    item drops and the count goes down; both fit at every size."""
    from kiosk.ui.app import show

    d = make_driver(size, lang=lang)
    t = Translator(lang)
    show(d.app, "service_menu")
    d.run()
    d.tap("slots:test_vend")
    labels = {r.text: r for r in d.app.texts}
    for key in ("service.check", "service.vend"):
        assert labels[t(key)].fits and not labels[t(key)].truncated, (key, labels[t(key)])
    d.tap("vend-12")
    shown = {r.text: r for r in d.app.texts}
    body = t("service.vend_body")
    assert body in shown and shown[body].fits and not shown[body].truncated, shown.get(body)
    d.tap("confirm-no")
    assert d.screen == "service_slots" and not any(
        type(p).__name__ == "TestVend" for p in d.fc.posted
    )
