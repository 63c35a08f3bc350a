"""Dispensing (mode dispensing): per-item progress and where to take the goods from.

Owns: nothing. Shows "take your items from the pickup port" (spiral cabinets) or "door 7 is
open" (locker cabinets) from the controller's `DispensingView`. A small activity mark moves so
the shopper sees the kiosk is working; it runs at 4 fps, only while this screen is visible.
"""

from __future__ import annotations

import pygame

from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import Screen, header
from kiosk.ui.widgets import Ui, line_height

_FPS = 4


class DispensingScreen(Screen):
    name = "dispensing"

    def next_frame(self, now: float) -> float | None:
        d = self.app.view.dispensing
        busy = d is not None and any(i.status in ("pending", "vending") for i in d.items)
        return 1.0 / _FPS if busy else None

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(ui, self.app, t("dispense.title"))
        d = self.app.view.dispensing
        if d is None:
            return
        body = area.inflate(-2 * m.pad, -2 * m.pad)
        status_color = {"pending": c.muted, "vending": c.warn, "delivered": c.ok, "failed": c.error}
        rows = []
        for item in d.items:
            pv = self.app.view.product(item.product_id)
            name = product_text(pv.product, "name", t.lang) if pv else item.product_id
            rows.append((name, t(f"dispense.{item.status}"), status_color[item.status]))
        box_h = line_height(m.huge) * 2 + 2 * m.pad
        top_h = box_h + 3 * m.gap + line_height(m.title) + 2 * max(4, m.pad // 2) + m.gap
        least = len(rows) * (line_height(m.text) + m.pad + m.gap // 2)
        if m.portrait or body.h - top_h >= least:
            y = self._draw_where(ui, body, box_h)
            listing = pygame.Rect(body.x, y, body.w, body.bottom - y)
        else:  # a short landscape panel (large text): the list beside, every item shown
            half = (body.w - 2 * m.gap) * 45 // 100
            self._draw_where(ui, pygame.Rect(body.x, body.y, half, body.h), box_h)
            listing = pygame.Rect(body.x + half + 2 * m.gap, body.y, body.w - half - 2 * m.gap, 0)
            listing.h = body.h
        n = max(1, len(rows))  # rows are gap // 2 apart: every one fits
        row_h = (listing.h - (n - 1) * (m.gap // 2)) // n
        row_h = max(line_height(m.text) + m.pad, min(m.touch, row_h))
        # a name that one line cannot hold at the floor gets two (never cut)
        w, one = ui.progress_label_w(listing.w, rows), line_height(m.text)
        if not all(ui.layout(n, w, one, m.text, 1, False)[2] for n, _, _ in rows):
            row_h = max(row_h, 2 * line_height(m.floor) + m.pad)
        ui.progress_list(listing, rows, row_h=row_h)

    def _draw_where(self, ui: Ui, col: pygame.Rect, box_h: int) -> int:
        """Where to take the goods (the most important line, in a big box), how many are
        done and the activity mark, from the top of `col`. Returns the y below them."""
        m, c, t = ui.m, ui.c, ui.t
        d = self.app.view.dispensing
        assert d is not None
        if d.open_door is not None:
            where = t("dispense.door_open", door=d.open_door)
        else:
            where = t("dispense.take_port")
        box = pygame.Rect(col.x, col.y, col.w, box_h)
        ui.fill(box, c.secondary, m.radius)
        inner = box.inflate(-2 * m.pad, -m.pad)
        ui.text(
            where,
            inner,
            size=m.huge,
            color=c.on_secondary,
            align="center",
            valign="middle",
            bold=True,
            max_lines=max(2, inner.h // line_height(m.floor)),
        )
        y = box.bottom + 2 * m.gap
        done = sum(1 for i in d.items if i.status in ("delivered", "failed"))
        ui.text(
            t("dispense.progress", done=done, total=len(d.items)),
            pygame.Rect(col.x, y, col.w, line_height(m.title)),
            size=m.title,
            align="center",
            bold=True,
        )
        y += line_height(m.title) + m.gap
        # activity mark: three dots, one lit, moving while anything is pending
        if self.next_frame(ui.now) is not None:
            k = int(ui.now * _FPS) % 3
            r = max(4, m.pad // 2)
            for i in range(3):
                cx = col.centerx + (i - 1) * 4 * r
                color = c.primary if i == k else c.disabled
                pygame.draw.circle(ui.surface, color, (cx, y + r), r)
        return y + 2 * max(4, m.pad // 2) + m.gap
