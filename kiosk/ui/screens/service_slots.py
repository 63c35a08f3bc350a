"""Service panel over the slots: restock (fill, fill this page, fill all, set a count), test
vend, open a locker door, and the read-only stock report.

Owns: the page shown, the "needs refilling" filter and what this screen last did (for the
result). The layout is fixed: a tool row at the top, the rows, and the bottom bar with the pager
and the result beside the page number, so a result never moves a row under the technician's
finger. Actions post
`Restock`, `TestVend` or `OpenDoor`; counts come back through `ServiceInfo.slots`. Slots are
numbered as in the planogram (`SlotView.slot_no`), like every tool a technician reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeGuard

import pygame

from kiosk.contract import CheckSlot, OpenDoor, Restock, ServiceViewed, SlotView, TestVend
from kiosk.ui.i18n import product_text
from kiosk.ui.screens.base import (
    AppApi,
    Screen,
    footer_rect,
    header,
    header_button_w,
    result_text,
)
from kiosk.ui.widgets import Action, KeptPieces, Style, Ui, line_height, pager

#: Rows a page keeps on a short screen (800x480): the restock tools move into the header bar
#: rather than leave fewer.
MIN_ROWS = 6

SlotsMode = Literal["restock", "test_vend", "door", "stock"]
_TITLES = {
    "restock": "service.restock",
    "test_vend": "service.test_vend",
    "door": "service.door",
    "stock": "service.stock",
}


def _is_mode(mode: str) -> TypeGuard[SlotsMode]:
    return mode in _TITLES


def needs_refill(s: SlotView) -> bool:
    return s.product_id is not None and s.count < s.capacity


@dataclass(frozen=True)
class _RowShape:
    """What every row of a frame shares: the short labels, the name's height, two lines."""

    compact: bool
    name_h: int
    two_lines: bool


class ServiceSlotsScreen(Screen):
    name = "service_slots"
    service = True
    idle_policy = "service"

    def __init__(self, app: AppApi, mode: str) -> None:
        super().__init__(app)
        assert _is_mode(mode), mode
        self.mode: SlotsMode = mode
        self.page = 0
        self.only_refill = False
        self.shown: list[SlotView] = []  # the rows on the page drawn last
        self.done: tuple[str, dict[str, object]] | None = None  # result key and params
        self.filled: tuple[int, ...] = ()  # slots the last fill asked for
        self._rows = KeptPieces()  # the rows of the last frame
        if mode == "stock":
            app.post(ServiceViewed("stock"))

    def _slots(self) -> list[SlotView]:
        slots = list(self.app.view.service.slots)
        if self.mode == "door":
            slots = [s for s in slots if s.kind == "locker"]
        if self.mode == "restock" and self.only_refill:
            # a slot filled meanwhile stays on the page until the page is left: no row moves
            keep = {s.slot_no for s in self.shown}
            slots = [s for s in slots if needs_refill(s) or s.slot_no in keep]
        return slots

    def _turn(self, delta: int) -> None:
        self.page += delta
        self.shown = []
        self.app.mark_dirty()

    def _toggle_filter(self) -> None:
        self.only_refill = not self.only_refill
        self.page, self.shown = 0, []
        self.app.mark_dirty()

    def _set_count(self, slot: SlotView) -> None:
        from kiosk.ui.screens.service_count import ServiceCountScreen

        self.app.push(ServiceCountScreen(self.app, slot.slot_no, slot.capacity))

    def _fill(self, slots: list[SlotView]) -> None:
        for s in slots:
            self.app.post(Restock(s.slot_no, None))
        self.filled = tuple(s.slot_no for s in slots)
        if len(slots) == 1:
            self.done = ("service.filled_one", {"slot": slots[0].slot_no})
        else:
            self.done = ("service.filled_n", {"n": len(slots)})
        self.app.mark_dirty()

    def _ask_fill(self, slots: list[SlotView], title: str) -> None:
        from kiosk.ui.screens.confirm import ServiceConfirmScreen

        todo = [s for s in slots if needs_refill(s)]
        if not todo:
            self.done = ("service.nothing_to_fill", {})
            self.app.mark_dirty()
            return
        self.app.push(
            ServiceConfirmScreen(
                self.app,
                title=title,
                body="service.fill_body",
                yes="service.fill",
                no="common.cancel",
                on_yes=lambda: self._fill(todo),
                params={"n": len(todo), "items": sum(s.capacity - s.count for s in todo)},
            )
        )

    def _ask_vend(self, s: SlotView) -> None:
        """A test vend drops an item and takes it off the count: say so first."""
        from kiosk.ui.screens.confirm import ServiceConfirmScreen

        self.app.push(
            ServiceConfirmScreen(
                self.app,
                title="service.vend_title",
                body="service.vend_body",
                yes="service.vend",
                no="common.cancel",
                on_yes=lambda: self.app.post(TestVend(s.slot_no)),
                params={"slot": s.slot_no},
            )
        )

    def _result(self, ui: Ui) -> str:
        t = ui.t
        if self.done is not None:
            key, params = self.done
            return t(key, **params)
        return result_text(ui, self.app.view.service)

    def draw(self, ui: Ui) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.surface.fill(c.bg)
        up = self.mode == "restock" and self._tools_up(ui)
        area = header(
            ui,
            self.app,
            t(_TITLES[self.mode]),
            back=lambda: self.app.pop(self),
            tools=(lambda room: self._draw_tools(ui, room, in_header=True)) if up else None,
        )
        content, foot = footer_rect(ui, area)
        body = content.inflate(-2 * m.pad, -2 * m.pad)
        lh = line_height(m.text)
        y = body.y
        if self.mode == "restock" and not up:
            y = self._draw_tools(ui, pygame.Rect(body.x, y, body.w, m.touch))
        elif self.mode == "stock":
            slots = self.app.view.service.slots
            total = sum(s.count for s in slots if s.product_id)
            empty = sum(1 for s in slots if s.product_id and s.count == 0)
            ui.text(
                t("service.total", count=total, empty=empty),
                pygame.Rect(body.x, y, body.w, lh),
                bold=True,
            )
            y += lh + m.gap
        # the result goes in the bottom bar beside the page number: it never pushes the rows
        rows = pygame.Rect(body.x, y, body.w, body.bottom - y)
        pages = self._draw_rows(ui, rows)
        bar = foot.inflate(-2 * m.pad, 0)
        pager(
            ui,
            pygame.Rect(bar.x, foot.y + m.pad, bar.w, m.touch),
            self.page,
            pages,
            self._turn,
            "slots",
            note="" if self.mode == "stock" else self._result(ui),
        )

    def _tools_up(self, ui: Ui) -> bool:
        """Whether restock's tools go into the header bar (in the title's place): when a tool
        row above the rows would leave fewer than MIN_ROWS rows a page (800x480) and the
        three fit between the back and language buttons at the body size."""
        m, t = ui.m, ui.t
        bar = m.touch + 2 * m.pad
        body_h = ui.rect.h - 2 * bar - 2 * m.pad
        if (body_h - m.touch - m.gap + m.gap // 2) // (m.touch + m.gap) >= MIN_ROWS:
            return False
        room_w = ui.rect.w - 2 * m.pad - 2 * (header_button_w(ui) + m.gap)
        inner = (room_w - 2 * m.gap) // 3 - 2 * m.pad
        keys = ("service.only_refill", "service.fill_page", "service.fill_all")
        return all(ui.layout(t(k), inner, m.touch, m.text, 1, False)[2] for k in keys)

    def _draw_tools(self, ui: Ui, row: pygame.Rect, *, in_header: bool = False) -> int:
        """Restock's tool row: the "needs refilling" filter, fill this page, fill all; in the
        header bar, outlined in white (the filter filled white when on, like the large-text
        switch)."""
        m, t = ui.m, ui.t
        w = (row.w - 2 * m.gap) // 3
        y = row.y + (row.h - m.touch) // 2
        on: Style = "outline" if in_header else "primary"
        off: Style = "header" if in_header else "outline"
        ui.button(
            pygame.Rect(row.x, y, w, m.touch),
            t("service.only_refill"),
            self._toggle_filter,
            name="filter-refill",
            style=on if self.only_refill else off,
            max_lines=1,
        )
        ui.button(
            pygame.Rect(row.x + w + m.gap, y, w, m.touch),
            t("service.fill_page"),
            lambda: self._ask_fill(list(self.shown), "service.fill_page_title"),
            name="fill-page",
            style=off,
            max_lines=1,
        )
        ui.button(
            pygame.Rect(row.right - w, y, w, m.touch),
            t("service.fill_all"),
            lambda: self._ask_fill(list(self.app.view.service.slots), "service.fill_all_title"),
            name="fill-all",
            style=off,
            max_lines=1,
        )
        return row.bottom + m.gap

    def _columns(self, ui: Ui, width: int) -> int:
        """Two columns of rows when a row still has room for a readable name."""
        m = ui.m
        row_min = m.text * 22 if self.mode == "restock" else m.text * 16
        return 2 if width >= 2 * row_min + m.gap * 2 else 1

    def _draw_rows(self, ui: Ui, area: pygame.Rect) -> int:
        """This page's rows in `area`; returns the number of pages."""
        m, c, t = ui.m, ui.c, ui.t
        slots = self._slots()
        if not slots:
            empty = "service.no_doors" if self.mode == "door" else "service.all_full"
            ui.text(t(empty), area, align="center", valign="middle", max_lines=3, color=c.muted)
            self.shown = []
            return 1
        lh = line_height(m.text)
        cols = self._columns(ui, area.w)
        col_w = (area.w - (cols - 1) * 2 * m.gap) // cols
        row_h = m.touch + m.gap if self.mode != "stock" else lh + m.gap // 2
        # every row as high as the longest name of all slots needs (rows stay put)
        name_h = self._name_h(ui, col_w)
        if self._two_lines(ui, col_w):
            row_h = max(row_h, lh + name_h + m.pad + m.gap)
        elif name_h > lh:
            row_h = max(row_h, name_h + m.pad + m.gap)
        per_col = max(1, (area.h + m.gap // 2) // row_h)
        per_page = per_col * cols
        pages = max(1, -(-len(slots) // per_page))
        self.page = min(max(0, self.page), pages - 1)
        self.shown = slots[self.page * per_page : (self.page + 1) * per_page]
        # the same for every row of the frame: worked out once (each looks at every slot)
        shape = _RowShape(self._compact(ui, col_w), name_h, self._two_lines(ui, col_w))
        self._rows.begin()
        for i, s in enumerate(self.shown):
            col, r = divmod(i, per_col)
            x = area.x + col * (col_w + 2 * m.gap)
            row = pygame.Rect(x, area.y + r * row_h, col_w, row_h - m.gap // 2)
            # a row painted the same twice is kept (KeptPieces): everything it shows is here
            pv = self.app.view.product(s.product_id) if s.product_id else None
            name = product_text(pv.product, "name", t.lang) if pv else None
            lit = s.slot_no in self.filled and not needs_refill(s)
            key = (s, name, lit, shape, row.size, self.mode, t.lang, m, id(ui.font), c)
            self._rows.draw(ui, s.slot_no, row, key, partial(self._draw_row, ui, row, s, shape))
        return pages

    def _buttons(self, ui: Ui, s: SlotView) -> list[tuple[str, Action, str]]:
        t = ui.t
        if self.mode == "restock" and s.product_id:
            return [
                (t("service.fill"), lambda: self._fill([s]), f"fill-{s.slot_no}"),
                (t("service.set"), lambda: self._set_count(s), f"set-{s.slot_no}"),
            ]
        if self.mode == "test_vend" and s.product_id:
            return [
                (
                    t("service.check"),
                    lambda: self.app.post(CheckSlot(s.slot_no)),
                    f"check-{s.slot_no}",
                ),
                (t("service.vend"), lambda: self._ask_vend(s), f"vend-{s.slot_no}"),
            ]
        if self.mode == "door":
            return [
                (t("service.open"), lambda: self.app.post(OpenDoor(s.slot_no)), f"open-{s.slot_no}")
            ]
        return []

    def _two_lines(self, ui: Ui, width: int) -> bool:
        """A narrow row puts the name on a second line instead of cutting it to a stub."""
        m = ui.m
        two = self.mode in ("restock", "test_vend")
        fixed = self._fixed_w(ui) + self._button_w(ui) * (2 if two else 1)
        return self.mode != "stock" and width - fixed < m.text * 7

    def _names(self, ui: Ui) -> set[str]:
        t = ui.t
        names = set()
        for sv in self.app.view.service.slots:
            pv = self.app.view.product(sv.product_id) if sv.product_id else None
            names.add(product_text(pv.product, "name", t.lang) if pv else (sv.product_id or ""))
        return names

    def _compact(self, ui: Ui, width: int) -> bool:
        """A one-line row too narrow for every name (800x480 in English): the short slot
        label (#12) and narrower buttons (still touch-sized) give the name the room."""
        if self.mode == "stock" or self._two_lines(ui, width):
            return False
        w = self._name_w(ui, width, compact=False)
        lh = line_height(ui.m.text)
        return not all(ui.layout(n, w, lh, ui.m.text, 1, False)[2] for n in self._names(ui))

    def _label(self, ui: Ui, slot_no: int, compact: bool) -> str:
        return ui.t("service.slot_short" if compact else "service.slot", slot=slot_no)

    def _label_w(self, ui: Ui, compact: bool) -> int:
        """The slot label column: room for 4 digits; compact, for the widest slot there is."""
        m = ui.m
        if not compact:
            return ui.measure(self._label(ui, 8888, False), m.text, True) + m.pad
        slots = self.app.view.service.slots or ()
        nos = {s.slot_no for s in slots} or {88}
        return max(ui.measure(self._label(ui, n, True), m.text, True) for n in nos) + m.pad

    def _name_w(self, ui: Ui, width: int, compact: bool | None = None) -> int:
        """The width of a row's name in a row `width` wide."""
        m = ui.m
        if compact is None:
            compact = self._compact(ui, width)
        nbuttons = {"restock": 2, "test_vend": 2, "door": 1}.get(self.mode, 0)
        words_w = width - m.pad - nbuttons * self._button_w(ui, compact)
        if self._two_lines(ui, width):
            return words_w
        count_w = ui.measure("88/88", m.text, True) + m.pad
        return words_w - self._label_w(ui, compact) - count_w - m.gap

    def _name_h(self, ui: Ui, width: int) -> int:
        """The height the longest name of all slots needs in a row `width` wide: one line of
        body text, else two or three lines shrinking towards the floor (never cut)."""
        m = ui.m
        w = self._name_w(ui, width)
        names = self._names(ui)
        lh = line_height(m.text)
        if all(ui.layout(n, w, lh, m.text, 1, False)[2] for n in names):
            return lh
        for lines in (2, 3):
            h = lines * line_height(m.floor)
            if all(ui.layout(n, w, h, m.text, lines, False)[2] for n in names):
                return h
        return 3 * line_height(m.floor)

    def _fixed_w(self, ui: Ui) -> int:
        m, t = ui.m, ui.t
        label_w = ui.measure(t("service.slot", slot=8888), m.text, True) + m.pad
        return label_w + ui.measure("88/88", m.text, True) + 2 * m.pad

    def _button_w(self, ui: Ui, compact: bool = False) -> int:
        m, t = ui.m, ui.t
        labels = {
            "restock": ("service.fill", "service.set"),
            "test_vend": ("service.check", "service.vend"),
        }
        keys = labels.get(self.mode, ("service.open",))
        widest = max(ui.measure(t(k), m.text, True) for k in keys)
        return max(round(m.touch * (1.3 if compact else 1.6)), widest + 2 * m.pad) + m.gap

    def _draw_row(self, ui: Ui, row: pygame.Rect, s: SlotView, shape: _RowShape) -> None:
        m, c, t = ui.m, ui.c, ui.t
        ui.fill(row, c.surface, m.radius // 2)
        if s.slot_no in self.filled and not needs_refill(s):
            ui.frame(row, c.ok, 2, m.radius // 2)  # just filled: a green edge, nothing moves
        inner = row.inflate(-m.pad, 0)
        pv = self.app.view.product(s.product_id) if s.product_id else None
        name = (
            product_text(pv.product, "name", t.lang)
            if pv
            else (s.product_id or t("service.unassigned"))
        )
        buttons = self._buttons(ui, s)
        compact = shape.compact
        bw = self._button_w(ui, compact) - m.gap
        words = pygame.Rect(inner.x, inner.y, inner.w - len(buttons) * (bw + m.gap), inner.h)
        label = self._label(ui, s.slot_no, compact)
        count = t("service.count", count=s.count, cap=s.capacity)
        empty = s.product_id is not None and s.count == 0
        count_w = ui.measure("88/88", m.text, True) + m.pad
        label_w = self._label_w(ui, compact)
        name_color = c.text if s.product_id else c.muted
        name_h = shape.name_h
        lines = max(1, name_h // line_height(m.floor))
        if shape.two_lines:
            lh = line_height(m.text)
            top = pygame.Rect(words.x, words.y + (words.h - lh - name_h) // 2, words.w, lh)
            ui.text(label, top, bold=True, overflow="error")
            ui.text(
                count,
                top,
                align="right",
                color=c.error if empty else c.text,
                overflow="error",
            )
            name_box = pygame.Rect(words.x, top.bottom, words.w, name_h)
            ui.text(name, name_box, color=name_color, max_lines=lines)
        else:
            ui.text(
                label,
                pygame.Rect(words.x, words.y, label_w, words.h),
                valign="middle",
                bold=True,
                overflow="error",
            )
            name_box = pygame.Rect(
                words.x + label_w, words.y, words.w - label_w - count_w - m.gap, words.h
            )
            ui.text(name, name_box, valign="middle", color=name_color, max_lines=lines)
            ui.text(
                count,
                pygame.Rect(words.right - count_w - m.gap, words.y, count_w, words.h),
                valign="middle",
                align="right",
                color=c.error if empty else c.text,
                overflow="error",
            )
        x = words.right
        for text, action, name_ in buttons:
            ui.button(
                pygame.Rect(x, row.centery - m.touch // 2, bw, m.touch),
                text,
                action,
                name=name_,
                style="outline",
                max_lines=1,
            )
            x += bw + m.gap
