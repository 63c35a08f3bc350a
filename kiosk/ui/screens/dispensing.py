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
        # where to take it: the most important line on the screen, in a big box
        if d.open_door is not None:
            where = t("dispense.door_open", door=d.open_door)
        else:
            where = t("dispense.take_port")
        box_h = line_height(m.huge) * 2 + 2 * m.pad
        box = pygame.Rect(body.x, body.y, body.w, box_h)
        ui.fill(box, c.secondary, m.radius)
        ui.text(
            where,
            box.inflate(-2 * m.pad, -m.pad),
            size=m.huge,
            color=c.on_secondary,
            align="center",
            valign="middle",
            bold=True,
            max_lines=2,
        )
        y = box.bottom + 2 * m.gap
        done = sum(1 for i in d.items if i.status in ("delivered", "failed"))
        ui.text(
            t("dispense.progress", done=done, total=len(d.items)),
            pygame.Rect(body.x, y, body.w, line_height(m.title)),
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
                cx = body.centerx + (i - 1) * 4 * r
                color = c.primary if i == k else c.disabled
                pygame.draw.circle(ui.surface, color, (cx, y + r), r)
        y += 2 * max(4, m.pad // 2) + m.gap
        status_color = {"pending": c.muted, "vending": c.warn, "delivered": c.ok, "failed": c.error}
        rows = []
        for item in d.items:
            pv = self.app.view.product(item.product_id)
            name = product_text(pv.product, "name", t.lang) if pv else item.product_id
            rows.append((name, t(f"dispense.{item.status}"), status_color[item.status]))
        row_h = max(
            line_height(m.text) + m.pad, min(m.touch, (body.bottom - y) // max(1, len(rows)))
        )
        # a name that one line cannot hold at the floor gets two (never cut)
        w, one = ui.progress_label_w(body.w, rows), line_height(m.text)
        if not all(ui.layout(n, w, one, m.text, 1, False)[2] for n, _, _ in rows):
            row_h = max(row_h, 2 * line_height(m.floor) + m.pad)
        ui.progress_list(pygame.Rect(body.x, y, body.w, body.bottom - y), rows, row_h=row_h)
