"""Catalog screen (mode shopping): category chips, a page of product tiles, pager and cart.

Owns: the category filter and page number (UI-local). Tiles show picture, 扶贫产品 badge, name,
spec, price and the stock state (已售罄, or 仅剩N件 with LOW_STOCK or fewer left); a tap opens
the product detail. Pages instead of scrolling: a page button is easier for older shoppers than
a fling. The cart button always shows the total (shorter labels before any ellipsis).
"""

from __future__ import annotations

from functools import partial

import pygame

from kiosk.contract import ProductView
from kiosk.core.catalog import Category
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import AppApi, Screen, footer_rect, header
from kiosk.ui.widgets import KeptPieces, Style, Ui, line_height

#: A product with this many items left or fewer says so on its tile (仅剩N件).
LOW_STOCK = 5


def name_h(ui: Ui) -> int:
    """A tile's name box: two lines of body text (a longer name shrinks towards the 4.8 mm
    floor, then takes a third line: `name_extra`)."""
    return 2 * line_height(ui.m.text)


def name_extra(ui: Ui, names: list[str], width: int) -> int | None:
    """Height the names need beyond two lines in `width`: 0 when every name fits two lines
    (shrinking towards the floor), a third line at the floor when one does not, None when
    even three lines at the floor cannot hold one (the grid then takes fewer columns)."""
    m = ui.m
    two = name_h(ui)
    if all(ui.layout(n, width, two, m.text, 2, False)[2] for n in names):
        return 0
    three = 3 * line_height(m.floor)
    if all(ui.layout(n, width, three, m.text, 3, False)[2] for n in names):
        return max(0, three - two)
    return None


def tile_text_h(ui: Ui) -> int:
    """The words under a tile's picture: name (2 lines), spec (1 line), price."""
    m = ui.m
    return name_h(ui) + line_height(m.small) + line_height(m.title) + 2 * m.gap


def grid_for(ui: Ui, area: pygame.Rect, names: list[str]) -> tuple[int, int, bool]:
    """Columns and rows of tiles that fit `area` with every name of `names` whole (two lines,
    or three at the floor with a smaller picture) and a picture at least 60% of the tile
    (45% with a third name line) and 1.5 touch targets; in large-text mode at most 2 columns
    (3 on a landscape screen), and where that leaves one tile with a small picture (a 7"
    panel, 540x960), tiles with the picture beside the words (the third value: True)."""
    cols, rows = _grid(ui, area, names)
    if ui.m.large:
        n = cols * rows if _picture(ui, area, cols, rows, names) > 0 else 0
        if n < 2:
            side = _side_grid(ui, area, names)
            if side is not None:
                return (*side, True)
    return cols, rows, False


def _tile_size(ui: Ui, area: pygame.Rect, cols: int, rows: int) -> tuple[int, int]:
    m = ui.m
    return (area.w - (cols - 1) * m.gap) // cols, (area.h - (rows - 1) * m.gap) // rows


def _picture(ui: Ui, area: pygame.Rect, cols: int, rows: int, names: list[str]) -> int:
    """The picture side of a tile with the words below (0: too small for that, or a name
    that would not fit)."""
    m = ui.m
    tw, th = _tile_size(ui, area, cols, rows)
    extra = name_extra(ui, names, tw - 2 * m.pad)
    if extra is None:
        return 0
    img = min(tw - 2 * m.pad, th - tile_text_h(ui) - extra - 2 * m.pad)
    if extra == 0:
        share, least = (0.5 if m.large else 0.6), 1.5
    else:  # a whole name on a third line is worth a smaller picture
        share, least = 0.3, 1.25
    ok = img >= share * (tw - 2 * m.pad) and img >= m.touch * least
    return img if ok else 0


def side_picture(ui: Ui, tile: pygame.Rect) -> int:
    """The picture side of a tile with the words beside it (0: the words do not fit)."""
    m = ui.m
    inner = tile.inflate(-2 * m.pad, -2 * m.pad)
    img = min(inner.h, inner.w * 45 // 100)
    fits = inner.w - img - m.gap >= m.text * 5 and inner.h >= tile_text_h(ui)
    return img if fits and img >= m.touch * 1.5 else 0


def _side_words(ui: Ui, tile: pygame.Rect, names: list[str]) -> bool:
    """Every name fits the words beside the picture of `tile` (what the spec and the price
    leave, at most three lines at the floor)."""
    m = ui.m
    inner = tile.inflate(-2 * m.pad, -2 * m.pad)
    w = inner.w - side_picture(ui, tile) - m.gap
    h = inner.h - line_height(m.title) - line_height(m.small) - m.gap
    lines = max(2, h // line_height(m.floor))
    return all(ui.layout(n, w, h, m.text, lines, False)[2] for n in names)


def _side_grid(ui: Ui, area: pygame.Rect, names: list[str]) -> tuple[int, int] | None:
    m = ui.m
    best: tuple[int, int] | None = None
    best_key = (0, 0)
    for cols in range(1, (2 if m.portrait else 3) + 1):
        for rows in range(1, 7):
            tw, th = _tile_size(ui, area, cols, rows)
            tile = pygame.Rect(0, 0, tw, th)
            img = side_picture(ui, tile)
            if img and (cols * rows, img) > best_key and _side_words(ui, tile, names):
                best, best_key = (cols, rows), (cols * rows, img)
    return best


def _grid(ui: Ui, area: pygame.Rect, names: list[str]) -> tuple[int, int]:
    m = ui.m
    best = (1, 1)
    best_key = (0, 0)
    max_cols = (2 if m.portrait else 3) if m.large else 8
    for cols in range(1, max_cols + 1):
        tw = (area.w - (cols - 1) * m.gap) // cols
        if tw < m.text * 6.5 or tw < m.touch * 2:
            break
        for rows in range(1, 7):
            img = _picture(ui, area, cols, rows, names)
            if not img:
                break
            key = (cols * rows, img)
            if key > best_key:
                best, best_key = (cols, rows), key
    return best


class CatalogScreen(Screen):
    name = "catalog"
    idle_policy = "prompt"

    def __init__(self, app: AppApi) -> None:
        super().__init__(app)
        self.category: Category | None = None
        self.page = 0
        # the tiles of the last frame by product id (one page: a few MB at 1080x1920; they
        # go with the screen when the shopper's session ends)
        self._tiles = KeptPieces()

    def _products(self) -> list[ProductView]:
        pvs = list(self.app.view.products)
        if self.category is not None:
            pvs = [pv for pv in pvs if pv.product.category is self.category]
        # in-stock first, then by category order, as the controller listed them
        return sorted(pvs, key=lambda pv: pv.sold_out)

    def set_category(self, cat: Category | None) -> None:
        self.category, self.page = cat, 0
        self.app.mark_dirty()

    def _turn(self, delta: int) -> None:
        self.page += delta
        self.app.mark_dirty()

    def _open(self, product_id: str) -> None:
        from kiosk.ui.screens.product import ProductScreen

        self.app.push(ProductScreen(self.app, product_id))

    def _open_cart(self) -> None:
        from kiosk.ui.screens.cart import CartScreen

        self.app.push(CartScreen(self.app))

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        area = header(ui, self.app, t("catalog.title"), large=True)
        content, foot = footer_rect(ui, area)
        content = content.inflate(-2 * m.pad, -2 * m.gap)
        y = self._draw_chips(ui, content)
        grid_area = pygame.Rect(content.x, y, content.w, content.bottom - y)
        pvs = self._products()
        # every product's name, not only this page's: the grid stays put across pages
        names = [product_text(pv.product, "name", t.lang) for pv in self.app.view.products]
        cols, rows, beside = grid_for(ui, grid_area, names)
        per_page = cols * rows
        pages = max(1, -(-len(pvs) // per_page))
        self.page = min(max(0, self.page), pages - 1)
        shown = pvs[self.page * per_page : (self.page + 1) * per_page]
        tw = (grid_area.w - (cols - 1) * m.gap) // cols
        th = (grid_area.h - (rows - 1) * m.gap) // rows
        # a third name line where this page needs one (the grid made sure it has the room)
        shown_names = [product_text(pv.product, "name", t.lang) for pv in shown]
        extra = 0 if beside else name_extra(ui, shown_names, tw - 2 * m.pad) or 0
        self._tiles.begin()
        for i, pv in enumerate(shown):
            r, col = divmod(i, cols)
            tile = pygame.Rect(
                grid_area.x + col * (tw + m.gap), grid_area.y + r * (th + m.gap), tw, th
            )
            self._draw_tile(ui, tile, pv, beside, extra)
        if not shown:
            ui.text(
                t("catalog.empty"),
                grid_area,
                align="center",
                valign="middle",
                max_lines=3,
                color=c.muted,
            )
        self._draw_footer(ui, foot, pages)

    def chips(self, ui: Ui) -> list[tuple[Category | None, str]]:
        t = ui.t
        present = {pv.product.category for pv in self.app.view.products}
        chips: list[tuple[Category | None, str]] = [(None, t("cat.all"))]
        chips += [(cat, t(f"cat.{cat.value}")) for cat in Category if cat in present]
        return chips

    def _chip_w(self, ui: Ui, label: str) -> int:
        return max(ui.m.touch, ui.measure(label, ui.m.text, True) + 3 * ui.m.pad)

    def _open_picker(self) -> None:
        from kiosk.ui.screens.category_picker import CategoryPickerScreen

        self.app.push(CategoryPickerScreen(self.app, self))

    def _draw_chips(self, ui: Ui, area: pygame.Rect) -> int:
        """One row of category chips, or, when they do not fit, one button opening a picker."""
        m, t = ui.m, ui.t
        chips = self.chips(ui)
        widths = [self._chip_w(ui, label) for _, label in chips]
        y = area.y
        if sum(widths) + m.gap * (len(chips) - 1) <= area.w:
            x = area.x
            for (cat, label), w in zip(chips, widths, strict=True):
                style: Style = "primary" if cat is self.category else "outline"
                ui.button(
                    pygame.Rect(x, y, w, m.touch),
                    label,
                    partial(self.set_category, cat),
                    name=f"cat-{cat.value if cat else 'all'}",
                    style=style,
                    max_lines=1,
                )
                x += w + m.gap
        else:
            current = next(label for cat, label in chips if cat is self.category)
            label = t("catalog.category", name=current)
            w = min(area.w, max(m.touch * 4, ui.measure(label, m.text, True) + 4 * m.pad))
            ui.button(
                pygame.Rect(area.x, y, w, m.touch),
                label,
                self._open_picker,
                name="categories",
                style="outline",
                max_lines=1,
            )
        return y + m.touch + m.gap

    def _draw_tile(
        self, ui: Ui, tile: pygame.Rect, pv: ProductView, beside: bool, extra: int
    ) -> None:
        """A tile painted the same twice is kept and blitted while nothing it shows changes
        (the product view, the picture, the language, the metrics, its size): a redrawn page
        is then a few blits instead of ~90 text renders (bench_ui frame render), and a page
        shown once costs what it always did (`KeptPieces`)."""
        side = self._picture_side(ui, tile, beside, extra)
        pic = self.app.images.surface(pv.product, side)
        key = (pv, ui.t.lang, tile.size, beside, extra, ui.m, id(ui.font), ui.c, pic)
        self._tiles.draw(
            ui,
            pv.product.product_id,
            tile,
            key,
            lambda: self._paint_tile(ui, tile, pv, beside, side, pic),
        )

    @staticmethod
    def _picture_side(ui: Ui, tile: pygame.Rect, beside: bool, extra: int) -> int:
        if beside:
            return side_picture(ui, tile)
        inner = tile.inflate(-2 * ui.m.pad, -2 * ui.m.pad)
        return max(0, min(inner.w, inner.h - tile_text_h(ui) - extra))

    def _paint_tile(
        self,
        ui: Ui,
        tile: pygame.Rect,
        pv: ProductView,
        beside: bool,
        side: int,
        pic: pygame.Surface,
    ) -> None:
        """One tile in `tile`: its picture `pic` is `side` px square (`_picture_side`)."""
        m, c, t = ui.m, ui.c, ui.t
        p = pv.product
        ui.fill(tile, c.surface, m.radius)
        ui.frame(tile, c.disabled, 1, m.radius)
        inner = tile.inflate(-2 * m.pad, -2 * m.pad)
        if beside:  # the picture at the left, the words beside it
            img = pygame.Rect(inner.x, inner.centery - side // 2, side, side)
            words = pygame.Rect(img.right + m.gap, inner.y, inner.right - img.right - m.gap, 0)
            words.h = inner.h
            y = inner.y
        else:
            img = pygame.Rect(inner.centerx - side // 2, inner.y, side, side)
            words = pygame.Rect(inner.x, img.bottom + m.gap, inner.w, inner.bottom - img.bottom)
            y = img.bottom + m.gap
        ui.image(pic, img, veiled=pv.sold_out)
        left, room = (img.x, img.w) if beside else (inner.x, inner.w)
        ui.badge(t("badge.fupin"), left, img.y + m.pad // 2, room)
        self._draw_stock(ui, img, pv, room)
        inner = pygame.Rect(words.x, inner.y, words.w, inner.h)
        name = product_text(p, "name", t.lang)
        # the name may use what the spec and the price leave (a long English name then
        # wraps into a third line instead of shrinking or being cut)
        room = inner.bottom - line_height(m.title) - line_height(m.small) - m.gap - y
        name_box = pygame.Rect(inner.x, y, inner.w, max(name_h(ui), room))
        r = ui.text(
            name,
            name_box,
            max_lines=max(2, name_box.h // line_height(m.floor)),
            color=c.muted if pv.sold_out else c.text,
            role="name",
        )
        ui.text(
            product_text(p, "spec", t.lang),
            pygame.Rect(inner.x, r.bottom, inner.w, line_height(m.small)),
            size=m.small,
            color=c.muted,
        )
        price_box = pygame.Rect(
            inner.x, inner.bottom - line_height(m.title), inner.w, line_height(m.title)
        )
        ui.text(
            t.money(p.price_fen),
            price_box,
            size=m.title,
            bold=True,
            color=c.muted if pv.sold_out else c.price,
            overflow="error",
            role="price",
        )
        ui.hit(tile, partial(self._open, p.product_id), f"tile-{p.product_id}")

    def _draw_stock(self, ui: Ui, img: pygame.Rect, pv: ProductView, max_w: int) -> None:
        """已售罄 (or why it is paused, e.g. 温度过高) across a sold-out picture; 仅剩N件 at the
        foot of a picture running low."""
        m, c, t = ui.m, ui.c, ui.t
        if pv.sold_out:
            why = "catalog.too_warm" if pv.unavailable else "catalog.sold_out"
            label, size, bg, fg = t(why), m.title, c.secondary, c.on_secondary
        elif pv.stock_left <= LOW_STOCK:
            label, size, bg, fg = t("catalog.low", n=pv.stock_left), m.small, c.warn, c.on_primary
        else:
            return
        w = min(max_w, ui.measure(label, size, True) + 2 * m.pad)
        pill = pygame.Rect(0, 0, w, line_height(size) + m.pad // 2)
        if pv.sold_out:
            pill.center = img.center
        else:
            pill.midbottom = (img.centerx, img.bottom - m.pad // 2)
        ui.fill(pill, bg, m.radius)
        ui.text(
            label,
            pill.inflate(-m.pad, 0),
            size=size,
            color=fg,
            align="center",
            valign="middle",
            bold=True,
            overflow="error",
        )

    def _draw_footer(self, ui: Ui, foot: pygame.Rect, pages: int) -> None:
        m, t = ui.m, ui.t
        ui.fill(foot, ui.c.surface)
        pygame.draw.line(ui.surface, ui.c.disabled, foot.topleft, foot.topright, 1)
        y = foot.y + m.pad
        x = foot.x + m.pad
        view = self.app.view
        # the cart's total always shows: shorter page buttons, then no page number, first
        need = ui.measure(t.money(view.cart_total_fen), m.text, True) + 3 * m.pad
        prev, nxt, page_no = t("catalog.prev"), t("catalog.next"), True
        for prev, nxt, page_no in (
            (t("catalog.prev"), t("catalog.next"), True),
            (t("catalog.prev_short"), t("catalog.next_short"), True),
            (t("catalog.prev_short"), t("catalog.next_short"), False),
        ):
            pw = max(round(m.touch * 1.8), ui.measure(prev, m.text, True) + 2 * m.pad)
            pw = max(pw, ui.measure(nxt, m.text, True) + 2 * m.pad)
            lw = ui.measure(f"{pages}/{pages}", m.text) + m.pad if page_no else -m.gap
            if pages <= 1 or foot.right - m.pad - (x + 2 * pw + lw + 3 * m.gap) >= need:
                break
        if pages > 1:
            ui.button(
                pygame.Rect(x, y, pw, m.touch),
                prev,
                (lambda: self._turn(-1)) if self.page > 0 else None,
                name="prev",
                style="outline",
                max_lines=1,
            )
            x += pw + m.gap
            if page_no:
                ui.text(
                    t("catalog.page", page=self.page + 1, pages=pages),
                    pygame.Rect(x, y, lw, m.touch),
                    align="center",
                    valign="middle",
                    overflow="error",
                )
            x += lw + m.gap
            ui.button(
                pygame.Rect(x, y, pw, m.touch),
                nxt,
                (lambda: self._turn(1)) if self.page < pages - 1 else None,
                name="next",
                style="outline",
                max_lines=1,
            )
            x += pw + m.gap
        count = view.cart_count
        room = foot.right - m.pad - x
        label = t("catalog.cart_empty")
        if count:
            # the total always shows: shorter labels before any ellipsis
            total = t.money(view.cart_total_fen)
            labels = [
                t("catalog.cart", count=count, total=total),
                t("catalog.cart_short", count=count, total=total),
                total,
            ]
            fitting = [lb for lb in labels if ui.measure(lb, m.text, True) + 2 * m.pad <= room]
            label = fitting[0] if fitting else total
        cw = min(room, max(m.touch * 3, ui.measure(label, m.text, True) + 3 * m.pad))
        ui.button(
            pygame.Rect(foot.right - m.pad - cw, y, cw, m.touch),
            label,
            self._open_cart,
            name="cart",
            style="primary" if count else "outline",
        )
