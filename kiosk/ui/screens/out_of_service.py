"""Out of service (mode out_of_service): the reason in plain words and the service phone.

Owns: nothing. Static on purpose: with nothing moving the loop sleeps in a blocking wait.
To spare the panel, the text block sits at a different place on every redraw (a new reason,
a language switch), chosen from the view's sequence number.
"""

from __future__ import annotations

import pygame

from kiosk.ui.screens.base import Screen, header
from kiosk.ui.widgets import Ui, line_height


class OutOfServiceScreen(Screen):
    name = "out_of_service"

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(ui, self.app, t("oos.title"))
        oos = self.app.view.out_of_service
        reason = t(f"oos.{oos.reason_key}") if oos is not None else t("oos.title")
        body = area.inflate(-6 * m.pad, -4 * m.pad)
        block_h = line_height(m.huge) * 4 + line_height(m.title) * 4 + 4 * m.gap
        block_h = min(block_h, body.h)
        shift = (self.app.view.seq * 37) % max(1, body.h - block_h + 1)
        y = body.y + shift
        r = ui.text(
            reason,
            pygame.Rect(body.x, y, body.w, line_height(m.huge) * 4),
            size=m.huge,
            bold=True,
            align="center",
            max_lines=4,
        )
        y = r.bottom + 2 * m.gap
        r = ui.text(
            t("oos.sorry"),
            pygame.Rect(body.x, y, body.w, line_height(m.title) * 2),
            size=m.title,
            align="center",
            max_lines=2,
            color=c.muted,
        )
        y = r.bottom + 2 * m.gap
        phone = self.app.view.service_phone or self.app.config.service_phone
        r = ui.text(
            t("oos.phone", phone=phone),
            pygame.Rect(body.x, y, body.w, min(line_height(m.title) * 2, body.bottom - y)),
            size=m.title,
            align="center",
            bold=True,
            max_lines=2,
        )
        if oos is not None and oos.code:  # for the technician: the code and what to run
            y = r.bottom + 2 * m.gap
            ui.text(
                t("oos.code", code=oos.code),
                pygame.Rect(
                    body.x, y, body.w, max(0, min(line_height(m.text) * 2, body.bottom - y))
                ),
                size=m.text,
                align="center",
                max_lines=2,
                color=c.muted,
            )
