"""Problem (mode problem): what happened, how much is refunded and how it comes back, and
the service phone.

Owns: nothing. Says it plainly: the amount, the channel (WeChat / Alipay / the paying
account), that the shopper need do nothing, and the order number to quote on the phone.
"""

from __future__ import annotations

import pygame

from kiosk.contract import BackToIdle
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import Screen, footer_rect, header
from kiosk.ui.widgets import Ui, line_height


class ProblemScreen(Screen):
    name = "problem"
    idle_policy = "return"

    @property
    def return_after_s(self) -> float:
        return float(self.app.config.idle_timeout_s)

    def next_frame(self, now: float) -> float | None:
        return None

    def _items(self, ui: Ui, failed: tuple[str, ...]) -> str:
        """The items not dispensed by name, "岳西翠兰×1、砀山酥梨膏×2", in the order they failed."""
        t = ui.t
        counts: dict[str, int] = {}
        for pid in failed:
            counts[pid] = counts.get(pid, 0) + 1
        parts = []
        for pid, qty in counts.items():
            pv = self.app.view.product(pid)
            name = product_text(pv.product, "name", t.lang) if pv is not None else pid
            parts.append(t("problem.item", name=name, qty=qty))
        return t("problem.item_sep").join(parts)

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(ui, self.app, t("problem.title"))
        pb = self.app.view.problem
        content, foot = footer_rect(ui, area)
        body = content.inflate(-4 * m.pad, -2 * m.pad)
        y = body.y + m.gap
        if pb is not None:
            what = t(f"problem.{pb.message_key}", **pb.params)
            r = ui.text(
                what,
                pygame.Rect(body.x, y, body.w, line_height(m.title) * 3),
                size=m.title,
                bold=True,
                max_lines=3,
            )
            y = r.bottom + m.gap
            if pb.failed:
                r = ui.text(
                    t("problem.failed_items", items=self._items(ui, pb.failed)),
                    pygame.Rect(body.x, y, body.w, line_height(m.text) * 2),
                    max_lines=2,
                )
                y = r.bottom + m.gap
            y += m.gap
            if pb.refund_fen > 0:
                refund = t(
                    "problem.refund",
                    amount=t.money(pb.refund_fen),
                    channel=t(f"channel.{pb.refund_channel}"),
                )
                box = pygame.Rect(body.x, y, body.w, line_height(m.title) * 4 + 2 * m.pad)
                ui.fill(box, c.surface, m.radius)
                ui.frame(box, c.primary, 3, m.radius)
                r = ui.text(
                    refund,
                    box.inflate(-2 * m.pad, -2 * m.pad),
                    size=m.title,
                    max_lines=4,
                    role="total",
                )
                y = box.bottom + 2 * m.gap
            else:
                r = ui.text(
                    t("problem.no_charge"),
                    pygame.Rect(body.x, y, body.w, line_height(m.title)),
                    size=m.title,
                )
                y = r.bottom + 2 * m.gap
            if pb.order_id:
                r = ui.text(
                    t("problem.order", order=pb.order_id),
                    pygame.Rect(body.x, y, body.w, line_height(m.text)),
                )
                y = r.bottom + m.gap
        phone = self.app.view.service_phone or self.app.config.service_phone
        ui.text(
            t("problem.phone", phone=phone),
            pygame.Rect(
                body.x,
                y,
                body.w,
                max(line_height(m.title), min(body.bottom - y, line_height(m.title) * 2)),
            ),
            size=m.title,
            bold=True,
            max_lines=2,
        )
        bar = foot.inflate(-2 * m.pad, 0)
        w = min(bar.w, max(m.touch * 4, bar.w // 2))
        ui.button(
            pygame.Rect(bar.right - w, foot.y + m.pad, w, m.touch),
            t("problem.ok"),
            lambda: self.app.post(BackToIdle("shopper")),
            name="problem-ok",
        )
