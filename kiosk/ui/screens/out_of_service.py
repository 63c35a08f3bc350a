"""Out of service (mode out_of_service): the reason in plain words and the service phone.

Owns: nothing. Static on purpose: with nothing moving the loop sleeps in a blocking wait.
To spare the panel, the text block sits at a different place on every redraw (a new reason,
a language switch), chosen from the view's sequence number.
"""

from __future__ import annotations

import pygame

from kiosk.ui.screens.base import Block, Screen, header, plan_stack, stack_h, text_stack
from kiosk.ui.widgets import Ui


class OutOfServiceScreen(Screen):
    name = "out_of_service"

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(ui, self.app, t("oos.title"))
        oos = self.app.view.out_of_service
        reason = t(f"oos.{oos.reason_key}") if oos is not None else t("oos.title")
        body = area.inflate(-6 * m.pad, -4 * m.pad)
        phone = self.app.view.service_phone or self.app.config.service_phone
        blocks = [
            Block(reason, m.huge, 4, bold=True, align="center"),
            Block(t("oos.sorry"), m.title, 2, color=c.muted, align="center"),
            Block(t("oos.phone", phone=phone), m.title, 2, bold=True, align="center"),
        ]
        if oos is not None and oos.code:  # for the technician: the code and what to run
            blocks.append(
                Block(t("oos.code", code=oos.code), m.text, 2, color=c.muted, align="center")
            )
        gap = 2 * m.gap
        sizes = plan_stack(ui, body.w, body.h, blocks, gap)
        block_h = min(body.h, stack_h(ui, body.w, blocks, sizes, gap))
        shift = (self.app.view.seq * 37) % max(1, body.h - block_h + 1)
        text_stack(ui, pygame.Rect(body.x, body.y + shift, body.w, block_h), blocks, gap)
