"""The view carries the province link's state (issue 17 req. 3): the payment screen explains an
offline kiosk from it, and the service panels show it. Real controller, real store, emulator."""

from __future__ import annotations

from pathlib import Path

from kiosk import contract as ui
from kiosk.hardware.protocol import Outcome
from kiosk.ui.i18n import CATALOGS, LANGS
from tests.support.kiosk_app import Kiosk


def test_view_follows_the_province_link(kiosk: Kiosk) -> None:
    # built without a sync bridge: the link state is unknown, and unknown is not "offline"
    v = kiosk.c.view()
    assert v.province_online is None and not v.offline
    state = {"up": False}
    kiosk.c.province_online = lambda: state["up"]
    v = kiosk.wait(lambda v: v.province_online is False)
    assert v.offline and not v.service.network.online
    state["up"] = True
    v = kiosk.wait(lambda v: v.province_online is True)
    assert not v.offline and v.service.network.online


def test_service_results_come_with_words_for_the_screen(kiosk: Kiosk) -> None:
    """The controller's outcome of a service action carries a message key and params, so the
    screen words it in its own language (issue 17 req. 7); last_result stays for the logs."""
    kiosk.wait(lambda v: v.mode == "idle")
    kiosk.c.post(ui.Restock(48, 4))
    v = kiosk.wait(lambda v: v.service.last_result == "slot 48: 4")
    assert v.service.result == ui.ServiceResult("restocked", {"slot": 48, "level": 4})
    kiosk.c.post(ui.TestVend(48))
    v = kiosk.wait(lambda v: "DELIVERED" in v.service.last_result)
    assert v.service.result == ui.ServiceResult("tested", {"slot": 48, "outcome": "DELIVERED"})
    for lang in LANGS:  # every key the controller uses is worded in both catalogs
        for key in ("restocked", "restock_failed", "busy", "no_slot", "test_refused", "tested"):
            assert f"result.{key}" in CATALOGS[lang], (lang, key)
        for key in ("locked", "unlocked"):
            assert f"result.{key}" in CATALOGS[lang], (lang, key)
        for outcome in Outcome:
            if outcome.is_final:
                assert f"outcome.{outcome.name}" in CATALOGS[lang], (lang, outcome)


def test_the_app_gives_the_controller_the_sync_link_state() -> None:
    """kiosk.app.App hands the controller `province_online`, read from the sync client."""
    from types import SimpleNamespace
    from typing import Any

    from kiosk.app import App

    client = SimpleNamespace(connected=False)
    bridge = SimpleNamespace(
        client=client,
        wake=lambda: None,
        payment_query=lambda q: None,
        clock_offset=SimpleNamespace(province_now=lambda t: t),
        rejected=lambda *a: None,
        province_keys=lambda: [],
    )
    hooks: dict[str, Any] = {}

    def controller(**given: Any) -> object:
        hooks.update(given)
        return SimpleNamespace()

    config = SimpleNamespace(update=SimpleNamespace(root=Path("/nonexistent/kiosk-updates")))
    App(config, None, None, None, None, None, controller, lambda app: bridge)  # type: ignore[arg-type]
    assert hooks["province_online"]() is False
    client.connected = True
    assert hooks["province_online"]() is True


def test_a_refused_cart_is_worded_in_the_ui_language(kiosk: Kiosk) -> None:
    """A refused cart's service line (issue 17 req. 8): the controller gives the reason as a
    message key, so the Chinese service panel does not show the English log text."""
    from kiosk.ui.i18n import Translator

    kiosk.wait(lambda v: v.mode == "idle")
    kiosk.c.post(ui.AddToCart("NO-SUCH-PRODUCT"))
    v = kiosk.wait(lambda v: "not in the catalog" in v.service.last_result)
    assert v.service.result == ui.ServiceResult("cart_unknown", {"product": "NO-SUCH-PRODUCT"})
    assert Translator("zh")("result.cart_unknown", product="X") == "商品X不在商品目录里"
    for lang in LANGS:
        for key in ("cart_qty", "cart_unknown", "cart_full", "cart_short", "cart_empty"):
            assert f"result.{key}" in CATALOGS[lang], (lang, key)
        for key in ("cart_sold_out", "cart_refused", "disk_low"):
            assert f"result.{key}" in CATALOGS[lang], (lang, key)
