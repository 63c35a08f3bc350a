"""Widgets, drawn immediate-mode: a screen's `draw(ui)` paints and registers its tap targets.

Owns: text layout (wrap CJK per character and Latin per word, shrink to fit, ellipsis), buttons,
badges, tiles, keypad, QR codes, progress lists and countdowns, and the records a test uses to
prove nothing overflows (`Ui.texts`) and every target is big enough (`Ui.hits`).
Never posts intents itself (actions are callbacks from screens), never does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Literal, TypeVar

import pygame
import pygame.freetype

from kiosk.ui.i18n import Translator
from kiosk.ui.textlayout import orphan_lines, wrap_text
from kiosk.ui.theme import RGB, THEME, Colors, Metrics

__all__ = [
    "Hit",
    "Role",
    "TextRecord",
    "Ui",
    "qr_modules",
    "qr_surface",
    "wrap_text",
]

Align = Literal["left", "center", "right"]
VAlign = Literal["top", "middle", "bottom"]
Overflow = Literal["ellipsis", "error"]
Style = Literal["primary", "secondary", "outline", "ghost", "disabled", "header"]
#: What a piece of text is, for the checks: a price, a total, a button label, a product name
#: or a header's title is never cut (the tests fail on it; a name or title shrinks and wraps).
Role = Literal["", "price", "total", "button", "name", "title"]
Action = Callable[[], None]

ELLIPSIS = "…"


_LINE_CACHE: dict[tuple[int, str, int, RGB, int], tuple[pygame.Surface, pygame.Rect]] = {}
# Frames re-measure and re-wrap the same strings: both are pure functions of (font, text, size,
# style[, box]), so they are computed once (bounded: cleared when full, like _LINE_CACHE).
_MEASURE_CACHE: dict[tuple[int, str, int, bool], int] = {}
_LayoutKey = tuple[int, str, int, int, int, int, bool, int]
_LAYOUT_CACHE: dict[_LayoutKey, tuple[list[str], int, bool]] = {}
_VEIL_CACHE: dict[tuple[int, tuple[int, int], RGB], tuple[pygame.Surface, pygame.Surface]] = {}
_CACHE_MAX = 4096
_K = TypeVar("_K")
_V = TypeVar("_V")


def _bounded(cache: dict[_K, _V], key: _K, value: _V) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


@dataclass(frozen=True)
class TextRecord:
    """One piece of text drawn: the box it was given and the rectangle it actually used."""

    text: str
    box: pygame.Rect
    drawn: pygame.Rect
    size: int
    truncated: bool
    fits: bool  # False: it could not be made to fit (overflow="error") and spills or clips
    role: Role = ""
    lines: tuple[str, ...] = ()  # as drawn (an ellipsis included)


def moved_records(records: list[TextRecord], dx: int, dy: int) -> list[TextRecord]:
    """Text records of something drawn at (0, 0) of its own surface, as blitted at (dx, dy)."""
    return [replace(r, box=r.box.move(dx, dy), drawn=r.drawn.move(dx, dy)) for r in records]


@dataclass(frozen=True)
class Hit:
    rect: pygame.Rect
    action: Action
    name: str


@dataclass
class _Piece:
    key: object
    shot: pygame.Surface | None  # its pixels, once painted the same twice
    texts: list[TextRecord]  # relative to the piece's top left
    hits: list[Hit]  # relative too


class KeptPieces:
    """Pieces of a screen (catalog tiles, restock rows) painted the same twice are kept as a
    copy of their pixels, text records and touch targets, and later frames blit the copy while
    the piece's key (everything it shows) is unchanged. A piece is always painted in place
    first, so a page shown once costs what it would without this; only the pieces of the last
    frame are kept (`begin` at the start of each frame)."""

    def __init__(self) -> None:
        self._last: dict[object, _Piece] = {}
        self._now: dict[object, _Piece] = {}

    def begin(self) -> None:
        self._last, self._now = self._now, {}

    def __contains__(self, ident: object) -> bool:
        return ident in self._now

    def __len__(self) -> int:
        return len(self._now)

    def clear(self) -> None:
        self._last.clear()
        self._now.clear()

    def kept(self, ident: object) -> bool:
        """Whether the piece `ident` of the last frame has its pixels kept."""
        got = self._now.get(ident) or self._last.get(ident)
        return got is not None and got.shot is not None

    def draw(
        self, ui: Ui, ident: object, rect: pygame.Rect, key: object, paint: Callable[[], None]
    ) -> None:
        """Draw piece `ident` in `rect`: the kept copy if its key is unchanged, else `paint()`
        (which draws within `rect` only, on `ui`)."""
        got = self._last.get(ident)
        if got is not None and got.shot is not None and got.key == key:
            ui.surface.blit(got.shot, rect)
        else:
            n, h = len(ui.texts), len(ui.hits)
            paint()
            again = got is not None and got.key == key
            shot = ui.surface.subsurface(rect.clip(ui.rect)).copy() if again else None
            rel = [Hit(r.rect.move(-rect.x, -rect.y), r.action, r.name) for r in ui.hits[h:]]
            got = _Piece(key, shot, moved_records(ui.texts[n:], -rect.x, -rect.y), rel)
            del ui.texts[n:], ui.hits[h:]
        ui.texts.extend(moved_records(got.texts, rect.x, rect.y))
        ui.hits.extend(Hit(r.rect.move(rect.x, rect.y), r.action, r.name) for r in got.hits)
        self._now[ident] = got


def line_height(size: int) -> int:
    return round(size * 1.28)


@lru_cache(maxsize=64)
def _qr_matrix(data: str) -> tuple[tuple[bool, ...], ...]:
    """The QR code of `data`, quiet zone included: computed once per payload (qrcode's fit
    and mask search cost ~10 ms on the UI thread, and both functions below need it)."""
    import qrcode  # only the payment/receipt screens need it: not on the start-up path
    import qrcode.constants

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    qr.add_data(data)
    qr.make(fit=True)
    return tuple(tuple(bool(v) for v in row) for row in qr.get_matrix())


def qr_modules(data: str) -> int:
    """Modules across the QR code of `data`, quiet zone included (what `qr_surface` draws)."""
    return len(_qr_matrix(data))


@lru_cache(maxsize=64)
def qr_surface(data: str, side: int) -> pygame.Surface:
    """A crisp QR code (quiet zone included), integer module size, at most `side` px square."""
    matrix = _qr_matrix(data)
    n = len(matrix)
    module = max(1, side // n)
    one = pygame.Surface((n, n))  # one pixel per module, then an integer nearest-pixel scale
    one.fill((255, 255, 255))
    for y, row in enumerate(matrix):
        for x, on in enumerate(row):
            if on:
                one.set_at((x, y), (0, 0, 0))
    return pygame.transform.scale(one, (n * module, n * module))


_FLAT: dict[tuple[tuple[int, int], RGB], pygame.Surface] = {}


def _flat(size: tuple[int, int], color: RGB) -> pygame.Surface:
    """A cached opaque surface of one colour (the operand of the scrim's blend blits)."""
    key = (size, color)
    got = _FLAT.get(key)
    if got is None:
        got = pygame.Surface(size)
        got.fill(color)
        if len(_FLAT) >= 8:
            _FLAT.clear()
        _FLAT[key] = got
    return got


@dataclass
class Ui:
    """The drawing context of one frame."""

    surface: pygame.Surface
    m: Metrics
    font: pygame.freetype.Font
    t: Translator
    now: float
    c: Colors = THEME
    texts: list[TextRecord] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    qrs: list[tuple[str, pygame.Rect, int]] = field(default_factory=list)  # data, rect, module px

    # --- geometry helpers -------------------------------------------------------------
    @property
    def rect(self) -> pygame.Rect:
        return self.surface.get_rect()

    # --- text -------------------------------------------------------------------------
    def measure(self, text: str, size: int, bold: bool = False) -> int:
        if not text:
            return 0
        key = (id(self.font), text, size, bold)
        w = _MEASURE_CACHE.get(key)
        if w is None:
            style = pygame.freetype.STYLE_STRONG if bold else pygame.freetype.STYLE_DEFAULT
            r = self.font.get_rect(text, size=size, style=style)
            w = r.width + max(0, r.x)
            _bounded(_MEASURE_CACHE, key, w)
        return w

    def _blit_line(
        self, line: str, x: int, baseline: int, color: RGB, size: int, style: int
    ) -> None:
        # Render to a fresh surface and blit (blit clips); freetype's render_to onto the
        # target wrote outside the surface for glyphs at its edge and corrupted the heap.
        key = (id(self.font), line, size, color, style)
        cached = _LINE_CACHE.get(key)
        if cached is None:
            cached = self.font.render(line, color, size=size, style=style)
            surf = cached[0]
            if pygame.display.get_surface() is not None:
                surf = surf.convert_alpha()  # display format: a much cheaper blit
            cached = (surf, cached[1])
            if len(_LINE_CACHE) > 2048:
                _LINE_CACHE.clear()
            _LINE_CACHE[key] = cached
        surf, r = cached
        self.surface.blit(surf, (x + r.x, baseline - r.y))

    def _measure_at(self, text: str, *, size: int, bold: bool) -> int:
        return self.measure(text, size, bold)

    def layout(
        self,
        text: str,
        width: int,
        height: int,
        size: int,
        max_lines: int,
        bold: bool,
        min_size: int | None = None,
    ) -> tuple[list[str], int, bool]:
        """Lines, the size used and whether it fits (before any ellipsis)."""
        floor = min(size, min_size if min_size is not None else self.m.floor or self.m.small)
        key = (id(self.font), text, width, height, size, max_lines, bold, floor)
        got = _LAYOUT_CACHE.get(key)
        if got is None:
            got = self._layout(text, width, height, size, max_lines, bold, floor)
            _bounded(_LAYOUT_CACHE, key, got)
        lines, s, fits = got
        return list(lines), s, fits

    def _layout(
        self, text: str, width: int, height: int, size: int, max_lines: int, bold: bool, floor: int
    ) -> tuple[list[str], int, bool]:
        s = size
        while True:
            lines = wrap_text(text, width, partial(self._measure_at, size=s, bold=bold))
            if (
                len(lines) <= max_lines
                and len(lines) * line_height(s) <= height
                and (not orphan_lines(text, lines) or s <= floor)
            ):
                return lines, s, True
            if s <= floor:
                return lines, s, False
            s = max(floor, s - max(1, s // 12))

    def text(
        self,
        text: str,
        box: pygame.Rect,
        *,
        size: int | None = None,
        color: RGB | None = None,
        align: Align = "left",
        valign: VAlign = "top",
        max_lines: int = 1,
        bold: bool = False,
        overflow: Overflow = "ellipsis",
        min_size: int | None = None,
        role: Role = "",
    ) -> pygame.Rect:
        """Draw `text` inside `box`: wrap, then shrink (down to the 4.8 mm floor), then
        ellipsize (or, with overflow="error", record that it does not fit). Returns the rect
        actually used."""
        box = pygame.Rect(box)
        size = size or self.m.text
        color = color or self.c.text
        lines, s, fits = self.layout(text, box.w, box.h, size, max_lines, bold, min_size)
        truncated = False
        lh = line_height(s)
        if not fits and overflow == "ellipsis":
            keep = max(1, min(max_lines, box.h // lh))
            if len(lines) > keep or any(self.measure(ln, s, bold) > box.w for ln in lines):
                lines = lines[:keep]
                last = lines[-1]
                while last and self.measure(last + ELLIPSIS, s, bold) > box.w:
                    last = last[:-1]
                lines[-1] = last.rstrip() + ELLIPSIS
                truncated = True
            fits = len(lines) * lh <= box.h
        total_h = len(lines) * lh
        if valign == "middle":
            y = box.y + (box.h - total_h) // 2
        elif valign == "bottom":
            y = box.bottom - total_h
        else:
            y = box.y
        ascender = self.font.get_sized_ascender(s)
        descender = -self.font.get_sized_descender(s)
        lead = (lh - ascender - descender) // 2
        style = pygame.freetype.STYLE_STRONG if bold else pygame.freetype.STYLE_DEFAULT
        used = pygame.Rect(box.x, y, 0, total_h)
        xs: list[int] = []
        widths: list[int] = []
        for i, ln in enumerate(lines):
            w = self.measure(ln, s, bold)
            if align == "center":
                x = box.x + (box.w - w) // 2
            elif align == "right":
                x = box.right - w
            else:
                x = box.x
            baseline = y + i * lh + lead + ascender
            if ln:
                self._blit_line(ln, x, baseline, color, s, style)
            xs.append(x)
            widths.append(w)
        if lines:
            used.x = min(xs)
            used.w = max(x + w for x, w in zip(xs, widths, strict=True)) - used.x
        if not box.contains(used):
            fits = False
        self.texts.append(TextRecord(text, box, used, s, truncated, fits, role, tuple(lines)))
        return used

    # --- shapes -----------------------------------------------------------------------
    def fill(self, rect: pygame.Rect, color: RGB, radius: int = 0) -> None:
        pygame.draw.rect(self.surface, color, rect, border_radius=radius)

    def frame(self, rect: pygame.Rect, color: RGB, width: int = 2, radius: int = 0) -> None:
        pygame.draw.rect(self.surface, color, rect, width=width, border_radius=radius)

    def hit(self, rect: pygame.Rect, action: Action, name: str) -> None:
        self.hits.append(Hit(pygame.Rect(rect), action, name))

    # --- widgets ----------------------------------------------------------------------
    def button(
        self,
        rect: pygame.Rect,
        label: str,
        action: Action | None,
        *,
        name: str,
        style: Style = "primary",
        size: int | None = None,
        max_lines: int = 2,
    ) -> pygame.Rect:
        """A rounded button with a centred label; `action=None` draws it disabled."""
        rect = pygame.Rect(rect)
        if action is None:
            style = "disabled"
        bg, fg, border = {
            "primary": (self.c.primary, self.c.on_primary, None),
            "secondary": (self.c.secondary, self.c.on_secondary, None),
            "outline": (self.c.surface, self.c.text, self.c.outline),
            "ghost": (None, self.c.text, None),
            "header": (None, self.c.on_header, self.c.on_header),
            "disabled": (self.c.disabled, self.c.on_disabled, None),
        }[style]
        if bg is not None:
            self.fill(rect, bg, self.m.radius)
        if border is not None:
            self.frame(rect, border, max(2, self.m.radius // 4), self.m.radius)
        inner = rect.inflate(-2 * self.m.pad, -max(4, self.m.pad // 2))
        self.text(
            label,
            inner,
            size=size or self.m.text,
            color=fg,
            align="center",
            valign="middle",
            max_lines=max_lines,
            bold=style in ("primary", "secondary"),
            role="button",
        )
        if action is not None:
            self.hit(rect, action, name)
        return rect

    def badge(self, label: str, x: int, y: int, max_w: int) -> pygame.Rect:
        """A red pill with white text (扶贫产品), top-left at (x, y)."""
        s = self.m.small
        pad = max(4, self.m.pad // 2)
        w = min(max_w, self.measure(label, s, True) + 2 * pad)
        h = line_height(s) + pad // 2
        rect = pygame.Rect(x, y, w, h)
        self.fill(rect, self.c.badge, h // 2 if h < w else self.m.radius)
        self.text(
            label,
            rect.inflate(-2 * pad, 0),
            size=s,
            color=self.c.on_badge,
            align="center",
            valign="middle",
            bold=True,
        )
        return rect

    def image(self, surf: pygame.Surface, rect: pygame.Rect, *, veiled: bool = False) -> None:
        if veiled:
            # the veiled picture is drawn once per (picture, colour), not every frame
            key = (id(surf), surf.get_size(), self.c.sold_out_veil)
            entry = _VEIL_CACHE.get(key)
            got = entry[1] if entry is not None and entry[0] is surf else None
            if got is None:
                got = surf.copy()
                veil = pygame.Surface(surf.get_size(), pygame.SRCALPHA)
                veil.fill((*self.c.sold_out_veil, 170))
                got.blit(veil, (0, 0))
                _bounded(_VEIL_CACHE, key, (surf, got))
            surf = got
        self.surface.blit(surf, rect)

    def qr(self, data: str, rect: pygame.Rect) -> pygame.Rect:
        """A QR code centred in `rect` on a white card."""
        side = min(rect.w, rect.h)
        surf = qr_surface(data, side)
        r = surf.get_rect(center=rect.center)
        self.surface.blit(surf, r)
        self.qrs.append((data, r, r.w // qr_modules(data)))
        return r

    def keypad(
        self,
        rect: pygame.Rect,
        on_digit: Callable[[str], None],
        on_delete: Action,
        on_ok: Action | None,
        *,
        name: str = "key",
    ) -> None:
        """A 4x3 number pad: 1-9, delete, 0, OK. Keys are at least the touch size."""
        cols, rows = 3, 4
        g = self.m.gap
        kw = (rect.w - (cols - 1) * g) // cols
        kh = (rect.h - (rows - 1) * g) // rows
        labels = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "del", "0", "ok"]
        for i, lab in enumerate(labels):
            r, c = divmod(i, cols)
            k = pygame.Rect(rect.x + c * (kw + g), rect.y + r * (kh + g), kw, kh)
            if lab == "del":
                self.button(
                    k,
                    self.t("keypad.delete"),
                    on_delete,
                    name=f"{name}-del",
                    style="outline",
                    max_lines=1,
                )
            elif lab == "ok":
                self.button(k, self.t("keypad.ok"), on_ok, name=f"{name}-ok", max_lines=1)
            else:
                self.button(
                    k,
                    lab,
                    partial(on_digit, lab),
                    name=f"{name}-{lab}",
                    style="outline",
                    size=self.m.title,
                    max_lines=1,
                )

    def progress_list(
        self, rect: pygame.Rect, rows: Sequence[tuple[str, str, RGB]], *, row_h: int
    ) -> None:
        """Rows of (label, status, status colour): label left (two lines when the row has
        the room, see `progress_label_w`), status right."""
        y = rect.y
        status_w = self._status_w(rect.w, rows)
        lines = max(1, min(2, (row_h - self.m.pad) // line_height(self.m.floor)))
        for label, status, color in rows:
            if y + row_h > rect.bottom:
                break
            r = pygame.Rect(rect.x, y, rect.w, row_h)
            self.fill(r, self.c.surface, self.m.radius)
            inner = r.inflate(-2 * self.m.pad, 0)
            self.text(
                label,
                pygame.Rect(inner.x, inner.y, inner.w - status_w - self.m.gap, inner.h),
                valign="middle",
                max_lines=lines,
            )
            self.text(
                status,
                pygame.Rect(inner.right - status_w, inner.y, status_w, inner.h),
                align="right",
                valign="middle",
                color=color,
                bold=True,
            )
            y += row_h + self.m.gap // 2

    def _status_w(self, width: int, rows: Sequence[tuple[str, str, RGB]]) -> int:
        widest = max((self.measure(st, self.m.text, True) for _, st, _ in rows), default=0)
        return min(width * 2 // 5, widest + self.m.pad)

    def progress_label_w(self, width: int, rows: Sequence[tuple[str, str, RGB]]) -> int:
        """The width a `progress_list` row `width` wide leaves its label."""
        return width - 2 * self.m.pad - self._status_w(width, rows) - self.m.gap

    def countdown(self, rect: pygame.Rect, seconds_left: float, key: str, **params: object) -> None:
        """`key` formatted with time=m:ss (plus params), drawn in `rect`."""
        color = self.c.error if seconds_left <= 20 else self.c.text
        self.text(
            self.t(key, time=self.t.mmss(seconds_left), **params),
            rect,
            color=color,
            align="center",
            valign="middle",
            bold=True,
            overflow="error",
        )

    def scrim(self, alpha: int = 150) -> None:
        """Darken the whole frame towards the scrim colour by `alpha`/255, in place: two
        full-surface fills (multiply, then add) instead of allocating and alpha-blending a
        full-screen SRCALPHA surface every frame."""
        size = self.surface.get_size()
        keep = 255 - alpha
        add = (
            round(self.c.scrim[0] * alpha / 255),
            round(self.c.scrim[1] * alpha / 255),
            round(self.c.scrim[2] * alpha / 255),
        )
        mult = _flat(size, (keep, keep, keep))
        self.surface.blit(mult, (0, 0), special_flags=pygame.BLEND_RGB_MULT)
        if any(add):
            self.surface.blit(_flat(size, add), (0, 0), special_flags=pygame.BLEND_RGB_ADD)


def pager(
    ui: Ui,
    bar: pygame.Rect,
    page: int,
    pages: int,
    turn: Callable[[int], None],
    name: str,
    note: str = "",
) -> None:
    """A full-width page-turn bar: "previous" at the left, "page n / m" in the middle, "next"
    at the right, one touch high at the top of `bar`. `turn(-1)` / `turn(1)` turn the page;
    the buttons are disabled at the first / last page. Names: `<name>-prev`, `<name>-next`.
    `note` (a result line) goes in the middle beside the page number, up to two lines, so it
    takes no room from the page and never moves what is above it."""
    m, t = ui.m, ui.t
    y = bar.y
    bw = max(m.touch * 2, ui.measure(t("catalog.prev"), m.text, True) + 2 * m.pad)
    bw = max(bw, ui.measure(t("catalog.next"), m.text, True) + 2 * m.pad)
    ui.button(
        pygame.Rect(bar.x, y, bw, m.touch),
        t("catalog.prev"),
        (lambda: turn(-1)) if page > 0 else None,
        name=f"{name}-prev",
        style="outline",
        max_lines=1,
    )
    middle = pygame.Rect(bar.x + bw + m.gap, y, bar.w - 2 * bw - 2 * m.gap, m.touch)
    label = t("catalog.page", page=page + 1, pages=pages)
    if note:
        lw = ui.measure(label, m.text) + m.gap
        ui.text(label, pygame.Rect(middle.x, y, lw, m.touch), valign="middle")
        ui.text(
            note,
            pygame.Rect(middle.x + lw + m.gap, y, middle.w - lw - m.gap, m.touch),
            valign="middle",
            color=ui.c.muted,
            max_lines=2,
        )
    else:
        ui.text(label, middle, align="center", valign="middle")
    ui.button(
        pygame.Rect(bar.right - bw, y, bw, m.touch),
        t("catalog.next"),
        (lambda: turn(1)) if page < pages - 1 else None,
        name=f"{name}-next",
        style="outline",
        max_lines=1,
    )
