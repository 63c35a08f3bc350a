"""Service menu: the technician's list of tasks, described as data (`ITEMS`).

Owns: nothing but navigation. Every action posts an intent (logged by the app) and the
controller carries it out; the menu never touches the board or the store itself.
"""

from __future__ import annotations

from functools import partial

import pygame

from kiosk.contract import LockSales
from kiosk.ui.screens.base import Screen, header, link_strip, result_text
from kiosk.ui.widgets import Action, Style, Ui, line_height

#: (message key, what it opens): "slots:<mode>" or "info:<panel>"
ITEMS: tuple[tuple[str, str], ...] = (
    ("service.restock", "slots:restock"),
    ("service.test_vend", "slots:test_vend"),
    ("service.stock", "slots:stock"),
    ("service.door", "slots:door"),
    ("service.sync", "info:sync"),
    ("service.board", "info:board"),
    ("service.network", "info:network"),
    ("service.version", "info:version"),
)


class ServiceMenuScreen(Screen):
    name = "service_menu"
    service = True
    idle_policy = "service"

    def _open(self, target: str) -> None:
        kind, arg = target.split(":")
        if kind == "slots":
            from kiosk.ui.screens.service_slots import ServiceSlotsScreen

            self.app.push(ServiceSlotsScreen(self.app, arg))
        else:
            from kiosk.ui.screens.service_info import ServiceInfoScreen

            self.app.push(ServiceInfoScreen(self.app, arg))

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(ui, self.app, t("service.title"))
        body = area.inflate(-2 * m.pad, -2 * m.pad)
        info = self.app.view.service
        status = t("service.sales_off") if info.sales_locked else t("service.sales_on")
        line = f"{info.kiosk_id}  ·  {status}"
        lh = line_height(m.text)
        ui.text(
            line,
            pygame.Rect(body.x, body.y, body.w, lh),
            bold=True,
            color=c.error if info.sales_locked else c.ok,
        )
        y = link_strip(ui, self.app, pygame.Rect(body.x, body.y + lh + m.gap, body.w, lh)) + m.gap
        if info.last_result:
            ui.text(
                result_text(ui, info),
                pygame.Rect(body.x, y, body.w, lh),
                color=c.muted,
            )
        y += lh + m.gap
        buttons: list[tuple[str, Action, str]] = [
            (t(key), partial(self._open, target), target) for key, target in ITEMS
        ]
        lock_label = t("service.unlock") if info.sales_locked else t("service.lock")
        buttons.append(
            (lock_label, lambda: self.app.post(LockSales(not info.sales_locked)), "lock")
        )
        buttons.append((t("service.exit"), lambda: self.app.exit_service("exit"), "exit"))
        cols = 2 if m.portrait else 4
        rows = -(-len(buttons) // cols)
        grid = pygame.Rect(body.x, y, body.w, body.bottom - y)
        bw = (grid.w - (cols - 1) * m.gap) // cols
        bh = max(m.touch, min(m.touch * 2, (grid.h - (rows - 1) * m.gap) // rows))
        for i, (label, action, name) in enumerate(buttons):
            r, col = divmod(i, cols)
            rect = pygame.Rect(grid.x + col * (bw + m.gap), grid.y + r * (bh + m.gap), bw, bh)
            style: Style = "secondary" if name in ("lock", "exit") else "outline"
            ui.button(rect, label, action, name=name, style=style)
