"""Done (mode done): thanks, the amount paid and a receipt QR; back to the start by itself.

Owns: nothing. Returns to the attract screen after DONE_TIMEOUT_S without a touch (the app's
idle timer with policy "return"), or when the shopper taps Finish.
"""

from __future__ import annotations

import pygame

from kiosk.contract import BackToIdle
from kiosk.ui.screens.base import Screen, footer_rect, header, until_next_second
from kiosk.ui.widgets import Ui, line_height, qr_modules

DONE_TIMEOUT_S = 30.0
RECEIPT_MODULE_PX = 6  # the receipt QR's smallest module, on every screen size


class DoneScreen(Screen):
    name = "done"
    idle_policy = "return"
    return_after_s = DONE_TIMEOUT_S

    def next_frame(self, now: float) -> float | None:
        return until_next_second(self.app.last_activity + self.return_after_s, now)

    def _draw_qr(self, ui: Ui, qr: pygame.Rect, label: pygame.Rect) -> None:
        done = self.app.view.done
        assert done is not None
        ui.fill(qr, (255, 255, 255), 0)
        ui.qr(done.receipt_url, qr)
        ui.text(ui.t("done.receipt"), label, align="center")

    def _draw_words(self, ui: Ui, body: pygame.Rect) -> int:
        """Thanks, the programme line and the amount paid, from the top of `body`; returns the
        y below them."""
        m, c, t = ui.m, ui.c, ui.t
        done = self.app.view.done
        y = body.y
        r = ui.text(
            t("done.title"),
            pygame.Rect(body.x, y, body.w, line_height(m.huge)),
            size=m.huge,
            color=c.ok,
            align="center",
            bold=True,
        )
        y = r.bottom + m.gap
        r = ui.text(
            t("done.sub"),
            pygame.Rect(body.x, y, body.w, line_height(m.text) * 3),
            align="center",
            max_lines=3,
        )
        y = r.bottom + m.gap
        if done is not None:
            r = ui.text(
                t("done.paid", amount=t.money(done.paid_fen)),
                pygame.Rect(body.x, y, body.w, line_height(m.title)),
                size=m.title,
                align="center",
                bold=True,
                overflow="error",
                role="total",
            )
            y = r.bottom + m.gap
        return y

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(ui, self.app, t("app.title"))
        done = self.app.view.done
        content, foot = footer_rect(ui, area)
        body = content.inflate(-2 * m.pad, -2 * m.pad)
        label_h = line_height(m.text)
        # the receipt QR gets at least RECEIPT_MODULE_PX per module: a phone reads it at arm's
        # length; on a landscape screen it sits left of the words, on a portrait one below them
        need = RECEIPT_MODULE_PX * qr_modules(done.receipt_url) if done is not None else 0
        words = body
        if done is not None and not m.portrait:
            side = max(need, min(body.w * 40 // 100, body.h - label_h - m.gap))
            side = min(side, body.h - label_h - m.gap)
            qr = pygame.Rect(body.x, body.y, side, side)
            words = pygame.Rect(
                qr.right + 3 * m.gap, body.y, body.right - qr.right - 3 * m.gap, body.h
            )
            self._draw_qr(ui, qr, pygame.Rect(body.x, qr.bottom + m.gap, side, label_h))
        y = self._draw_words(ui, words)
        if done is not None and m.portrait:
            side = max(min(body.w * 45 // 100, body.bottom - y - label_h - 2 * m.gap), need)
            side = min(side, body.w, body.bottom - y - label_h - m.gap)
            qr = pygame.Rect(body.centerx - side // 2, y, side, side)
            self._draw_qr(ui, qr, pygame.Rect(body.x, qr.bottom + m.gap, body.w, label_h))
        bar = foot.inflate(-2 * m.pad, 0)
        half = (bar.w - m.gap) // 2
        left = self.app.last_activity + self.return_after_s - ui.now
        ui.text(
            t("done.auto", s=max(0, int(left + 0.999))),
            pygame.Rect(bar.x, foot.y + m.pad, half, m.touch),
            valign="middle",
            color=c.muted,
            max_lines=2,
        )
        ui.button(
            pygame.Rect(bar.right - half, foot.y + m.pad, half, m.touch),
            t("done.finish"),
            lambda: self.app.post(BackToIdle("finished")),
            name="finish",
        )
