"""“Need more time?” (a dialog over shopping screens), shown >= 20 s before the inactivity
timeout sends the kiosk back to the attract screen.

Owns: nothing; the deadline is the app's inactivity timer. "Yes" just closes it (any tap counts
as activity); "No" posts `BackToIdle`.
"""

from __future__ import annotations

import pygame

from kiosk.contract import BackToIdle
from kiosk.ui.screens.base import Screen, until_next_second
from kiosk.ui.widgets import Ui, line_height


class IdlePromptScreen(Screen):
    name = "idle_prompt"
    overlay = True
    idle_policy = "prompt"

    def _deadline(self) -> float:
        return self.app.last_activity + self.app.config.idle_timeout_s

    def next_frame(self, now: float) -> float | None:
        return until_next_second(self._deadline(), now)

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.scrim()
        w = min(ui.rect.w - 4 * m.pad, max(m.touch * 9, ui.rect.w * 2 // 3))
        h = line_height(m.huge) * 2 + line_height(m.title) * 2 + m.touch + 6 * m.pad
        card = pygame.Rect(0, 0, w, min(h, ui.rect.h - 2 * m.pad))
        card.center = ui.rect.center
        ui.fill(card, c.surface, m.radius)
        inner = card.inflate(-3 * m.pad, -3 * m.pad)
        y = inner.y
        r = ui.text(
            t("idle.title"),
            pygame.Rect(inner.x, y, inner.w, line_height(m.huge) * 2),
            size=m.huge,
            bold=True,
            align="center",
            max_lines=2,
        )
        y = r.bottom + m.gap
        left = max(0, int(self._deadline() - ui.now + 0.999))
        ui.text(
            t("idle.body", s=left),
            pygame.Rect(inner.x, y, inner.w, inner.bottom - m.touch - m.gap - y),
            size=m.title,
            align="center",
            max_lines=3,
        )
        half = (inner.w - m.gap) // 2
        by = inner.bottom - m.touch
        ui.button(
            pygame.Rect(inner.x, by, half, m.touch),
            t("idle.leave"),
            lambda: self.app.post(BackToIdle("shopper")),
            name="idle-leave",
            style="outline",
        )
        ui.button(
            pygame.Rect(inner.right - half, by, half, m.touch),
            t("idle.more"),
            lambda: self.app.pop(self),
            name="idle-more",
        )
