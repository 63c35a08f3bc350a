"""A yes/no question over the screen below (cancel an order, fill every slot ...).

Owns: nothing but the question. "No" (the safe answer, drawn as the prominent button) just
closes it; "yes" closes it and runs the action the opener gave, which posts the intent.
A mode change (the order got paid meanwhile) replaces the whole stack, so a stale question
never acts on a new state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pygame

from kiosk.ui.screens.base import AppApi, Screen
from kiosk.ui.widgets import Ui, line_height


class ConfirmScreen(Screen):
    name = "confirm"
    overlay = True

    def __init__(
        self,
        app: AppApi,
        *,
        title: str,
        body: str,
        yes: str,
        no: str,
        on_yes: Callable[[], None],
        params: Mapping[str, object] | None = None,
    ) -> None:
        """`title`, `body`, `yes`, `no`: message keys (`params` fill the title and body)."""
        super().__init__(app)
        self.keys = (title, body, yes, no)
        self.params = dict(params or {})
        self.on_yes = on_yes

    def _yes(self) -> None:
        self.app.pop(self)
        self.on_yes()

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        title, body = (t(k, **self.params) for k in self.keys[:2])
        yes, no = (t(k) for k in self.keys[2:])
        ui.scrim()
        w = min(ui.rect.w - 4 * m.pad, max(m.touch * 9, ui.rect.w * 2 // 3))
        h = line_height(m.title) * 2 + line_height(m.text) * 3 + m.touch + 6 * m.pad
        card = pygame.Rect(0, 0, w, min(h, ui.rect.h - 2 * m.pad))
        card.center = ui.rect.center
        ui.fill(card, c.surface, m.radius)
        inner = card.inflate(-3 * m.pad, -3 * m.pad)
        r = ui.text(
            title,
            pygame.Rect(inner.x, inner.y, inner.w, line_height(m.title) * 2),
            size=m.title,
            bold=True,
            align="center",
            max_lines=2,
        )
        y = r.bottom + m.gap
        ui.text(
            body,
            pygame.Rect(inner.x, y, inner.w, inner.bottom - m.touch - m.gap - y),
            align="center",
            max_lines=3,
            overflow="error",
        )
        half = (inner.w - m.gap) // 2
        by = inner.bottom - m.touch
        ui.button(
            pygame.Rect(inner.x, by, half, m.touch),
            yes,
            self._yes,
            name="confirm-yes",
            style="outline",
        )
        ui.button(
            pygame.Rect(inner.right - half, by, half, m.touch),
            no,
            lambda: self.app.pop(self),
            name="confirm-no",
        )


class ServiceConfirmScreen(ConfirmScreen):
    """The same question inside the technician's service session (closed with it)."""

    name = "service_confirm"
    service = True
    idle_policy = "service"
