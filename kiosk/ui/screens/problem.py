"""Problem (mode problem): what happened, how much is refunded and how it comes back, and
the service phone.

Owns: nothing. Says it plainly: the amount, the channel (WeChat / Alipay / the paying
account), that the shopper need do nothing, and the order number to quote on the phone.
"""

from __future__ import annotations

import pygame

from kiosk.contract import BackToIdle, ProblemView
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import Block, Screen, footer_rect, header, text_stack
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
        if m.portrait or pb is None:
            self._draw_column(ui, body, pb)
        else:  # landscape: what happened at the left, the refund at the right
            half = (body.w - 3 * m.gap) // 2
            left = pygame.Rect(body.x, body.y + m.gap, half, body.h - m.gap)
            right = pygame.Rect(left.right + 3 * m.gap, left.y, body.right - half - 3 * m.gap, 0)
            right.h = left.h
            blocks = self._blocks(ui, pb)
            text_stack(ui, left, [*blocks[:-1], self._phone(ui)], m.gap)
            self._refund(ui, right, pb, fill=True)
        bar = foot.inflate(-2 * m.pad, 0)
        w = min(bar.w, max(m.touch * 4, bar.w // 2))
        ui.button(
            pygame.Rect(bar.right - w, foot.y + m.pad, w, m.touch),
            t("problem.ok"),
            lambda: self.app.post(BackToIdle("shopper")),
            name="problem-ok",
        )

    def _phone(self, ui: Ui) -> Block:
        phone = self.app.view.service_phone or self.app.config.service_phone
        return Block(ui.t("problem.phone", phone=phone), ui.m.title, bold=True)

    def _blocks(self, ui: Ui, pb: ProblemView) -> list[Block]:
        """What happened, the items not dispensed, the order number (the refund apart)."""
        m, t = ui.m, ui.t
        blocks = [Block(t(f"problem.{pb.message_key}", **pb.params), m.title, 3, bold=True)]
        if pb.failed:
            items = t("problem.failed_items", items=self._items(ui, pb.failed))
            blocks.append(Block(items, m.text, 3))
        if pb.order_id:
            blocks.append(Block(t("problem.order", order=pb.order_id), m.text, 1))
        return blocks

    def _refund(self, ui: Ui, at: pygame.Rect, pb: ProblemView, *, fill: bool = False) -> int:
        """The refund in a framed box from `at.topleft` (`fill`: as high as `at`), or that
        nothing was charged. Returns the y below it."""
        m, c, t = ui.m, ui.c, ui.t
        if pb.refund_fen <= 0:
            r = ui.text(
                t("problem.no_charge"),
                pygame.Rect(at.x, at.y, at.w, line_height(m.title) * (3 if fill else 1)),
                size=m.title,
                max_lines=3 if fill else 1,
            )
            return r.bottom
        refund = t(
            "problem.refund",
            amount=t.money(pb.refund_fen),
            channel=t(f"channel.{pb.refund_channel}"),
        )
        h = at.h if fill else line_height(m.title) * 4 + 2 * m.pad
        box = pygame.Rect(at.x, at.y, at.w, h)
        ui.fill(box, c.surface, m.radius)
        ui.frame(box, c.primary, 3, m.radius)
        inner = box.inflate(-2 * m.pad, -2 * m.pad)
        ui.text(
            refund,
            inner,
            size=m.title,
            max_lines=max(4, inner.h // line_height(m.floor)),
            role="total",
        )
        return box.bottom

    def _draw_column(self, ui: Ui, body: pygame.Rect, pb: ProblemView | None) -> None:
        m = ui.m
        y = body.y + m.gap
        if pb is not None:
            blocks = self._blocks(ui, pb)
            y = text_stack(ui, pygame.Rect(body.x, y, body.w, body.h), blocks, m.gap)
            y = self._refund(ui, pygame.Rect(body.x, y + 2 * m.gap, body.w, 0), pb)
            y += 2 * m.gap
        phone = self._phone(ui)
        ui.text(
            phone.text,
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
