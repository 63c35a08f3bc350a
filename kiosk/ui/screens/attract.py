"""Attract screen (mode idle): a slowly drifting card that cycles featured products.

Owns: the idle look. The card drifts so no pixel stays lit the same way for hours (burn-in), and
after ui.dim_after_s without a touch the screen dims to a small hint that moves once a second.
Any tap starts shopping; the language button starts shopping in the other language.
"""

from __future__ import annotations

import math

import pygame

from kiosk.ui.i18n import product_text
from kiosk.ui.model import ProductView, StartShopping
from kiosk.ui.screens.base import Screen
from kiosk.ui.widgets import Align, Ui, line_height

# (text, size, max lines, colour, bold, required)
_Block = tuple[str, int, int, tuple[int, int, int], bool, bool]

FEATURE_S = 6.0  # each featured product stays this long
DRIFT_PERIOD_S = 97.0
FPS = 15  # plenty for a drift of a few px per second; well under the 30 fps cap


class AttractScreen(Screen):
    name = "attract"

    def _start(self) -> None:
        self.app.post(StartShopping())

    def _start_other_lang(self) -> None:
        self.app.toggle_lang()
        self.app.post(StartShopping())

    def next_frame(self, now: float) -> float | None:
        return 1.0 if self.app.dimmed else 1.0 / FPS

    def _drift(self, now: float, span_x: int, span_y: int) -> tuple[int, int]:
        a = 2 * math.pi * (now - self.entered_at) / DRIFT_PERIOD_S
        return round(span_x * math.sin(a)), round(span_y * math.sin(a * 1.37 + 0.5))

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.dark_bg)
        ui.hit(ui.rect, self._start, "start")
        if self.app.dimmed:
            self._draw_dimmed(ui)
            return
        # language button: the same place on every shopper screen
        bw = max(round(m.touch * 1.9), m.text * 5)
        lang_rect = pygame.Rect(ui.rect.w - m.pad - bw, m.pad, bw, m.touch)
        card_w = round(ui.rect.w * (0.88 if m.portrait else 0.9))
        card_h = round((ui.rect.h - m.touch - 2 * m.pad) * 0.9)
        span_x = (ui.rect.w - card_w) // 2 - m.pad
        span_y = (ui.rect.h - m.touch - m.pad - card_h) // 2 - m.pad
        dx, dy = self._drift(ui.now, span_x, max(0, span_y))
        card = pygame.Rect(0, 0, card_w, card_h)
        card.center = (ui.rect.centerx + dx, (ui.rect.h + m.touch + m.pad) // 2 + dy)
        self._draw_card(ui, card)
        ui.button(
            lang_rect,
            t("lang.switch"),
            self._start_other_lang,
            name="lang",
            style="header",
            max_lines=1,
        )

    def _featured(self) -> list[ProductView]:
        return [pv for pv in self.app.view.products if not pv.sold_out]

    def _draw_card(self, ui: Ui, card: pygame.Rect) -> None:
        m, c, t = ui.m, ui.c, ui.t
        featured = self._featured()
        pill_h = m.touch + m.pad
        landscape = card.w > card.h * 1.3
        head: list[_Block] = [
            (t("attract.headline"), m.title if landscape else m.huge, 2, c.on_dark, True, True),
            (t("attract.sub"), m.text, 3, c.on_dark, False, False),
        ]
        prod: list[_Block] = []
        product = None
        if featured:
            product = featured[int((ui.now - self.entered_at) // FEATURE_S) % len(featured)].product
            county = product_text(product, "origin_county", t.lang)
            prod = [
                (product_text(product, "name", t.lang), m.title, 2, c.on_dark, True, True),
                (t("attract.from", county=county), m.text, 1, c.on_dark, False, False),
                (t.money(product.price_fen), m.huge, 1, c.on_dark_accent, True, True),
            ]
        if landscape:
            side = min(card.h, card.w * 2 // 5) if product else 0
            img = pygame.Rect(card.x, card.centery - side // 2, side, side)
            words = pygame.Rect(
                img.right + 2 * m.gap if side else card.x, card.y, 0, card.h - pill_h - m.gap
            )
            words.w = card.right - words.x
            self._flow(ui, words, head + prod, "left")
        else:
            words = pygame.Rect(card.x, card.y, card.w, card.h - pill_h - m.gap)
            y = self._flow(ui, words, head, "center")
            below = self._flow_height(ui, words.w, prod)
            side = max(0, min(words.w, words.bottom - y - below - m.gap)) if product else 0
            img = pygame.Rect(words.centerx - side // 2, y, side, side)
            self._flow(
                ui,
                pygame.Rect(
                    words.x, img.bottom + m.gap, words.w, words.bottom - img.bottom - m.gap
                ),
                prod,
                "center",
            )
        if product is not None and side >= m.touch * 2:
            ui.image(self.app.images.surface(product, side), img)
            ui.badge(t("badge.fupin"), img.x + m.pad, img.y + m.pad, img.w - 2 * m.pad)
        pill = pygame.Rect(
            0, 0, min(words.w, ui.measure(t("attract.touch"), m.title, True) + 4 * m.pad), pill_h
        )
        pill.midbottom = (words.centerx, card.bottom)
        ui.fill(pill, c.primary, pill.h // 2)
        ui.text(
            t("attract.touch"),
            pill.inflate(-2 * m.pad, 0),
            size=m.title,
            color=c.on_primary,
            align="center",
            valign="middle",
            bold=True,
        )

    def _needed(self, ui: Ui, width: int, block: _Block) -> int:
        text, size, max_lines, _, bold, _ = block
        lines = ui.layout(text, width, 10**6, size, max_lines, bold)[0]
        return min(max_lines, len(lines)) * line_height(size)

    def _flow_height(self, ui: Ui, width: int, blocks: list[_Block]) -> int:
        return sum(self._needed(ui, width, b) + ui.m.gap for b in blocks)

    def _flow(self, ui: Ui, area: pygame.Rect, blocks: list[_Block], align: Align) -> int:
        """Stack text blocks top-down; optional blocks are left out when they do not fit.
        Returns the y below the last block."""
        needed = [self._needed(ui, area.w, b) for b in blocks]
        total = sum(needed) + ui.m.gap * len(blocks)
        keep = [True] * len(blocks)
        for i, b in enumerate(blocks):
            if total > area.h and not b[5]:
                keep[i] = False
                total -= needed[i] + ui.m.gap
        y = area.y
        for b, h, k in zip(blocks, needed, keep, strict=True):
            if not k:
                continue
            text, size, max_lines, color, bold, _ = b
            box = pygame.Rect(area.x, y, area.w, min(h, max(0, area.bottom - y)))
            if box.h < line_height(ui.m.small):
                break
            r = ui.text(
                text, box, size=size, color=color, align=align, bold=bold, max_lines=max_lines
            )
            y = r.bottom + ui.m.gap
        return y

    def _draw_dimmed(self, ui: Ui) -> None:
        m, t = ui.m, ui.t
        w = min(ui.rect.w - 2 * m.pad, ui.measure(t("attract.touch"), m.text) + 2 * m.pad)
        h = line_height(m.text)
        # jump to a new place every second along a slow path
        k = int(ui.now)
        fx = (math.sin(k * 0.071) + 1) / 2
        fy = (math.sin(k * 0.053 + 1.0) + 1) / 2
        box = pygame.Rect(
            m.pad + round(fx * (ui.rect.w - w - 2 * m.pad)),
            m.pad + round(fy * (ui.rect.h - h - 2 * m.pad)),
            w,
            h,
        )
        ui.text(t("attract.touch"), box, color=ui.c.on_dark_dim, align="center")
