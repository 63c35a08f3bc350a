"""Message catalogs agree, every string the UI can show has glyphs in the CJK font, and
without a CJK font the kiosk refuses to start with the package name."""

from __future__ import annotations

from pathlib import Path

import pygame
import pytest

from kiosk.contract import OUT_OF_SERVICE_KEYS, PROBLEM_KEYS
from kiosk.sim.demo_data import demo_catalog
from kiosk.ui import fonts
from kiosk.ui.app import default_font
from kiosk.ui.fonts import FONT_PACKAGE, FontMissing, find_cjk_font, missing_glyphs
from kiosk.ui.i18n import CATALOGS, Translator, placeholders, product_text


def test_catalogs_have_the_same_keys_and_params() -> None:
    zh, en = CATALOGS["zh"], CATALOGS["en"]
    assert set(zh) == set(en)
    for key in zh:
        assert placeholders(zh[key]) == placeholders(en[key]), key


def test_every_problem_and_reason_key_has_a_message() -> None:
    for lang in ("zh", "en"):
        t = Translator(lang)
        for k in PROBLEM_KEYS:
            t(f"problem.{k}", count=1, delivered=1, failed=1)
        for k in OUT_OF_SERVICE_KEYS:
            t(f"oos.{k}")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_catalog_string_has_glyphs(lang: str) -> None:
    font = default_font()
    text = "".join(CATALOGS[lang].values()) + "0123456789¥●…−+×·"
    assert missing_glyphs(font, text) == set()


def test_every_demo_product_string_has_glyphs() -> None:
    font = default_font()
    parts: list[str] = []
    for p in demo_catalog():
        for lang in ("zh", "en"):
            for field in ("name", "origin_county", "producer", "spec"):
                parts.append(product_text(p, field, lang))
        parts.append(p.certification_no)
    assert missing_glyphs(font, "".join(parts)) == set()


def test_missing_glyphs_are_detected() -> None:
    assert missing_glyphs(default_font(), "扶贫\U0001f600") == {"\U0001f600"}


def test_no_cjk_font_refuses_with_package_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "_fc_match", lambda: None)
    with pytest.raises(FontMissing, match=FONT_PACKAGE):
        find_cjk_font(None, candidates=())


def test_a_latin_only_font_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # pygame ships a Latin-only font with every install: no system package needed
    latin = Path(pygame.__file__).parent / pygame.font.get_default_font()
    assert latin.is_file(), latin
    monkeypatch.setattr(fonts, "_fc_match", lambda: latin)
    with pytest.raises(FontMissing, match=FONT_PACKAGE):
        find_cjk_font(latin)
    with pytest.raises(FontMissing):
        find_cjk_font(None, candidates=(str(latin),))


def test_font_found_automatically() -> None:
    assert find_cjk_font(None).is_file()
