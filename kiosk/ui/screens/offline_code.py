"""Offline confirmation code (a dialog over payment): a keypad to type the code the shopper's
phone shows when the kiosk is offline, with tries left and the locked state.

Owns: the digits typed so far (UI-local, never logged). Posts `EnterOfflineCode`; whether the
code is right is the controller's call, shown back through `PaymentView`.
"""

from __future__ import annotations

import pygame

from kiosk.contract import EnterOfflineCode, ViewState
from kiosk.core.payment import OFFLINE_CODE_DIGITS
from kiosk.ui.screens.base import AppApi, Screen, until_next_second
from kiosk.ui.widgets import Ui, line_height

MAX_DIGITS = OFFLINE_CODE_DIGITS  # the pay page shows 8 digits (as 1234 5678): one box each


class OfflineCodeScreen(Screen):
    name = "offline_code"
    overlay = True

    def __init__(self, app: AppApi) -> None:
        super().__init__(app)
        self.digits = ""
        self.submitted = False

    def next_frame(self, now: float) -> float | None:
        pay = self.app.view.payment
        return None if pay is None else until_next_second(pay.expires_at, now)

    def on_view(self, view: ViewState) -> None:
        if self.submitted and view.payment is not None and view.payment.last_code_rejected:
            self.digits = ""
            self.submitted = False

    def _digit(self, d: str) -> None:
        if len(self.digits) < MAX_DIGITS:
            self.digits += d
            self.app.mark_dirty()

    def _delete(self) -> None:
        self.digits = self.digits[:-1]
        self.app.mark_dirty()

    def _ok(self) -> None:
        self.submitted = True
        self.app.post(EnterOfflineCode(self.digits))

    def _boxes(self, ui: Ui, field: pygame.Rect) -> None:
        """One box per digit of the code, in two groups of four like the pay page shows it;
        the box the next digit goes into is outlined in the primary colour."""
        m, c = ui.m, ui.c
        g = max(3, m.gap // 2)
        half = MAX_DIGITS // 2
        w = (field.w - (MAX_DIGITS - 2) * g - 3 * g) // MAX_DIGITS
        h = min(field.h, max(w * 3 // 2, line_height(m.title)))
        x = field.x + (field.w - (MAX_DIGITS * w + (MAX_DIGITS - 2) * g + 3 * g)) // 2
        for i in range(MAX_DIGITS):
            box = pygame.Rect(x, field.y + (field.h - h) // 2, w, h)
            current = i == len(self.digits)
            ui.fill(box, c.bg, max(2, m.radius // 2))
            ui.frame(
                box, c.primary if current else c.outline, 3 if current else 2, max(2, m.radius // 2)
            )
            if i < len(self.digits):
                ui.text(
                    self.digits[i],
                    box,
                    size=m.title,
                    align="center",
                    valign="middle",
                    bold=True,
                    overflow="error",
                )
            x += w + (3 * g if i == half - 1 else g)

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.scrim()
        pay = self.app.view.payment
        if m.portrait:
            card = pygame.Rect(0, 0, ui.rect.w - 4 * m.pad, ui.rect.h * 72 // 100)
        else:
            card = pygame.Rect(0, 0, ui.rect.w - 4 * m.pad, ui.rect.h - 2 * m.pad)
        card.center = ui.rect.center
        ui.fill(card, c.surface, m.radius)
        inner = card.inflate(-2 * m.pad, -2 * m.pad)
        if m.portrait:
            top = pygame.Rect(inner.x, inner.y, inner.w, inner.h * 40 // 100)
            pad_rect = pygame.Rect(
                inner.x, top.bottom + m.gap, inner.w, inner.bottom - top.bottom - m.gap
            )
        else:
            top = pygame.Rect(inner.x, inner.y, inner.w * 48 // 100, inner.h)
            pad_rect = pygame.Rect(
                top.right + 2 * m.gap, inner.y, inner.right - top.right - 2 * m.gap, inner.h
            )
        locked = pay is None or pay.code_entry_locked
        y = top.y
        r = ui.text(
            t("payment.code_title"),
            pygame.Rect(top.x, y, top.w, line_height(m.title) * 2),
            size=m.title,
            bold=True,
            max_lines=2,
        )
        y = r.bottom + m.gap
        field = pygame.Rect(top.x, y, top.w, m.touch)
        self._boxes(ui, field)
        y = field.bottom + m.gap
        lh = line_height(m.text)
        if pay is not None:
            if locked:
                msg, color = t("payment.code_locked"), c.error
            elif pay.last_code_rejected:
                msg = (
                    t("payment.code_wrong")
                    + " "
                    + t("payment.code_tries", n=pay.offline_code_tries_left)
                )
                color = c.error
            else:
                msg, color = t("payment.code_tries", n=pay.offline_code_tries_left), c.muted
            r = ui.text(msg, pygame.Rect(top.x, y, top.w, lh * 3), color=color, max_lines=3)
            y = r.bottom + m.gap
            if y + line_height(m.text) <= top.bottom - m.touch - m.gap:
                ui.countdown(
                    pygame.Rect(top.x, y, top.w, lh), pay.expires_at - ui.now, "payment.time_left"
                )
        ui.button(
            pygame.Rect(top.x, top.bottom - m.touch, top.w, m.touch),
            t("common.back"),
            lambda: self.app.pop(self),
            name="code-back",
            style="outline",
        )
        ok = None if locked or len(self.digits) < MAX_DIGITS else self._ok
        ui.keypad(pad_rect, self._digit if not locked else (lambda d: None), self._delete, ok)
