"""Cart: each line with picture, name, unit price, - qty + and line total; the total; pay.

Owns: the page of lines shown. Quantities change with `SetQuantity` (0 removes the line);
`Checkout` starts payment. The controller holds the cart and enforces the limits.
"""

from __future__ import annotations

from functools import partial

import pygame

from kiosk.contract import CartLine, Checkout, SetQuantity
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import AppApi, Screen, footer_rect, header
from kiosk.ui.widgets import Ui, line_height, pager


class CartScreen(Screen):
    name = "cart"
    idle_policy = "prompt"

    def __init__(self, app: AppApi) -> None:
        super().__init__(app)
        self.page = 0

    def _set(self, product_id: str, qty: int) -> None:
        self.app.post(SetQuantity(product_id, qty))

    def _turn(self, delta: int) -> None:
        self.page += delta
        self.app.mark_dirty()

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        view = self.app.view
        area = header(ui, self.app, t("cart.title"), back=lambda: self.app.pop(self))
        content, foot = footer_rect(ui, area)
        # total bar sits above the action footer
        total_h = line_height(m.huge) + 2 * m.pad
        total = pygame.Rect(content.x, content.bottom - total_h, content.w, total_h)
        lines_area = pygame.Rect(
            content.x + m.pad,
            content.y + m.pad,
            content.w - 2 * m.pad,
            total.y - content.y - 2 * m.pad,
        )
        if not view.cart:
            ui.text(
                t("cart.empty"),
                lines_area,
                align="center",
                valign="middle",
                size=m.title,
                color=c.muted,
                max_lines=2,
            )
        else:
            self._draw_lines(ui, lines_area, view.cart)
        ui.fill(total, c.surface)
        inner = total.inflate(-2 * m.pad, 0)
        half = inner.w // 2
        ui.text(
            t("cart.total") + "  " + t("cart.count", count=view.cart_count),
            pygame.Rect(inner.x, inner.y, half, inner.h),
            valign="middle",
            max_lines=2,
        )
        ui.text(
            t.money(view.cart_total_fen),
            pygame.Rect(inner.x + half, inner.y, inner.w - half, inner.h),
            size=m.huge,
            color=c.price,
            align="right",
            valign="middle",
            bold=True,
            overflow="error",
            role="total",
        )
        bar = foot.inflate(-2 * m.pad, 0)
        half = (bar.w - m.gap) // 2
        y = foot.y + m.pad
        ui.button(
            pygame.Rect(bar.x, y, half, m.touch),
            t("cart.continue"),
            lambda: self.app.pop(self),
            name="continue",
            style="outline",
        )
        ui.button(
            pygame.Rect(bar.x + half + m.gap, y, bar.w - half - m.gap, m.touch),
            t("cart.checkout"),
            (lambda: self.app.post(Checkout())) if view.cart else None,
            name="checkout",
        )

    def _narrow(self, ui: Ui, width: int) -> bool:
        """Too narrow for one row (name beside - qty + and the total): the name goes on top."""
        m = ui.m
        total_w = ui.measure(ui.t.money(99999), m.text, True) + m.pad
        return width - 3 * m.touch - total_w - 2 * m.gap < 8 * m.text

    def _draw_lines(self, ui: Ui, area: pygame.Rect, cart: tuple[CartLine, ...]) -> None:
        m = ui.m
        lh = line_height(m.text)
        if self._narrow(ui, area.w - 2 * m.pad):
            row_h = 2 * lh + m.touch + 2 * m.pad + m.gap // 2
        else:
            row_h = max(m.touch + 2 * m.pad, 2 * lh + 2 * m.pad)
        pager_h = m.touch + m.gap
        per_page = max(1, (area.h + m.gap) // (row_h + m.gap))
        if len(cart) > per_page:
            per_page = max(1, (area.h - pager_h + m.gap) // (row_h + m.gap))
        pages = max(1, -(-len(cart) // per_page))
        self.page = min(max(0, self.page), pages - 1)
        y = area.y
        for line in cart[self.page * per_page : (self.page + 1) * per_page]:
            self._draw_line(ui, pygame.Rect(area.x, y, area.w, row_h), line)
            y += row_h + m.gap
        if pages > 1:
            self._draw_pager(ui, area, pages)

    def _draw_line(self, ui: Ui, row: pygame.Rect, line: CartLine) -> None:
        """One cart line: picture, name and unit price, - qty +, line total. Narrow: name and
        unit price on top, - qty + and the line total below."""
        m, c, t = ui.m, ui.c, ui.t
        view = self.app.view
        pv = view.product(line.product_id)
        ui.fill(row, c.surface, m.radius)
        inner = row.inflate(-2 * m.pad, -2 * m.pad)
        x = inner.x
        narrow = self._narrow(ui, inner.w)
        if pv is not None and inner.w > 8 * m.touch and not narrow:
            side = inner.h
            ui.image(self.app.images.surface(pv.product, side), pygame.Rect(x, inner.y, side, side))
            x += side + m.gap
        total_w = ui.measure(t.money(line.total_fen), m.text, True) + m.pad
        step_w = 3 * m.touch
        name = product_text(pv.product, "name", t.lang) if pv else line.product_id
        each = t("common.yuan_each", price=t.money(line.price_fen))
        lh = line_height(m.text)
        if narrow:
            each_w = ui.measure(each, m.text) + m.pad
            each_box = pygame.Rect(inner.right - each_w, inner.y, each_w, lh)
            name_box = pygame.Rect(x, inner.y, each_box.x - m.gap - x, 2 * lh)
            sx, sy = x, inner.bottom - m.touch
        else:
            name_w = inner.right - x - step_w - total_w - 2 * m.gap
            name_box = pygame.Rect(x, inner.y, name_w, inner.h - lh)
            each_box = pygame.Rect(x, inner.bottom - lh, name_w, lh)
            sx, sy = x + name_w + m.gap, row.centery - m.touch // 2
        ui.text(name, name_box, max_lines=2, role="name")
        ui.text(each, each_box, color=c.muted, align="right" if narrow else "left", role="price")
        self._draw_stepper(ui, pygame.Rect(sx, sy, step_w, m.touch), line)
        ui.text(
            t.money(line.total_fen),
            pygame.Rect(inner.right - total_w, sy, total_w, m.touch),
            align="right",
            valign="middle",
            bold=True,
            overflow="error",
            role="total",
        )

    def _draw_stepper(self, ui: Ui, at: pygame.Rect, line: CartLine) -> None:
        """- qty + in `at` (three touch-size squares)."""
        m = ui.m
        view = self.app.view
        pv = view.product(line.product_id)
        can_more = (
            pv is not None and line.qty < pv.stock_left and view.cart_count < view.max_cart_items
        )
        pid = line.product_id
        sx, sy = at.x, at.y
        ui.button(
            pygame.Rect(sx, sy, m.touch, m.touch),
            "−",
            partial(self._set, pid, line.qty - 1),
            name=f"minus-{pid}",
            style="outline",
            size=m.title,
            max_lines=1,
        )
        ui.text(
            str(line.qty),
            pygame.Rect(sx + m.touch, sy, m.touch, m.touch),
            size=m.title,
            align="center",
            valign="middle",
            bold=True,
            overflow="error",
        )
        ui.button(
            pygame.Rect(sx + 2 * m.touch, sy, m.touch, m.touch),
            "+",
            partial(self._set, pid, line.qty + 1) if can_more else None,
            name=f"plus-{pid}",
            style="outline",
            size=m.title,
            max_lines=1,
        )

    def _draw_pager(self, ui: Ui, area: pygame.Rect, pages: int) -> None:
        bar = pygame.Rect(area.x, area.bottom - ui.m.touch, area.w, ui.m.touch)
        pager(ui, bar, self.page, pages, self._turn, "cart")
