"""Payment (mode payment): the pay URL as a QR code with the WeChat Pay / Alipay marks, amount,
items, countdown, more time, cancel (asks first), and the way into the offline
confirmation-code keypad; when the province link is down, a "kiosk offline" band says so and
what to do (the pay page shows the shopper the same words).

Owns: nothing; the countdown runs on the controller's `expires_at`: once a second only the
countdown's own rectangle is redrawn and presented (`update`), so a tap never waits behind a
full-screen frame that only moved the clock. Never decides that payment succeeded or expired:
the controller does.
"""

from __future__ import annotations

import pygame

from kiosk.contract import CancelOrder, ExtendPayment, PaymentView
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import AppApi, Screen, footer_rect, header, until_next_second
from kiosk.ui.widgets import Ui, line_height, qr_modules

#: The payment QR's smallest module, px: a phone reads it at arm's length on every screen.
QR_MODULE_PX = 6


class PaymentScreen(Screen):
    name = "payment"

    def __init__(self, app: AppApi) -> None:
        super().__init__(app)
        # the last full frame and where its countdown is: (rect, first, end) of its records
        self._frame: Ui | None = None
        self._tick: tuple[pygame.Rect, int, int] | None = None

    def next_frame(self, now: float) -> float | None:
        pay = self.app.view.payment
        if pay is None or pay.expires_at <= now:
            return None
        return until_next_second(pay.expires_at, now)

    def time_key(self, now: float) -> object | None:
        """What the countdown shows at `now`: its whole seconds (as `Translator.mmss` rounds)
        and whether it is in its last 20 s (drawn in the warning colour: `Ui.countdown`)."""
        pay = self.app.view.payment
        if pay is None:
            return ()
        left = pay.expires_at - now
        return (max(0, int(left + 0.999)), left <= 20)

    def _code(self) -> None:
        from kiosk.ui.screens.offline_code import OfflineCodeScreen

        self.app.push(OfflineCodeScreen(self.app))

    def _cancel(self) -> None:
        from kiosk.ui.screens.confirm import ConfirmScreen

        self.app.push(
            ConfirmScreen(
                self.app,
                title="payment.cancel_title",
                body="payment.cancel_body",
                yes="payment.cancel_yes",
                no="payment.cancel_no",
                on_yes=lambda: self.app.post(CancelOrder()),
            )
        )

    def _countdown(self, ui: Ui, rect: pygame.Rect, pay: PaymentView) -> None:
        """The time left, on the plain background; remembered so `update` can redraw it."""
        first = len(ui.texts)
        ui.countdown(rect, pay.expires_at - ui.now, "payment.time_left")
        self._tick = (rect.copy(), first, len(ui.texts))

    def update(self, ui: Ui) -> list[pygame.Rect] | None:
        """Only the clock moved: repaint the countdown's rectangle, keep every other record of
        the last full frame (its touch targets, texts and QR)."""
        last, tick, pay = self._frame, self._tick, self.app.view.payment
        if last is None or tick is None or pay is None or last.surface is not ui.surface:
            return None
        rect, first, end = tick
        ui.hits.extend(last.hits)
        ui.qrs.extend(last.qrs)
        ui.texts.extend(last.texts[:first])
        ui.surface.fill(ui.c.bg, rect)
        self._countdown(ui, rect, pay)
        ui.texts.extend(last.texts[end:])
        self._frame = ui
        return [rect]

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        self._frame, self._tick = ui, None
        ui.surface.fill(c.bg)
        pay = self.app.view.payment
        area = header(ui, self.app, t("payment.title"))
        if pay is None:
            return
        offline = self.app.view.offline
        content, foot = footer_rect(ui, area)
        content = content.inflate(-2 * m.pad, -2 * m.pad)
        marks_h = line_height(m.text) + m.pad // 2
        # a phone reads the QR at arm's length: at least QR_MODULE_PX per module, everywhere
        need = QR_MODULE_PX * qr_modules(pay.pay_url)
        if m.portrait:
            y = content.y
            if offline:
                y = offline_banner(ui, pygame.Rect(content.x, y, content.w, 0)).bottom + m.gap
            hint = pygame.Rect(content.x, y, content.w, line_height(m.title) * 2)
            marks = pygame.Rect(content.x, hint.bottom + m.gap, content.w, marks_h)
            info_min = line_height(m.text) * 4 + line_height(m.huge) + line_height(m.title)
            room = content.bottom - marks.bottom - 3 * m.gap - info_min
            side = max(0, min(content.w * 62 // 100, content.h * 42 // 100, room))
            if side < need:  # 540x960 offline or in large text: the condensed column
                self._draw_narrow(ui, content, pay, offline, need)
                self._draw_actions(ui, foot, pay, offline)
                return
            qr = pygame.Rect(content.centerx - side // 2, marks.bottom + 2 * m.gap, side, side)
            info = pygame.Rect(
                content.x, qr.bottom + 2 * m.gap, content.w, content.bottom - qr.bottom - 2 * m.gap
            )
        else:
            side = min(content.h, max(need, content.w * 45 // 100))
            right = pygame.Rect(
                content.x + side + 3 * m.gap, content.y, content.w - side - 3 * m.gap, content.h
            )
            need = line_height(m.title) + marks_h + line_height(m.huge) + line_height(m.title)
            if offline:
                need += banner_h(ui, right.w, m.title, m.text) + m.gap
            if right.h < need + 3 * m.gap:  # large text on a 7" panel: the condensed column
                self._draw_condensed(ui, content, pay, offline)
                self._draw_actions(ui, foot, pay, offline)
                return
            qr = pygame.Rect(content.x, content.y + (content.h - side) // 2, side, side)
            y = right.y
            if offline:
                y = offline_banner(ui, pygame.Rect(right.x, y, right.w, 0)).bottom + m.gap
            # the hint takes one line here (it shrinks to fit); two when there is room
            two = right.bottom - y >= line_height(m.title) * 2 + marks_h + 200
            hint = pygame.Rect(right.x, y, right.w, line_height(m.title) * (2 if two else 1))
            marks = pygame.Rect(right.x, hint.bottom + m.gap // 2, right.w, marks_h)
            info = pygame.Rect(right.x, marks.bottom + m.gap, right.w, right.bottom - marks.bottom)
        ui.text(
            t("payment.hint"),
            hint,
            size=m.title,
            bold=True,
            align="center",
            valign="middle",
            max_lines=2,
        )
        pay_marks(ui, marks)
        ui.fill(qr.inflate(m.pad, m.pad), (255, 255, 255), m.radius)
        ui.qr(pay.pay_url, qr)
        self._draw_info(ui, info, pay)
        self._draw_actions(ui, foot, pay, offline)

    def _draw_condensed(
        self, ui: Ui, content: pygame.Rect, pay: PaymentView, offline: bool
    ) -> None:
        """Landscape with little height (a 7" panel offline, or in large text): the QR at the
        left; at the right the offline band (its words shrink towards the floor), the marks,
        the amount (big where room is left) with the time left beside it, and the scan hint
        and the order number only where room is left."""
        m, c, t = ui.m, ui.c, ui.t
        need = QR_MODULE_PX * qr_modules(pay.pay_url)
        side = min(content.h, max(need, content.w * 45 // 100))
        qr = pygame.Rect(content.x, content.y + (content.h - side) // 2, side, side)
        ui.fill(qr.inflate(m.pad, m.pad), (255, 255, 255), m.radius)
        ui.qr(pay.pay_url, qr)
        right = pygame.Rect(
            qr.right + 3 * m.gap, content.y, content.right - qr.right - 3 * m.gap, 0
        )
        right.h = content.h
        marks_h = line_height(m.floor) + m.pad // 2
        row_h = line_height(m.title)
        y = right.y
        if offline:
            room = right.h - row_h - marks_h - 2 * m.gap
            y = offline_banner(ui, pygame.Rect(right.x, y, right.w, room)).bottom + m.gap
        hint_h = line_height(m.text)
        left = right.bottom - y - marks_h - row_h - 2 * m.gap  # what the band leaves over
        if left >= hint_h + m.gap:
            ui.text(t("payment.hint"), pygame.Rect(right.x, y, right.w, hint_h), bold=True)
            y += hint_h + m.gap
            left -= hint_h + m.gap
        pay_marks(ui, pygame.Rect(right.x, y, right.w, marks_h), size=m.floor)
        y += marks_h + m.gap
        amount = t.money(pay.amount_fen)
        size = m.title
        if left >= line_height(m.huge) - row_h:  # the big amount where there is room
            size, row_h = m.huge, line_height(m.huge)
        aw = ui.measure(amount, size, True)
        ui.text(
            amount,
            pygame.Rect(right.x, y, aw, row_h),
            size=size,
            color=c.price,
            bold=True,
            overflow="error",
            role="total",
        )
        self._countdown(ui, pygame.Rect(right.x + aw + m.gap, y, right.w - aw - m.gap, row_h), pay)
        y += row_h + m.gap
        if right.bottom - y >= line_height(m.text):
            order = t("payment.order", order=pay.order_id)
            ui.text(order, pygame.Rect(right.x, y, right.w, line_height(m.text)), color=c.muted)

    def _draw_narrow(
        self, ui: Ui, content: pygame.Rect, pay: PaymentView, offline: bool, need: int
    ) -> None:
        """Portrait with little height (540x960 offline or in large text): the offline band
        (its words shrink towards the floor), the scan hint on one line where room is left,
        the marks, the QR at `need` px at least (more where room is left), then the amount
        and the time left on one line and the order number where room is left."""
        m, c, t = ui.m, ui.c, ui.t
        marks_h = line_height(m.floor) + m.pad // 2
        row_h = line_height(m.title)
        fixed = need + m.pad + marks_h + row_h + 4 * m.gap  # the QR on its card, marks, amount
        y = content.y
        if offline:
            room = content.h - fixed - m.gap
            y = offline_banner(ui, pygame.Rect(content.x, y, content.w, room)).bottom + m.gap
        hint_h = line_height(m.text)
        left = content.bottom - y - fixed
        if left >= hint_h + m.gap:
            ui.text(
                t("payment.hint"),
                pygame.Rect(content.x, y, content.w, hint_h),
                bold=True,
                align="center",
            )
            y += hint_h + m.gap
            left -= hint_h + m.gap
        pay_marks(ui, pygame.Rect(content.x, y, content.w, marks_h), size=m.floor)
        y += marks_h + m.gap + m.pad // 2
        side = need + max(0, min(left, content.w * 62 // 100 - need))
        qr = pygame.Rect(content.centerx - side // 2, y, side, side)
        ui.fill(qr.inflate(m.pad, m.pad), (255, 255, 255), m.radius)
        ui.qr(pay.pay_url, qr)
        y = qr.bottom + m.pad // 2 + 2 * m.gap
        amount = t.money(pay.amount_fen)
        size = m.title
        if left - (side - need) >= line_height(m.huge) - row_h:  # the big amount where it fits
            size, row_h = m.huge, line_height(m.huge)
        aw = ui.measure(amount, size, True)
        time_left = t("payment.time_left", time=t.mmss(pay.expires_at - ui.now))
        cw = min(ui.measure(time_left, m.text, True) + m.pad, content.w - aw - 2 * m.gap)
        x = content.centerx - (aw + 2 * m.gap + cw) // 2
        ui.text(
            amount,
            pygame.Rect(x, y, aw, row_h),
            size=size,
            color=c.price,
            bold=True,
            valign="middle",
            overflow="error",
            role="total",
        )
        self._countdown(ui, pygame.Rect(x + aw + 2 * m.gap, y, cw, row_h), pay)
        y += row_h + m.gap
        if content.bottom - y >= line_height(m.text):
            order = t("payment.order", order=pay.order_id)
            ui.text(
                order,
                pygame.Rect(content.x, y, content.w, line_height(m.text)),
                align="center",
                color=c.muted,
            )

    def _draw_info(self, ui: Ui, info: pygame.Rect, pay: PaymentView) -> None:
        m, c, t = ui.m, ui.c, ui.t
        y = info.y
        lh = line_height(m.text)
        needed = lh + line_height(m.huge) + m.gap + line_height(m.title)
        if info.h >= needed:  # the "amount due" label goes first when room is short
            ui.text(
                t("payment.amount"),
                pygame.Rect(info.x, y, info.w, lh),
                align="center",
                color=c.muted,
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
            role="total",
        )
        y += line_height(m.huge) + m.gap
        self._countdown(ui, pygame.Rect(info.x, y, info.w, line_height(m.title)), pay)
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

    def _draw_actions(self, ui: Ui, foot: pygame.Rect, pay: PaymentView, offline: bool) -> None:
        """Cancel (asks first), enter code (the prominent one when the kiosk is offline) and
        more time, all three quieter than the QR code."""
        m, t = ui.m, ui.t
        bar = foot.inflate(-2 * m.pad, 0)
        y = foot.y + m.pad
        w = (bar.w - 2 * m.gap) // 3
        # one size for the three labels: the size the longest one needs (bold when filled)
        inner = pygame.Rect(0, 0, w, m.touch).inflate(-2 * m.pad, -max(4, m.pad // 2))
        labels = (
            (t("payment.cancel"), False),
            (t("payment.code"), offline),
            (t("payment.more_time"), False),
        )
        size = min(ui.layout(lab, inner.w, inner.h, m.text, 2, bold)[1] for lab, bold in labels)
        ui.button(
            pygame.Rect(bar.x, y, w, m.touch),
            labels[0][0],
            self._cancel,
            name="cancel",
            style="outline",
            size=size,
        )
        ui.button(
            pygame.Rect(bar.x + w + m.gap, y, w, m.touch),
            labels[1][0],
            self._code,
            name="code",
            style="primary" if offline else "outline",
            size=size,
        )
        ui.button(
            pygame.Rect(bar.right - w, y, w, m.touch),
            labels[2][0],
            (lambda: self.app.post(ExtendPayment())) if pay.can_extend else None,
            name="more-time",
            style="outline",
            size=size,
        )


def banner_h(ui: Ui, width: int, title_size: int, body_size: int) -> int:
    """The height of the offline band `width` wide with its words at these sizes."""
    m = ui.m
    lines = len(
        ui.layout(
            ui.t("payment.offline_body"),
            width - 2 * m.pad,
            10**6,
            body_size,
            10**6,
            False,
            min_size=body_size,
        )[0]
    )
    return line_height(title_size) + lines * line_height(body_size) + m.pad * 2


def offline_banner(ui: Ui, at: pygame.Rect) -> pygame.Rect:
    """ "Kiosk offline" and what to do, in a warning band `at.w` wide from `at.topleft`, as
    high as its text needs (the pay page uses the same words: kiosk/sim/paypage.py); with
    `at.h` set, its words shrink (down to the floor) to stay within it."""
    m, c, t = ui.m, ui.c, ui.t
    inner_w = at.w - 2 * m.pad
    title_size, size = m.title, m.text
    floor = m.floor or m.small
    while at.h and banner_h(ui, at.w, title_size, size) > at.h and size > floor:
        size = max(floor, size - max(1, size // 12))
        title_size = max(size, min(title_size, round(size * 1.35)))
    lh = line_height(size)
    body = t("payment.offline_body")
    lines = len(ui.layout(body, inner_w, 10**6, size, 10**6, False, min_size=size)[0])
    title_h = line_height(title_size)
    band = pygame.Rect(at.x, at.y, at.w, title_h + lines * lh + m.pad * 2)
    ui.fill(band, c.banner, m.radius)
    ui.fill(pygame.Rect(band.x, band.y, max(4, m.pad // 2), band.h), c.warn, 0)
    ui.text(
        t("payment.offline_title"),
        pygame.Rect(band.x + m.pad, band.y + m.pad, inner_w, title_h),
        size=title_size,
        bold=True,
        color=c.warn,
    )
    ui.text(
        body,
        pygame.Rect(band.x + m.pad, band.y + m.pad + title_h, inner_w, lines * lh),
        size=size,
        max_lines=lines,
        overflow="error",
    )
    return band


def pay_marks(ui: Ui, row: pygame.Rect, *, size: int | None = None) -> None:
    """WeChat Pay and Alipay marks, centred in `row`: a drawn sign (two speech bubbles; the
    character 支) and the name. Drawn shapes and text, not the brands' logo files."""
    m, c, t = ui.m, ui.c, ui.t
    side = row.h
    labels = (t("payment.wechat"), t("payment.alipay"))
    size = size or m.text
    widths = [side + m.gap // 2 + ui.measure(lab, size) for lab in labels]
    x = row.centerx - (sum(widths) + 2 * m.gap) // 2
    for i, (label, w) in enumerate(zip(labels, widths, strict=True)):
        icon = pygame.Rect(x, row.y, side, side)
        color = c.wechat if i == 0 else c.alipay
        ui.fill(icon, color, max(3, side // 5))
        if i == 0:
            big = pygame.Rect(0, 0, side * 58 // 100, side * 48 // 100)
            big.topleft = (icon.x + side // 8, icon.y + side // 6)
            small = pygame.Rect(0, 0, side * 50 // 100, side * 42 // 100)
            small.bottomright = (icon.right - side // 9, icon.bottom - side // 7)
            pygame.draw.ellipse(ui.surface, c.on_primary, big)
            pygame.draw.ellipse(ui.surface, color, small.inflate(4, 4))
            pygame.draw.ellipse(ui.surface, c.on_primary, small)
        else:
            ui.text(
                "支",
                icon,
                size=m.small,
                color=c.on_primary,
                align="center",
                valign="middle",
                bold=True,
            )
        ui.text(
            label,
            pygame.Rect(icon.right + m.gap // 2, row.y, w - side - m.gap // 2, side),
            size=size,
            valign="middle",
        )
        x += w + 2 * m.gap
