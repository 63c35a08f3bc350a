"""Technician login: the PIN keypad behind the hidden corner long-press.

Owns: the digits typed (never logged). Verification (PBKDF2, slow on purpose) runs on a
background thread so the loop keeps drawing; every attempt is logged and posted as
`ServiceLogin`. After 5 wrong PINs the menu is locked for 5 minutes (kiosk.core.pin).
"""

from __future__ import annotations

import pygame

from kiosk.contract import ServiceLogin
from kiosk.core.pin import verify_pin
from kiosk.ui.screens.base import AppApi, Screen, header
from kiosk.ui.widgets import Ui, line_height

MAX_PIN = 12


class ServicePinScreen(Screen):
    name = "service_pin"
    service = True
    idle_policy = "service"

    def __init__(self, app: AppApi) -> None:
        super().__init__(app)
        self.digits = ""
        self.checking = False
        self.wrong = False

    def _digit(self, d: str) -> None:
        if len(self.digits) < MAX_PIN and not self.checking:
            self.digits += d
            self.app.mark_dirty()

    def _delete(self) -> None:
        self.digits = self.digits[:-1]
        self.app.mark_dirty()

    def _ok(self) -> None:
        now = self.app.now()
        if self.app.pin_lockout.locked(now):
            self.app.post(ServiceLogin(ok=False, locked_out=True))
            self.digits = ""
            self.app.mark_dirty()
            return
        encoded = self.app.config.service_pin_hash
        pin, self.digits = self.digits, ""
        self.checking = True
        self.app.run_in_background(lambda: verify_pin(pin, encoded), self._checked)
        self.app.mark_dirty()

    def _checked(self, ok: bool) -> None:
        """The PIN check finished (called on the UI thread)."""
        if not self.checking:
            return
        self.checking = False
        self.app.pin_lockout = self.app.pin_lockout.record(ok, self.app.now())
        self.app.post(ServiceLogin(ok=ok))
        if ok:
            from kiosk.ui.screens.service_menu import ServiceMenuScreen

            self.app.replace_top(ServiceMenuScreen(self.app))
        else:
            self.wrong = True
            self.app.mark_dirty()

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(
            ui, self.app, t("service.pin_title"), back=lambda: self.app.exit_service("exit")
        )
        body = area.inflate(-2 * m.pad, -2 * m.pad)
        enabled = bool(self.app.config.service_pin_hash)
        lock = self.app.pin_lockout
        now = ui.now
        if m.portrait:
            top = pygame.Rect(body.x, body.y, body.w, body.h * 35 // 100)
            pad = pygame.Rect(
                body.x + body.w // 10,
                top.bottom + m.gap,
                body.w * 8 // 10,
                body.bottom - top.bottom - m.gap,
            )
        else:
            top = pygame.Rect(body.x, body.y, body.w * 45 // 100, body.h)
            pad = pygame.Rect(
                top.right + 2 * m.gap, body.y, body.right - top.right - 2 * m.gap, body.h
            )
        y = top.y
        r = ui.text(
            t("service.pin_hint"),
            pygame.Rect(top.x, y, top.w, line_height(m.title)),
            size=m.title,
            bold=True,
        )
        y = r.bottom + m.gap
        field = pygame.Rect(top.x, y, top.w, m.touch)
        ui.frame(field, c.outline, 2, m.radius)
        ui.text(
            "● " * len(self.digits),
            field.inflate(-2 * m.pad, 0),
            size=m.title,
            align="center",
            valign="middle",
            overflow="error",
        )
        y = field.bottom + m.gap
        if not enabled:
            msg, color = t("service.pin_unset"), c.error
        elif lock.locked(now):
            mins = max(1, int(lock.remaining_s(now) / 60 + 0.999))
            msg, color = t("service.pin_locked", m=mins), c.error
        elif self.checking:
            msg, color = t("service.pin_checking"), c.muted
        elif self.wrong:
            msg, color = t("service.pin_wrong", n=lock.tries_left(now)), c.error
        else:
            msg, color = "", c.text
        if msg:
            ui.text(msg, pygame.Rect(top.x, y, top.w, top.bottom - y), color=color, max_lines=4)
        ok = self._ok if enabled and len(self.digits) >= 4 and not self.checking else None
        ui.keypad(pad, self._digit, self._delete, ok, name="pin")
