"""Service panel over the slots: restock (fill or set a count), test vend, open a locker
door, and the read-only stock report.

Owns: the page shown and which mode the panel is in. Actions post `Restock`, `TestVend` or
`OpenDoor`; counts come back through `ServiceInfo.slots`.
"""

from __future__ import annotations

from typing import Literal, TypeGuard

import pygame

from kiosk.contract import OpenDoor, Restock, ServiceViewed, SlotView, TestVend
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import AppApi, Screen, footer_rect, header
from kiosk.ui.widgets import Action, Ui, line_height, pager

SlotsMode = Literal["restock", "test_vend", "door", "stock"]
_TITLES = {
    "restock": "service.restock",
    "test_vend": "service.test_vend",
    "door": "service.door",
    "stock": "service.stock",
}


def _is_mode(mode: str) -> TypeGuard[SlotsMode]:
    return mode in _TITLES


class ServiceSlotsScreen(Screen):
    name = "service_slots"
    service = True
    idle_policy = "service"

    def __init__(self, app: AppApi, mode: str) -> None:
        super().__init__(app)
        assert _is_mode(mode), mode
        self.mode: SlotsMode = mode
        self.page = 0
        if mode == "stock":
            app.post(ServiceViewed("stock"))

    def _slots(self) -> list[SlotView]:
        slots = list(self.app.view.service.slots)
        if self.mode == "door":
            slots = [s for s in slots if s.kind == "locker"]
        return slots

    def _turn(self, delta: int) -> None:
        self.page += delta
        self.app.mark_dirty()

    def _set_count(self, slot: SlotView) -> None:
        from kiosk.ui.screens.service_count import ServiceCountScreen

        self.app.push(ServiceCountScreen(self.app, slot.slot_no, slot.capacity))

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(ui, self.app, t(_TITLES[self.mode]), back=lambda: self.app.pop(self))
        content, foot = footer_rect(ui, area)
        body = content.inflate(-2 * m.pad, -2 * m.pad)
        slots = self._slots()
        lh = line_height(m.text)
        info = self.app.view.service
        y = body.y
        if self.mode == "stock":
            total = sum(s.count for s in slots if s.product_id)
            empty = sum(1 for s in slots if s.product_id and s.count == 0)
            ui.text(
                t("service.total", count=total, empty=empty),
                pygame.Rect(body.x, y, body.w, lh),
                bold=True,
            )
            y += lh + m.gap
        elif info.last_result:
            ui.text(
                f"{t('service.result')}: {info.last_result}",
                pygame.Rect(body.x, y, body.w, lh),
                color=c.muted,
            )
            y += lh + m.gap
        if not slots:
            ui.text(
                t("service.no_doors"),
                pygame.Rect(body.x, y, body.w, body.bottom - y),
                align="center",
                valign="middle",
                max_lines=3,
            )
        row_h = m.touch + m.gap if self.mode != "stock" else lh + m.gap // 2
        per_page = max(1, (body.bottom - y) // row_h)
        pages = max(1, -(-len(slots) // per_page))
        self.page = min(max(0, self.page), pages - 1)
        for s in slots[self.page * per_page : (self.page + 1) * per_page]:
            self._draw_row(ui, pygame.Rect(body.x, y, body.w, row_h - m.gap // 2), s)
            y += row_h
        bar = foot.inflate(-2 * m.pad, 0)
        pager(
            ui,
            pygame.Rect(bar.x, foot.y + m.pad, bar.w, m.touch),
            self.page,
            pages,
            self._turn,
            "slots",
        )

    def _draw_row(self, ui: Ui, row: pygame.Rect, s: SlotView) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.fill(row, c.surface, m.radius // 2)
        inner = row.inflate(-m.pad, 0)
        pv = self.app.view.product(s.product_id) if s.product_id else None
        name = (
            product_text(pv.product, "name", t.lang)
            if pv
            else (s.product_id or t("service.unused"))
        )
        label_w = ui.measure(t("service.slot", slot=8888), m.text, True) + m.pad
        count_w = ui.measure("88/88", m.text, True) + m.pad
        buttons: list[tuple[str, Action, str]] = []
        if self.mode == "restock" and s.product_id:
            buttons = [
                (
                    t("service.fill"),
                    lambda: self.app.post(Restock(s.slot_no, None)),
                    f"fill-{s.slot_no}",
                ),
                (t("service.set"), lambda: self._set_count(s), f"set-{s.slot_no}"),
            ]
        elif self.mode == "test_vend" and s.product_id:
            buttons = [
                (t("service.vend"), lambda: self.app.post(TestVend(s.slot_no)), f"vend-{s.slot_no}")
            ]
        elif self.mode == "door":
            buttons = [
                (t("service.open"), lambda: self.app.post(OpenDoor(s.slot_no)), f"open-{s.slot_no}")
            ]
        bw = max(
            round(m.touch * 1.6),
            max((ui.measure(b[0], m.text, True) for b in buttons), default=0) + 2 * m.pad,
        )
        x = inner.x
        ui.text(
            t("service.slot", slot=s.slot_no),
            pygame.Rect(x, inner.y, label_w, inner.h),
            valign="middle",
            bold=True,
            overflow="error",
        )
        x += label_w
        name_w = inner.right - x - count_w - len(buttons) * (bw + m.gap)
        ui.text(name, pygame.Rect(x, inner.y, name_w, inner.h), valign="middle")
        x += name_w
        color = c.error if s.product_id and s.count == 0 else c.text
        ui.text(
            t("service.count", count=s.count, cap=s.capacity),
            pygame.Rect(x, inner.y, count_w, inner.h),
            valign="middle",
            align="right",
            color=color,
            overflow="error",
        )
        x += count_w + m.gap
        for label, action, name_ in buttons:
            ui.button(
                pygame.Rect(x, row.centery - m.touch // 2, bw, m.touch),
                label,
                action,
                name=name_,
                style="outline",
                max_lines=1,
            )
            x += bw + m.gap
