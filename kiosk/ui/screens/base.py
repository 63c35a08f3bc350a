"""What every screen is: a small class that draws itself from the view state and posts intents.

Owns: the `Screen` base class, the `AppApi` a screen may use, and the chrome shared by shopper
screens (header with back and language buttons, footer bar). Screens never block, never do
I/O and never change controller state except by `app.post(intent)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, TypeVar

import pygame

from kiosk.contract import Intent, ServiceInfo, ViewState
from kiosk.ui.theme import RGB
from kiosk.ui.widgets import Action, Align, Role, Ui, line_height

if TYPE_CHECKING:
    from kiosk.config import TechnicianConfig, UiConfig
    from kiosk.ui.images import ProductImages

T = TypeVar("T")
IdlePolicy = Literal["none", "prompt", "return", "service"]


class AppApi(Protocol):
    """The part of the app a screen talks to."""

    view: ViewState
    lang: str
    large: bool  # large-text mode (大字模式)
    config: UiConfig
    images: ProductImages
    technicians: tuple[TechnicianConfig, ...]  # who may log in (the PIN says which one)
    pin_awaiting: int  # the controller's PIN attempt count once it has counted ours
    last_activity: float

    def post(self, intent: Intent) -> None: ...
    def push(self, screen: Screen) -> None: ...
    def pop(self, screen: Screen | None = None) -> None: ...
    def replace_top(self, screen: Screen) -> None: ...
    def toggle_lang(self) -> None: ...
    def toggle_large(self) -> None: ...
    def now(self) -> float: ...
    @property
    def dimmed(self) -> bool: ...
    def mark_dirty(self) -> None: ...
    def run_in_background(self, work: Callable[[], T], done: Callable[[T], None]) -> None: ...
    def exit_service(self, reason: Literal["exit", "timeout"]) -> None: ...


class Screen:
    name: ClassVar[str] = "screen"
    overlay: ClassVar[bool] = False  # drawn over the screen below it (a dialog)
    service: ClassVar[bool] = False  # part of the technician's service session
    idle_policy: ClassVar[IdlePolicy] = "none"

    def __init__(self, app: AppApi) -> None:
        self.app = app
        self.entered_at = app.now()

    def draw(self, ui: Ui) -> None:
        raise NotImplementedError

    def next_frame(self, now: float) -> float | None:
        """Seconds until this screen looks different by itself (None: only on events)."""
        return None

    def time_key(self, now: float) -> object | None:
        """For a screen that moves by itself (`next_frame`): a value that changes exactly when
        its picture at `now` does (e.g. the second its countdown shows), so a dialog over it can
        reuse a backdrop of it; None: not known (the default; such a screen is redrawn under a
        dialog every frame)."""
        return None

    def update(self, ui: Ui) -> list[pygame.Rect] | None:
        """An animation frame when nothing but time changed and this screen alone is visible:
        the surface still holds this screen's previous frame. Redraw only what moved and return
        the rectangles changed (the app passes them to `pygame.display.update`), [] for none;
        None asks for a full `draw` instead (the default)."""
        return None

    def on_view(self, view: ViewState) -> None:
        """A new snapshot arrived (the app redraws afterwards)."""


def until_next_second(deadline: float, now: float) -> float:
    """Seconds until the whole-second display of `deadline - now` changes."""
    left = deadline - now
    if left <= 0:
        return 1.0
    frac = left - int(left)
    return frac if frac > 0.01 else 1.0


def large_toggle_w(ui: Ui) -> int:
    """The width of the large-text toggle: its label, the tick and padding, in either state."""
    m = ui.m
    return max(
        round(m.touch * 1.9), ui.measure(ui.t("large.toggle"), m.text, True) + m.text + 3 * m.pad
    )


def large_toggle(ui: Ui, app: AppApi, rect: pygame.Rect, action: Action) -> None:
    """The large-text switch (大字模式) of the attract and catalog screens, top left: an
    outline on the red bar when off; filled white with a tick when on."""
    m, c = ui.m, ui.c
    on = app.large
    ui.fill(rect, c.on_header if on else c.header, m.radius)
    ui.frame(rect, c.on_header, max(2, m.radius // 4), m.radius)
    fg = c.header if on else c.on_header
    tick = pygame.Rect(rect.x + m.pad, rect.centery - m.text // 3, m.text * 2 // 3, m.text * 2 // 3)
    if on:
        pygame.draw.lines(
            ui.surface,
            fg,
            False,
            [
                (tick.x, tick.centery),
                (tick.x + tick.w * 2 // 5, tick.bottom),
                (tick.right, tick.y),
            ],
            max(3, m.pad // 2),
        )
    else:
        ui.frame(tick, fg, max(2, m.pad // 4), 2)
    label = pygame.Rect(tick.right + m.pad, rect.y, rect.right - tick.right - 2 * m.pad, rect.h)
    ui.text(
        ui.t("large.toggle"),
        label,
        color=fg,
        align="center",
        valign="middle",
        bold=True,
        role="button",
    )
    ui.hit(rect, action, "large")


def header(
    ui: Ui,
    app: AppApi,
    title: str,
    *,
    back: Action | None = None,
    lang: bool = True,
    large: bool = False,
    tools: Callable[[pygame.Rect], object] | None = None,
) -> pygame.Rect:
    """The red title bar; returns the rectangle below it. `large`: the large-text toggle at
    the left (the attract and catalog screens, which have no back button). The title (role
    "title") is never cut: it shrinks towards the floor, then takes two lines between the
    buttons, then a row of its own under them, the bar growing to hold it; only beside the
    large-text toggle is a title that cannot fit at the floor left out. `tools`: drawn in the
    title's place (a short screen's tool buttons, given the room between back and language)."""
    m = ui.m
    x0, x1 = m.pad, ui.rect.w - m.pad
    bw = header_button_w(ui)
    lw = large_toggle_w(ui) if large and back is None else 0
    if lw:
        x0 += lw + m.gap
    if back is not None:
        x0 += bw + m.gap
    if lang:
        x1 -= bw + m.gap
    room = pygame.Rect(x0, m.pad, x1 - x0, m.touch)
    shown = tools is None and not (lw and ui.measure(title, m.floor, True) > room.w)
    lines = 1
    if shown and not ui.layout(title, room.w, room.h, m.title, 1, True)[2]:
        lines = 2  # two lines between the buttons, else a row of its own under them
        two = max(m.touch, 2 * line_height(m.floor))
        if ui.layout(title, room.w, two, m.title, 2, True)[2]:
            room.h = two
        else:
            room = pygame.Rect(m.pad, m.pad + m.touch + m.gap, ui.rect.w - 2 * m.pad, 0)
            room.h = 2 * line_height(m.floor)
    h = max(m.touch, room.bottom - m.pad) + 2 * m.pad
    bar = pygame.Rect(0, 0, ui.rect.w, h)
    ui.fill(bar, ui.c.header)
    y = m.pad if room.y > m.pad else (h - m.touch) // 2  # buttons beside a title: centred
    if lw:
        large_toggle(ui, app, pygame.Rect(m.pad, y, lw, m.touch), app.toggle_large)
    if back is not None:
        ui.button(
            pygame.Rect(m.pad + (lw + m.gap if lw else 0), y, bw, m.touch),
            ui.t("common.back"),
            back,
            name="back",
            style="header",
            max_lines=1,
        )
    if lang:
        ui.button(
            pygame.Rect(ui.rect.w - m.pad - bw, y, bw, m.touch),
            ui.t("lang.switch"),
            app.toggle_lang,
            name="lang",
            style="header",
            max_lines=1,
        )
    if tools is not None:
        tools(room)
    if shown:
        ui.text(
            title,
            room,
            size=m.title,
            color=ui.c.on_header,
            align="center" if back or lang else "left",
            valign="middle",
            bold=True,
            max_lines=lines,
            role="title",
        )
    return pygame.Rect(0, h, ui.rect.w, ui.rect.h - h)


def header_button_w(ui: Ui) -> int:
    """The width of the header's back and language buttons."""
    return max(round(ui.m.touch * 1.9), ui.m.text * 5)


def footer_rect(ui: Ui, area: pygame.Rect) -> tuple[pygame.Rect, pygame.Rect]:
    """Split `area` into (content, footer bar) with the footer one touch row high."""
    m = ui.m
    fh = m.touch + 2 * m.pad
    foot = pygame.Rect(area.x, area.bottom - fh, area.w, fh)
    content = pygame.Rect(area.x, area.y, area.w, area.h - fh)
    return content, foot


def result_text(ui: Ui, info: ServiceInfo) -> str:
    """The last service action's outcome in the UI's language ("" for none): worded from
    `info.result` (`result.<key>`, a board outcome as `outcome.<NAME>`), else `last_result` as
    the controller gave it."""
    t = ui.t
    r = info.result
    if r is None or not t.has(f"result.{r.key}"):
        return f"{t('service.result')}: {info.last_result}" if info.last_result else ""
    params = dict(r.params)
    outcome = params.get("outcome")
    if isinstance(outcome, str) and t.has(f"outcome.{outcome}"):
        params["outcome"] = t(f"outcome.{outcome}")
    return t(f"result.{r.key}", **params)


def link_strip(ui: Ui, app: AppApi, at: pygame.Rect) -> int:
    """The links at a glance on one line from `at.topleft`: "● 省平台 在线   ● 控制板 离线", each
    in green when up, red when down, grey when not set up. Returns the y below it."""
    m, c, t = ui.m, ui.c, ui.t
    view = app.view
    boards = view.service.boards
    states = [
        ("service.link_province", view.province_online),
        ("service.link_board", any(b.connected for b in boards) if boards else None),
    ]
    lh = line_height(m.text)
    dot = max(6, lh // 3)
    parts = []
    for key, up in states:
        word = "link_unknown" if up is None else ("online" if up else "offline")
        color = c.muted if up is None else (c.ok if up else c.error)
        label = f"{t(key)} {t('service.' + word)}"
        parts.append((label, color, 3 * dot + ui.measure(label, m.text, True) + 1))
    one_line = sum(w for _, _, w in parts) + 2 * m.gap * (len(parts) - 1) <= at.w
    x, y = at.x, at.y
    for label, color, w in parts:
        pygame.draw.circle(ui.surface, color, (x + dot, y + lh // 2), dot)
        ui.text(
            label,
            pygame.Rect(x + 3 * dot, y, min(w, at.right - x) - 3 * dot, lh),
            color=color,
            bold=True,
            overflow="error",
        )
        if one_line:
            x += w + 2 * m.gap
        else:  # a narrow screen: one link per line
            y += lh
    return y + lh if one_line else y


def kv_rows(
    ui: Ui,
    area: pygame.Rect,
    rows: list[tuple[str, str]],
    *,
    label_frac: float = 0.34,
    max_value_lines: int = 2,
) -> int:
    """Label: value rows with wrapping values. A value gets the lines it needs (up to
    `max_value_lines`) while the rows fit `area`; when they do not, the rows with the most
    lines give one up first (a value then shrinks towards the floor before it is cut).
    Returns the y below the last row."""
    m = ui.m
    widest = max((ui.measure(label, m.text) for label, _ in rows), default=0)
    lw = min(round(area.w * label_frac), widest + m.pad)  # no wider than the labels need
    value_w = area.w - lw - m.gap
    floor = m.floor or m.small
    size = m.text
    while True:  # large text: the table shrinks towards the floor before a value is cut
        lh = line_height(size)
        need = [
            len(ui.layout(v, value_w, 10**6, size, 10**6, False, min_size=size)[0]) for _, v in rows
        ]
        need = [min(max_value_lines, max(1, n)) for n in need]
        fits = sum(need) * lh + m.gap * (len(rows) - 1) <= area.h
        if fits or size <= min(floor, m.text) or size <= round(m.text / 1.35):
            break
        size = max(floor, size - max(1, size // 12))
    while sum(need) * lh + m.gap * (len(rows) - 1) > area.h and max(need, default=1) > 1:
        need[need.index(max(need))] -= 1
    y = area.y
    for (label, value), lines in zip(rows, need, strict=True):
        if y + lh > area.bottom:
            break
        rh = min(lh * lines, area.bottom - y)
        ui.text(label, pygame.Rect(area.x, y, lw, lh), size=size, color=ui.c.muted)
        ui.text(value, pygame.Rect(area.x + lw + m.gap, y, value_w, rh), size=size, max_lines=lines)
        y += rh + m.gap
    return y


@dataclass(frozen=True)
class Block:
    """One paragraph of a `text_stack`: drawn at `size` when the stack has the room."""

    text: str
    size: int
    max_lines: int = 2
    bold: bool = False
    color: RGB | None = None
    role: Role = ""
    align: Align = "left"


def _block_h(ui: Ui, b: Block, width: int, size: int) -> int | None:
    """The height of `b` at exactly `size` in `width` (None: more than its max_lines)."""
    lines = ui.layout(b.text, width, 10**6, size, 10**6, b.bold, min_size=size)[0]
    return None if len(lines) > b.max_lines else len(lines) * line_height(size)


def plan_stack(ui: Ui, width: int, height: int, blocks: Sequence[Block], gap: int) -> list[int]:
    """The sizes `text_stack` draws `blocks` at in `width` x `height`: their own when they fit,
    else all shrunk in steps together (never below the 4.8 mm floor)."""
    floor = ui.m.floor or ui.m.small
    sizes: list[int] = []
    for k in range(100, 0, -5):
        sizes = [max(floor, min(b.size, round(b.size * k / 100))) for b in blocks]
        if stack_h(ui, width, blocks, sizes, gap) <= height or all(s == floor for s in sizes):
            break
    return sizes


def stack_h(ui: Ui, width: int, blocks: Sequence[Block], sizes: Sequence[int], gap: int) -> int:
    """The height of `blocks` at `sizes` (a block over its max_lines counts as very high)."""
    hs = [_block_h(ui, b, width, s) for b, s in zip(blocks, sizes, strict=True)]
    return sum(10**6 if h is None else h for h in hs) + gap * max(0, len(blocks) - 1)


def text_stack(ui: Ui, area: pygame.Rect, blocks: Sequence[Block], gap: int) -> int:
    """Paragraphs top-down in `area`, `gap` apart, each as high as its lines. When they do not
    all fit at their sizes, every one shrinks in steps together (never below the 4.8 mm
    floor), so a condensed screen keeps its proportions instead of cutting the last block.
    Returns the y below the last block."""
    sizes = plan_stack(ui, area.w, area.h, blocks, gap)
    y = area.y
    for b, s in zip(blocks, sizes, strict=True):
        h = _block_h(ui, b, area.w, s) or b.max_lines * line_height(s)  # too long: text() cuts
        ui.text(
            b.text,
            pygame.Rect(area.x, y, area.w, h),
            size=s,
            bold=b.bold,
            color=b.color,
            align=b.align,
            max_lines=b.max_lines,
            role=b.role,
        )
        y += h + gap
    return y - gap
