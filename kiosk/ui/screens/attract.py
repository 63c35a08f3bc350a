"""Attract screen (mode idle): a slowly drifting card that cycles featured products.

Owns: the idle look. The card drifts so no pixel stays lit the same way for hours (burn-in), and
after ui.dim_after_s without a touch the screen dims to a small hint that moves once a second.
Any tap starts shopping; the language button starts shopping in the other language.

Cost: the card (headline, picture, name, price, pill) is rendered once per featured product
and language into its own surface; a frame moves that surface. The loop wakes only when the
card's rounded position or the featured product changes (a few times a second for a drift of a
few px/s, at most FPS), and such a frame repaints only the old and new card area
(`update()` -> `pygame.display.update(rects)`), never the whole screen.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pygame

from kiosk.contract import ProductView, StartShopping
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import AppApi, Screen, large_toggle, large_toggle_w
from kiosk.ui.widgets import Align, Role, TextRecord, Ui, line_height, moved_records

if TYPE_CHECKING:
    from kiosk.core.catalog import Product

# (text, size, max lines, colour, bold, required, role)
_Block = tuple[str, int, int, tuple[int, int, int], bool, bool, Role]

FEATURE_S = 6.0  # each featured product stays this long
DRIFT_PERIOD_S = 240.0  # the card crosses its range in minutes: burn-in safe, ~1-2 frames/s
FPS = 8  # at most; a drift of a few px per second needs no more (burn-in wants slow motion)


class AttractScreen(Screen):
    name = "attract"

    def _start(self) -> None:
        self.app.post(StartShopping())

    def _start_other_lang(self) -> None:
        self.app.toggle_lang()
        self.app.post(StartShopping())

    def _start_large(self) -> None:
        """The large-text switch: one tap, and shopping starts in large text."""
        self.app.toggle_large()
        self.app.post(StartShopping())

    def _large_rect(self, ui: Ui) -> pygame.Rect:
        m = ui.m
        return pygame.Rect(m.pad, m.pad, large_toggle_w(ui), m.touch)

    def __init__(self, app: AppApi) -> None:
        super().__init__(app)
        # the card surface of one (product, language, size) with its text records (card-local)
        self._card_key: tuple[object, ...] | None = None
        self._card_surf: pygame.Surface | None = None
        self._card_texts: list[TextRecord] = []
        # what the last full draw left on the surface (update() continues from there)
        self._spans: tuple[int, int] | None = None
        self._shown: pygame.Rect | None = None
        self._shown_state: tuple[int, int, int] | None = None
        self._static_texts: list[TextRecord] = []
        self._lang_rect: pygame.Rect | None = None

    def _state(self, now: float) -> tuple[int, int, int]:
        """What the card looks like at `now`: its offset and which product it features."""
        sx, sy = self._spans or (0, 0)
        dx, dy = self._drift(now, sx, sy)
        return dx, dy, int((now - self.entered_at) // FEATURE_S)

    def next_frame(self, now: float) -> float | None:
        if self.app.dimmed:
            return 1.0
        if self._shown_state is None:
            return 1.0 / FPS
        # sleep until the card would look different (a whole pixel of drift, or the next
        # product), looking ahead in steps of 1/FPS
        step = 1.0 / FPS
        for k in range(1, round(FEATURE_S * FPS) + 2):
            if self._state(now + k * step) != self._shown_state:
                return k * step
        return FEATURE_S

    def _drift(self, now: float, span_x: int, span_y: int) -> tuple[int, int]:
        a = 2 * math.pi * (now - self.entered_at) / DRIFT_PERIOD_S
        return round(span_x * math.sin(a)), round(span_y * math.sin(a * 1.37 + 0.5))

    def _geometry(self, ui: Ui) -> tuple[pygame.Rect, pygame.Rect, tuple[int, int]]:
        m = ui.m
        bw = max(round(m.touch * 1.9), m.text * 5)
        lang_rect = pygame.Rect(ui.rect.w - m.pad - bw, m.pad, bw, m.touch)
        card_w = round(ui.rect.w * (0.88 if m.portrait else 0.9))
        card_h = round((ui.rect.h - m.touch - 2 * m.pad) * 0.9)
        span_x = (ui.rect.w - card_w) // 2 - m.pad
        span_y = (ui.rect.h - m.touch - m.pad - card_h) // 2 - m.pad
        card = pygame.Rect(0, 0, card_w, card_h)
        card.center = (ui.rect.centerx, (ui.rect.h + m.touch + m.pad) // 2)
        return lang_rect, card, (span_x, max(0, span_y))

    def draw(self, ui: Ui) -> None:
        c, t = ui.c, ui.t
        ui.surface.fill(c.dark_bg)
        ui.hit(ui.rect, self._start, "start")
        if self.app.dimmed:
            self._shown = self._shown_state = None
            self._draw_dimmed(ui)
            return
        # language button: the same place on every shopper screen
        lang_rect, card, self._spans = self._geometry(ui)
        state = self._state(ui.now)
        card.move_ip(state[0], state[1])
        self._blit_card(ui, card)
        n = len(ui.texts)
        ui.button(
            lang_rect,
            t("lang.switch"),
            self._start_other_lang,
            name="lang",
            style="header",
            max_lines=1,
        )
        large_toggle(ui, self.app, self._large_rect(ui), self._start_large)
        self._static_texts = ui.texts[n:]
        self._lang_rect = lang_rect
        self._shown, self._shown_state = card, state

    def update(self, ui: Ui) -> list[pygame.Rect] | None:
        """Move the card from where the last frame left it; returns the rectangles changed."""
        if self.app.dimmed or self._shown is None or self._lang_rect is None:
            return None
        lang_rect, card, spans = self._geometry(ui)
        if spans != self._spans or lang_rect != self._lang_rect:
            return None
        state = self._state(ui.now)
        card.move_ip(state[0], state[1])
        ui.hit(ui.rect, self._start, "start")
        old = self._shown
        if state == self._shown_state:
            changed: list[pygame.Rect] = []
            ui.texts.extend(moved_records(self._card_texts, old.x, old.y))
        else:
            # uncover what the old card leaves (at most two strips), then the card itself
            bg = ui.c.dark_bg
            for strip in _uncovered(old, card):
                ui.surface.fill(bg, strip)
            self._blit_card(ui, card)
            changed = [old.union(card)]
        ui.texts.extend(self._static_texts)
        ui.hit(lang_rect, self._start_other_lang, "lang")
        ui.hit(self._large_rect(ui), self._start_large, "large")
        self._shown, self._shown_state = card, state
        return changed

    def _blit_card(self, ui: Ui, card: pygame.Rect) -> None:
        featured = self._featured()
        product = (
            featured[int((ui.now - self.entered_at) // FEATURE_S) % len(featured)].product
            if featured
            else None
        )
        key = (product, ui.t.lang, card.size, id(ui.font), ui.m)
        if self._card_surf is None or self._card_key != key:
            surf = pygame.Surface(card.size)
            if pygame.display.get_surface() is not None:
                surf = surf.convert()  # display format: a plain copy per frame
            surf.fill(ui.c.dark_bg)
            sub = Ui(surf, ui.m, ui.font, ui.t, ui.now, ui.c)
            self._draw_card(sub, surf.get_rect(), product)
            self._card_key, self._card_surf, self._card_texts = key, surf, sub.texts
        ui.surface.blit(self._card_surf, card)
        ui.texts.extend(moved_records(self._card_texts, card.x, card.y))

    def _featured(self) -> list[ProductView]:
        return [pv for pv in self.app.view.products if not pv.sold_out]

    def _draw_card(self, ui: Ui, card: pygame.Rect, product: Product | None) -> None:
        m, c, t = ui.m, ui.c, ui.t
        pill_h = m.touch + m.pad
        landscape = card.w > card.h * 1.3
        head: list[_Block] = [
            (t("attract.headline"), m.title if landscape else m.huge, 2, c.on_dark, True, True, ""),
            (t("attract.sub"), m.text, 3, c.on_dark, False, False, ""),
        ]
        prod: list[_Block] = []
        if product is not None:
            county = product_text(product, "origin_county", t.lang)
            prod = [
                (product_text(product, "name", t.lang), m.title, 2, c.on_dark, True, True, "name"),
                (t("attract.from", county=county), m.text, 1, c.on_dark, False, False, ""),
                (t.money(product.price_fen), m.huge, 1, c.on_dark_accent, True, True, "price"),
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
            role="button",
        )

    def _needed(self, ui: Ui, width: int, block: _Block) -> int:
        text, size, max_lines, _, bold, _, _ = block
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
            text, size, max_lines, color, bold, _, role = b
            box = pygame.Rect(area.x, y, area.w, min(h, max(0, area.bottom - y)))
            if box.h < line_height(ui.m.small):
                break
            r = ui.text(
                text,
                box,
                size=size,
                color=color,
                align=align,
                bold=bold,
                max_lines=max_lines,
                role=role,
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


def _uncovered(old: pygame.Rect, new: pygame.Rect) -> list[pygame.Rect]:
    """Parts of `old` that `new` does not cover (same-size rectangles: at most two strips)."""
    if not old.colliderect(new):
        return [old]
    out = []
    if new.x > old.x:
        out.append(pygame.Rect(old.x, old.y, new.x - old.x, old.h))
    if new.right < old.right:
        out.append(pygame.Rect(new.right, old.y, old.right - new.right, old.h))
    if new.y > old.y:
        out.append(pygame.Rect(old.x, old.y, old.w, new.y - old.y))
    if new.bottom < old.bottom:
        out.append(pygame.Rect(old.x, new.bottom, old.w, old.bottom - new.bottom))
    return out
