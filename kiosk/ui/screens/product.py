"""Product detail: picture, name, badge, price, origin county, producer, certification number,
spec, shelf life and items left; add to cart.

Owns: nothing but the product id being shown. Adding posts `AddToCart`; the limits shown
(stock left, items per order) come from the view state.
"""

from __future__ import annotations

import pygame

from kiosk.contract import AddToCart, ViewState
from kiosk.core.catalog import Product
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import AppApi, Screen, footer_rect, header, kv_rows
from kiosk.ui.widgets import Ui, line_height

TOAST_S = 2.5  # how long "added to the cart" stays


class ProductScreen(Screen):
    name = "product"
    idle_policy = "prompt"

    def __init__(self, app: AppApi, product_id: str) -> None:
        super().__init__(app)
        self.product_id = product_id
        self.adding_from: int | None = None  # qty in the cart when "add" was tapped
        self.toast_until = 0.0  # "added to the cart" shows until then

    def _add(self) -> None:
        self.adding_from = self.app.view.qty_in_cart(self.product_id)
        self.app.post(AddToCart(self.product_id))

    def on_view(self, view: ViewState) -> None:
        # the toast confirms what the controller did, not the tap: a refused add shows none
        if self.adding_from is not None and view.qty_in_cart(self.product_id) > self.adding_from:
            self.adding_from = None
            self.toast_until = self.app.now() + TOAST_S

    def next_frame(self, now: float) -> float | None:
        return self.toast_until - now if self.toast_until > now else None

    def _cart(self) -> None:
        from kiosk.ui.screens.cart import CartScreen

        self.app.replace_top(CartScreen(self.app))

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        view = self.app.view
        pv = view.product(self.product_id)
        title = t("catalog.title") if pv is None else product_text(pv.product, "name", t.lang)
        area = header(ui, self.app, title, back=lambda: self.app.pop(self))
        if pv is None:  # the catalog changed under us
            ui.text(t("catalog.empty"), area, align="center", valign="middle")
            return
        p = pv.product
        lang = t.lang
        content, foot = footer_rect(ui, area)
        content = content.inflate(-2 * m.pad, -2 * m.pad)
        stock = t.stock(pv)
        rows = [
            (t("product.origin"), product_text(p, "origin_county", lang)),
            (t("product.producer"), product_text(p, "producer", lang)),
            (t("product.cert"), p.certification_no),
            (t("product.spec"), product_text(p, "spec", lang)),
            (t("product.shelf_life"), t("product.shelf_life_days", days=p.shelf_life_days)),
            (t("product.stock"), stock),
        ]
        if m.portrait:
            side = min(content.w * 45 // 100, content.h * 32 // 100)
            img = pygame.Rect(content.x, content.y, side, side)
            words = pygame.Rect(
                img.right + 2 * m.gap, content.y, content.right - img.right - 2 * m.gap, side
            )
            table = pygame.Rect(content.x, 0, content.w, 0)  # under the picture and the price
        else:
            side = min(content.w * 30 // 100, content.h - line_height(m.huge) - m.gap)
            img = pygame.Rect(content.x, content.y, side, side)
            right = pygame.Rect(
                img.right + 2 * m.gap, content.y, content.right - img.right - 2 * m.gap, content.h
            )
            # the name takes the lines it needs (up to two) and shrinks so that every row of
            # the table fits, at the floor size at least
            table_least = len(rows) * line_height(m.floor) + (len(rows) - 1) * m.gap
            name_room = max(2 * line_height(m.floor), right.h - table_least - m.gap)
            box_h = min(line_height(m.title) * 2, name_room)
            got = ui.layout(title, right.w, box_h, m.title, 2, True)
            name_h = len(got[0]) * line_height(got[1]) if got[2] else box_h
            words = pygame.Rect(right.x, right.y, right.w, name_h)
            table = pygame.Rect(
                right.x, right.y + name_h + m.gap, right.w, right.h - name_h - m.gap
            )
        ui.image(self.app.images.surface(p, side), img, veiled=pv.sold_out)
        ui.badge(t("badge.fupin"), img.x + m.pad // 2, img.y + m.pad // 2, img.w - m.pad)
        bottom = self._draw_name_price(ui, p, words, img)
        if m.portrait:
            table.y = max(img.bottom, bottom) + 2 * m.gap
            table.h = content.bottom - table.y
        kv_rows(ui, table, rows)
        self._draw_actions(ui, foot)
        if ui.now < self.toast_until:
            self._draw_toast(ui, foot)

    def _draw_name_price(self, ui: Ui, p: Product, words: pygame.Rect, img: pygame.Rect) -> int:
        """The name (shrinks, then wraps) and the price (never cut): beside the picture on a
        portrait screen, the price under it on a landscape one. Returns the y below them."""
        m, c, t = ui.m, ui.c, ui.t
        name = product_text(p, "name", t.lang)
        price = t.money(p.price_fen)
        if m.portrait:
            r = ui.text(
                name,
                pygame.Rect(words.x, words.y, words.w, line_height(m.title) * 3),
                size=m.title,
                bold=True,
                max_lines=3,
                role="name",
            )
            r = ui.text(
                price,
                pygame.Rect(words.x, r.bottom + m.gap, words.w, line_height(m.huge)),
                size=m.huge,
                color=c.price,
                bold=True,
                overflow="error",
                role="price",
            )
            return r.bottom
        else:
            ui.text(name, words, size=m.title, bold=True, max_lines=2, role="name")
            r = ui.text(
                price,
                pygame.Rect(img.x, img.bottom + m.gap, img.w, line_height(m.huge)),
                size=m.huge,
                color=c.price,
                bold=True,
                overflow="error",
                role="price",
            )
            return r.bottom

    def _draw_toast(self, ui: Ui, foot: pygame.Rect) -> None:
        """A dark band with a tick just above the buttons: 已加入购物车 and the cart's count."""
        m, c, t = ui.m, ui.c, ui.t
        h = line_height(m.title) + 2 * m.pad
        band = pygame.Rect(foot.x + m.pad, foot.y - h - m.gap, foot.w - 2 * m.pad, h)
        ui.fill(band, c.secondary, m.radius)
        tick = pygame.Rect(band.x + m.pad, band.y + m.pad, band.h - 2 * m.pad, band.h - 2 * m.pad)
        pygame.draw.lines(
            ui.surface,
            c.ok_on_dark,
            False,
            [
                (tick.x, tick.centery),
                (tick.x + tick.w * 2 // 5, tick.bottom - tick.h // 6),
                (tick.right, tick.y + tick.h // 6),
            ],
            max(3, m.pad // 2),
        )
        ui.text(
            t("product.added", count=self.app.view.cart_count),
            pygame.Rect(tick.right + m.pad, band.y, band.right - tick.right - 2 * m.pad, band.h),
            size=m.title,
            color=c.on_secondary,
            valign="middle",
            bold=True,
            overflow="error",
        )

    def _draw_actions(self, ui: Ui, foot: pygame.Rect) -> None:
        m, t = ui.m, ui.t
        view = self.app.view
        pv = view.product(self.product_id)
        assert pv is not None
        in_cart = view.qty_in_cart(self.product_id)
        can_add = (
            not pv.sold_out and in_cart < pv.stock_left and view.cart_count < view.max_cart_items
        )
        y = foot.y + m.pad
        bar = foot.inflate(-2 * m.pad, 0)
        half = (bar.w - m.gap) // 2
        if view.cart_count >= view.max_cart_items:
            note = t("product.limit", n=view.max_cart_items)
        elif in_cart:
            note = t("product.in_cart", qty=in_cart)
        else:
            note = ""
        add = pygame.Rect(bar.x, y, half, m.touch)
        ui.button(add, t("product.add"), self._add if can_add else None, name="add")
        right = pygame.Rect(add.right + m.gap, y, bar.right - add.right - m.gap, m.touch)
        if view.cart_count:
            ui.button(right, t("product.go_cart"), self._cart, name="go-cart", style="secondary")
        elif note:
            ui.text(note, right, valign="middle", max_lines=2, color=ui.c.muted)
        if note and view.cart_count:
            # the note goes above the buttons, inside the content area
            box = pygame.Rect(
                bar.x, foot.y - line_height(m.text) - m.gap // 2, bar.w, line_height(m.text)
            )
            ui.text(note, box, align="right", color=ui.c.muted)
