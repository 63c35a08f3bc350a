"""Set a slot's count (a dialog over the restock panel): the slot, its product and its count
now, and a keypad for the new count, 0..capacity.

Owns: the digits typed. OK posts `Restock(slot, count)` and closes.
"""

from __future__ import annotations

import pygame

from kiosk.contract import Restock
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import AppApi, Screen
from kiosk.ui.widgets import Ui, line_height


class ServiceCountScreen(Screen):
    name = "service_count"
    overlay = True
    service = True
    idle_policy = "service"

    def __init__(self, app: AppApi, slot_no: int, capacity: int) -> None:
        super().__init__(app)
        self.slot_no, self.capacity = slot_no, capacity
        self.digits = ""

    def _digit(self, d: str) -> None:
        if len(self.digits) < 2:
            self.digits += d
            self.app.mark_dirty()

    def _delete(self) -> None:
        self.digits = self.digits[:-1]
        self.app.mark_dirty()

    def _ok(self) -> None:
        self.app.post(Restock(self.slot_no, int(self.digits)))
        self.app.pop(self)

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.scrim()
        card = ui.rect.inflate(-4 * m.pad, -4 * m.pad)
        if m.portrait:
            card.h = min(card.h, card.w + 3 * m.touch)
            card.center = ui.rect.center
        ui.fill(card, c.surface, m.radius)
        inner = card.inflate(-2 * m.pad, -2 * m.pad)
        lh = line_height(m.title)
        slot = next((x for x in self.app.view.service.slots if x.slot_no == self.slot_no), None)
        pv = self.app.view.product(slot.product_id) if slot and slot.product_id else None
        name = product_text(pv.product, "name", t.lang) if pv else t("service.unassigned")
        title = t("service.count_title", slot=self.slot_no, name=name)
        one = ui.layout(title, inner.w, lh, m.title, 1, True)[2]  # else two lines, never cut
        r = ui.text(
            title,
            pygame.Rect(inner.x, inner.y, inner.w, lh if one else 2 * lh),
            size=m.title,
            bold=True,
            max_lines=1 if one else 2,
        )
        now = slot.count if slot is not None else 0
        r = ui.text(
            t("service.count_now", count=now, cap=self.capacity),
            pygame.Rect(inner.x, r.bottom + m.gap // 2, inner.w, line_height(m.text)),
            color=ui.c.muted,
            overflow="error",
        )
        top = r.bottom + m.gap - lh - m.gap  # the field goes below the two lines
        field = pygame.Rect(inner.x, top + lh + m.gap, inner.w // 2, m.touch)
        ui.frame(field, c.outline, 2, m.radius)
        ui.text(
            self.digits,
            field.inflate(-2 * m.pad, 0),
            size=m.title,
            align="center",
            valign="middle",
            overflow="error",
        )
        ui.button(
            pygame.Rect(inner.right - inner.w // 3, field.y, inner.w // 3, m.touch),
            t("common.cancel"),
            lambda: self.app.pop(self),
            name="count-cancel",
            style="outline",
            max_lines=1,
        )
        pad = pygame.Rect(
            inner.x, field.bottom + m.gap, inner.w, inner.bottom - field.bottom - m.gap
        )
        valid = self.digits != "" and int(self.digits) <= self.capacity
        ui.keypad(pad, self._digit, self._delete, self._ok if valid else None, name="count")
