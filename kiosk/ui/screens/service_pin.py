"""Technician login: the PIN keypad behind the hidden corner long-press.

Owns: the digits typed (never logged). The PIN identifies the technician: it is checked
against each configured technician's hash (PBKDF2, slow on purpose) on a background thread so
the loop keeps drawing; every attempt is logged and posted as `ServiceLogin` with the id whose
PIN matched. The lockout is the controller's (kept in the store across restarts, growing
delays, kiosk.core.pin): a PIN is checked only when the view says the menu is not locked, and
the next one only once the controller has counted this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import pygame

from kiosk.config import TechnicianConfig
from kiosk.contract import PinView, ServiceLogin
from kiosk.core.pin import MAX_PIN_DIGITS, MIN_PIN_DIGITS, verify_pin
from kiosk.ui.screens.base import AppApi, Screen, header, until_next_second
from kiosk.ui.widgets import Ui, line_height

MAX_PIN = MAX_PIN_DIGITS


def identify(pin: str, technicians: Sequence[TechnicianConfig]) -> str:
    """The id of the technician whose PIN this is ("" when none). Every hash is tried, so the
    time taken does not tell which one matched."""
    found = ""
    for t in technicians:
        if verify_pin(pin, t.pin_hash) and not found:
            found = t.id
    return found


def locked_left(pin: PinView, now: float) -> float:
    """Seconds the menu stays locked (0: not locked); `now` on the UI's clock."""
    return 0.0 if pin.locked_until is None else max(0.0, pin.locked_until - now)


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

    @property
    def busy(self) -> bool:
        """A PIN is being checked, or the controller has not counted the last one yet."""
        pin = self.app.view.service.pin
        return self.checking or not pin.ready or pin.attempts < self.app.pin_awaiting

    def _post(self, login: ServiceLogin) -> None:
        """Every ServiceLogin adds one to the controller's count: wait for it to show."""
        self.app.pin_awaiting = max(self.app.pin_awaiting, self.app.view.service.pin.attempts) + 1
        self.app.post(login)

    def _ok(self) -> None:
        if self.busy:
            return
        if locked_left(self.app.view.service.pin, self.app.now()) > 0:
            self._post(ServiceLogin(ok=False, locked_out=True))
            self.digits = ""
            self.app.mark_dirty()
            return
        technicians = tuple(self.app.technicians)
        pin, self.digits = self.digits, ""
        self.checking = True
        self.app.run_in_background(lambda: identify(pin, technicians), self._checked)
        self.app.mark_dirty()

    def _checked(self, technician: str) -> None:
        """The PIN check finished (called on the UI thread)."""
        if not self.checking:
            return
        self.checking = False
        ok = bool(technician)
        self._post(ServiceLogin(ok=ok, technician=technician))
        if ok:
            from kiosk.ui.screens.service_menu import ServiceMenuScreen

            self.app.replace_top(ServiceMenuScreen(self.app))
        else:
            self.wrong = True
            self.app.mark_dirty()

    def next_frame(self, now: float) -> float | None:
        pin = self.app.view.service.pin
        if pin.locked_until is None or locked_left(pin, now) <= 0:
            return None
        return until_next_second(pin.locked_until, now)

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(
            ui, self.app, t("service.pin_title"), back=lambda: self.app.exit_service("exit")
        )
        body = area.inflate(-2 * m.pad, -2 * m.pad)
        enabled = bool(self.app.technicians)
        pin_view = self.app.view.service.pin
        now = ui.now
        left = locked_left(pin_view, now)
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
        hint = t("service.pin_hint")
        one = ui.layout(hint, top.w, line_height(m.title), m.title, 1, True)[2]
        r = ui.text(  # two lines rather than cut
            hint,
            pygame.Rect(top.x, y, top.w, line_height(m.title) * (1 if one else 2)),
            size=m.title,
            bold=True,
            max_lines=1 if one else 2,
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
        elif left > 0:
            secs = int(left + 0.999)
            if secs < 60:
                msg = t("service.pin_locked_s", s=secs)
            else:
                msg = t("service.pin_locked", m=secs // 60, s=secs % 60)
            color = c.error
        elif self.checking or (pin_view.ready and self.busy):
            msg, color = t("service.pin_checking"), c.muted
        elif not pin_view.ready:
            msg, color = t("service.pin_wait"), c.muted
        elif self.wrong and pin_view.tries_left > 0:
            msg, color = t("service.pin_wrong", n=pin_view.tries_left), c.error
        elif self.wrong:
            msg, color = t("service.pin_wrong_last"), c.error
        else:
            msg, color = "", c.text
        if msg:
            ui.text(msg, pygame.Rect(top.x, y, top.w, top.bottom - y), color=color, max_lines=4)
        ready = enabled and len(self.digits) >= MIN_PIN_DIGITS and not self.busy
        ok = self._ok if ready else None
        ui.keypad(pad, self._digit, self._delete, ok, name="pin")
