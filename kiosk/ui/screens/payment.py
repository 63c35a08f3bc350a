"""Payment (mode payment): the pay URL as a QR code, amount, items, countdown, more time,
cancel, and the way into the offline confirmation-code keypad.

Owns: nothing; the countdown runs on the controller's `expires_at` (the screen redraws once a
second). Never decides that payment succeeded or expired: the controller does.
"""

from __future__ import annotations

import pygame

from kiosk.contract import CancelOrder, ExtendPayment, PaymentView
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import Screen, footer_rect, header, until_next_second
from kiosk.ui.widgets import Ui, line_height


class PaymentScreen(Screen):
    name = "payment"

    def next_frame(self, now: float) -> float | None:
        pay = self.app.view.payment
        if pay is None or pay.expires_at <= now:
            return None
        return until_next_second(pay.expires_at, now)

    def _code(self) -> None:
        from kiosk.ui.screens.offline_code import OfflineCodeScreen

        self.app.push(OfflineCodeScreen(self.app))

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        pay = self.app.view.payment
        area = header(ui, self.app, t("payment.title"))
        if pay is None:
            return
        content, foot = footer_rect(ui, area)
        content = content.inflate(-2 * m.pad, -2 * m.pad)
        if m.portrait:
            hint = pygame.Rect(content.x, content.y, content.w, line_height(m.title) * 2)
            side = min(content.w * 62 // 100, content.h * 42 // 100)
            qr = pygame.Rect(content.centerx - side // 2, hint.bottom + m.gap, side, side)
            info = pygame.Rect(
                content.x, qr.bottom + 2 * m.gap, content.w, content.bottom - qr.bottom - 2 * m.gap
            )
        else:
            side = min(content.h, content.w * 45 // 100)
            qr = pygame.Rect(content.x, content.y + (content.h - side) // 2, side, side)
            right = pygame.Rect(
                qr.right + 3 * m.gap, content.y, content.right - qr.right - 3 * m.gap, content.h
            )
            hint = pygame.Rect(right.x, right.y, right.w, line_height(m.title) * 2)
            info = pygame.Rect(right.x, hint.bottom + m.gap, right.w, right.bottom - hint.bottom)
        ui.text(
            t("payment.hint"),
            hint,
            size=m.title,
            bold=True,
            align="center",
            valign="middle",
            max_lines=2,
        )
        ui.fill(qr.inflate(m.pad, m.pad), (255, 255, 255), m.radius)
        ui.qr(pay.pay_url, qr)
        self._draw_info(ui, info, pay)
        self._draw_actions(ui, foot, pay)

    def _draw_info(self, ui: Ui, info: pygame.Rect, pay: PaymentView) -> None:
        m, c, t = ui.m, ui.c, ui.t
        y = info.y
        lh = line_height(m.text)
        ui.text(
            t("payment.amount"), pygame.Rect(info.x, y, info.w, lh), align="center", color=c.muted
        )
        y += lh
        ui.text(
            t.money(pay.amount_fen),
            pygame.Rect(info.x, y, info.w, line_height(m.huge)),
            size=m.huge,
            color=c.price,
            bold=True,
            align="center",
            overflow="error",
        )
        y += line_height(m.huge) + m.gap
        ui.countdown(
            pygame.Rect(info.x, y, info.w, line_height(m.title)),
            pay.expires_at - ui.now,
            "payment.time_left",
        )
        y += line_height(m.title) + m.gap
        room = (info.bottom - y) // lh
        if room <= 0:
            return
        count = sum(line.qty for line in pay.lines)
        names = []
        for line in pay.lines:
            pv = self.app.view.product(line.product_id)
            name = product_text(pv.product, "name", t.lang) if pv else line.product_id
            names.append(t("payment.line", name=name, qty=line.qty))
        room_for_names = room - 2  # the count line and the order number come first
        if len(names) > room_for_names:
            keep = room_for_names - 1
            names = (
                [*names[:keep], t("payment.more_lines", n=len(names) - keep)] if keep > 0 else []
            )
        rows = [t("payment.items", count=count), *names, t("payment.order", order=pay.order_id)]
        for text in rows[:room]:
            ui.text(text, pygame.Rect(info.x, y, info.w, lh), align="center", color=c.muted)
            y += lh

    def _draw_actions(self, ui: Ui, foot: pygame.Rect, pay: PaymentView) -> None:
        m, t = ui.m, ui.t
        bar = foot.inflate(-2 * m.pad, 0)
        y = foot.y + m.pad
        w = (bar.w - 2 * m.gap) // 3
        ui.button(
            pygame.Rect(bar.x, y, w, m.touch),
            t("payment.cancel"),
            lambda: self.app.post(CancelOrder()),
            name="cancel",
            style="outline",
        )
        ui.button(
            pygame.Rect(bar.x + w + m.gap, y, w, m.touch),
            t("payment.code"),
            self._code,
            name="code",
            style="outline",
        )
        ui.button(
            pygame.Rect(bar.right - w, y, w, m.touch),
            t("payment.more_time"),
            (lambda: self.app.post(ExtendPayment())) if pay.can_extend else None,
            name="more-time",
            style="secondary",
        )
