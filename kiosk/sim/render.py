"""Render one UI screen offscreen, with demo data or a given view: `kiosk screenshot`, the
layout and QR tests, the UI benchmark and the demo's screenshots.

Owns: a static controller that holds one view snapshot, and `render_once` / `render_app`. Uses
the same UI code the kiosk runs (kiosk.ui.app: `UiApp`, `show`); the demo views and the demo PIN
come from kiosk.sim.fake_controller, which is why this lives in the simulator, not in kiosk/ui.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pygame
import pygame.freetype

from kiosk.clock import ManualClock
from kiosk.config import UiConfig
from kiosk.contract import Intent, ViewState
from kiosk.sim.fake_controller import DEMO_PIN_HASH, demo_view
from kiosk.ui.app import UiApp, default_font, show

__all__ = ["render_app", "render_once"]


class _StaticController:
    """Holds one snapshot; records intents. For screenshots of a given view."""

    def __init__(self, view: ViewState) -> None:
        self._view = view
        self.posted: list[Intent] = []

    def post(self, intent: Intent) -> None:
        self.posted.append(intent)

    def view(self) -> ViewState:
        return self._view

    def set_notify(self, notify: Callable[[], None]) -> None:
        pass


def render_once(
    screen_name: str,
    size: tuple[int, int],
    lang: str,
    view: ViewState | None = None,
    *,
    font_path: str | None = None,
    large: bool = False,
) -> pygame.Surface:
    """Draw one screen offscreen with demo data (or `view`); `large`: in large-text mode."""
    return render_app(screen_name, size, lang, view, font_path=font_path, large=large).surface


def render_app(
    screen_name: str,
    size: tuple[int, int],
    lang: str,
    view: ViewState | None = None,
    *,
    font_path: str | None = None,
    clock: ManualClock | None = None,
    large: bool = False,
) -> UiApp:
    """Like render_once, but returns the app: its `texts` and `hits` record every text box and
    tap target of the frame (what the layout tests check). `large`: in large-text mode."""
    if not pygame.display.get_init():
        pygame.display.init()
    pygame.freetype.init()
    clock = clock or ManualClock()
    if view is None:
        view = demo_view(screen_name, clock)
    w, h = size
    config = UiConfig(
        width=w,
        height=h,
        orientation="portrait" if h >= w else "landscape",
        language="zh",
        service_pin_hash=DEMO_PIN_HASH,
    )
    config = replace(config, language=lang)
    app = UiApp(
        _StaticController(view),
        config,
        clock,
        surface=pygame.Surface(size),
        font=default_font(font_path),
    )
    app.set_large(large)
    show(app, screen_name)
    app.render()
    return app
