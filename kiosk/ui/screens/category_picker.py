"""Category picker (a dialog over the catalog) for screens too narrow for a row of chips.

Owns: nothing; a tap sets the catalog's category and closes the dialog.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import pygame

from kiosk.core.catalog import Category
from kiosk.ui.screens.base import AppApi, Screen
from kiosk.ui.widgets import Style, Ui, line_height

if TYPE_CHECKING:
    from kiosk.ui.screens.catalog import CatalogScreen


class CategoryPickerScreen(Screen):
    name = "category_picker"
    overlay = True
    idle_policy = "prompt"

    def __init__(self, app: AppApi, catalog: CatalogScreen) -> None:
        super().__init__(app)
        self.catalog = catalog

    def _pick(self, cat: Category | None) -> None:
        self.catalog.set_category(cat)
        self.app.pop(self)

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.scrim()
        card = ui.rect.inflate(-2 * m.pad, -2 * m.pad)
        ui.fill(card, c.surface, m.radius)
        inner = card.inflate(-2 * m.pad, -2 * m.pad)
        lh = line_height(m.title)
        ui.text(
            t("catalog.pick_category"),
            pygame.Rect(inner.x, inner.y, inner.w, lh),
            size=m.title,
            bold=True,
        )
        chips = self.catalog.chips(ui)
        cols = 2 if m.portrait else 3
        rows = -(-len(chips) // cols)
        grid = pygame.Rect(inner.x, inner.y + lh + m.gap, inner.w, inner.h - lh - m.gap)
        bw = (grid.w - (cols - 1) * m.gap) // cols
        bh = max(m.touch, min(2 * m.touch, (grid.h - (rows - 1) * m.gap) // rows))
        for i, (cat, label) in enumerate(chips):
            r, col = divmod(i, cols)
            rect = pygame.Rect(grid.x + col * (bw + m.gap), grid.y + r * (bh + m.gap), bw, bh)
            style: Style = "primary" if cat is self.catalog.category else "outline"
            ui.button(
                rect,
                label,
                partial(self._pick, cat),
                name=f"pick-{cat.value if cat else 'all'}",
                style=style,
            )
