"""What every screen is: a small class that draws itself from the view state and posts intents.

Owns: the `Screen` base class, the `AppApi` a screen may use, and the chrome shared by shopper
screens (header with back and language buttons, footer bar). Screens never block, never do
I/O and never change controller state except by `app.post(intent)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, TypeVar

import pygame

from kiosk.contract import Intent, ViewState
from kiosk.ui.widgets import Action, Ui, line_height

if TYPE_CHECKING:
    from kiosk.config import TechnicianConfig, UiConfig
    from kiosk.ui.images import ProductImages

T = TypeVar("T")
IdlePolicy = Literal["none", "prompt", "return", "service"]


class AppApi(Protocol):
    """The part of the app a screen talks to."""

    view: ViewState
    lang: str
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


def header(
    ui: Ui, app: AppApi, title: str, *, back: Action | None = None, lang: bool = True
) -> pygame.Rect:
    """The red title bar; returns the rectangle below it."""
    m = ui.m
    h = m.touch + 2 * m.pad
    bar = pygame.Rect(0, 0, ui.rect.w, h)
    ui.fill(bar, ui.c.header)
    x0, x1 = m.pad, ui.rect.w - m.pad
    bw = max(round(m.touch * 1.9), m.text * 5)
    if back is not None:
        ui.button(
            pygame.Rect(x0, m.pad, bw, m.touch),
            ui.t("common.back"),
            back,
            name="back",
            style="header",
            max_lines=1,
        )
        x0 += bw + m.gap
    if lang:
        ui.button(
            pygame.Rect(x1 - bw, m.pad, bw, m.touch),
            ui.t("lang.switch"),
            app.toggle_lang,
            name="lang",
            style="header",
            max_lines=1,
        )
        x1 -= bw + m.gap
    ui.text(
        title,
        pygame.Rect(x0, m.pad, x1 - x0, m.touch),
        size=m.title,
        color=ui.c.on_header,
        align="center" if back or lang else "left",
        valign="middle",
        bold=True,
        max_lines=1,
    )
    return pygame.Rect(0, h, ui.rect.w, ui.rect.h - h)


def footer_rect(ui: Ui, area: pygame.Rect) -> tuple[pygame.Rect, pygame.Rect]:
    """Split `area` into (content, footer bar) with the footer one touch row high."""
    m = ui.m
    fh = m.touch + 2 * m.pad
    foot = pygame.Rect(area.x, area.bottom - fh, area.w, fh)
    content = pygame.Rect(area.x, area.y, area.w, area.h - fh)
    return content, foot


def kv_rows(
    ui: Ui,
    area: pygame.Rect,
    rows: list[tuple[str, str]],
    *,
    label_frac: float = 0.34,
    max_value_lines: int = 2,
) -> int:
    """Label: value rows with wrapping values. Returns the y below the last row."""
    m = ui.m
    lh = line_height(m.text)
    lw = round(area.w * label_frac)
    y = area.y
    per_row = max(lh, (area.h - m.gap * (len(rows) - 1)) // max(1, len(rows)))
    for label, value in rows:
        lines = min(max_value_lines, max(1, per_row // lh))
        value_w = area.w - lw - m.gap
        needed = ui.layout(value, value_w, lh * lines, m.text, lines, False)[0]
        rh = min(lh * lines, lh * max(1, len(needed)))
        if y + rh > area.bottom:
            rh = max(lh, area.bottom - y)
        if y + lh > area.bottom:
            break
        ui.text(label, pygame.Rect(area.x, y, lw, lh), color=ui.c.muted)
        ui.text(value, pygame.Rect(area.x + lw + m.gap, y, value_w, rh), max_lines=lines)
        y += rh + m.gap
    return y
