"""UI test helpers: an offscreen app on the fake controller, driven by real pygame events."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace

import pygame
import pytest

from kiosk.clock import ManualClock
from kiosk.config import UiConfig
from kiosk.core.planogram import SlotKind
from kiosk.sim.fake_controller import DEMO_PIN_HASH, FakeController
from kiosk.ui.app import UiApp, default_font
from kiosk.ui.events import notify_view_changed
from tests.support.xvfb import xvfb  # noqa: F401  (the fixture, for every UI test)

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


class Driver:
    """Posts touch / mouse events into the SDL queue and runs the app's loop turns."""

    def __init__(self, app: UiApp, fc: FakeController, clock: ManualClock) -> None:
        self.app, self.fc, self.clock = app, fc, clock

    def run(self) -> None:
        # A few non-blocking turns: a VIEW_CHANGED posted while handling is read next turn.
        # Never pygame.event.peek() here: in pygame 2.6 peek() followed by get() double-frees
        # the attributes of a posted event and corrupts the heap.
        for _ in range(4):
            self.app.step(block=False)

    def hit(self, name: str) -> pygame.Rect:
        for h in self.app.hits:
            if h.name == name:
                return h.rect
        raise AssertionError(
            f"no tap target {name!r} on {self.app.top.name}: {[h.name for h in self.app.hits]}"
        )

    def _norm(self, pos: tuple[int, int]) -> tuple[float, float]:
        w, h = self.app.surface.get_size()
        return (pos[0] + 0.5) / w, (pos[1] + 0.5) / h

    def finger(self, pos: tuple[int, int], *, up: bool = True, synth_mouse: bool = False) -> None:
        x, y = self._norm(pos)
        pygame.event.post(
            pygame.event.Event(
                pygame.FINGERDOWN, x=x, y=y, dx=0.0, dy=0.0, finger_id=1, touch_id=1, pressure=1.0
            )
        )
        if synth_mouse:  # what SDL adds for a touch: must be ignored
            pygame.event.post(
                pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=pos, button=1, touch=True)
            )
        if up:
            pygame.event.post(
                pygame.event.Event(
                    pygame.FINGERUP, x=x, y=y, dx=0.0, dy=0.0, finger_id=1, touch_id=1, pressure=0.0
                )
            )
            if synth_mouse:
                pygame.event.post(
                    pygame.event.Event(pygame.MOUSEBUTTONUP, pos=pos, button=1, touch=True)
                )
        self.run()

    def click(self, pos: tuple[int, int]) -> None:
        pygame.event.post(
            pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=pos, button=1, touch=False)
        )
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, pos=pos, button=1, touch=False))
        self.run()

    def tap(self, name: str, *, mouse: bool = False, synth_mouse: bool = False) -> None:
        pos = self.hit(name).center
        if mouse:
            self.click(pos)
        else:
            self.finger(pos, synth_mouse=synth_mouse)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.fc.pump()
        self.run()

    @property
    def screen(self) -> str:
        return self.app.top.name


@pytest.fixture
def make_driver() -> Iterator[Callable[..., Driver]]:
    pygame.display.init()
    pygame.freetype.init()
    pygame.event.get()
    made: list[FakeController] = []

    def make(
        size: tuple[int, int] = (1080, 1920),
        *,
        kind: SlotKind = SlotKind.SPIRAL,
        lang: str = "zh",
        pin_hash: str = DEMO_PIN_HASH,
        **cfg: object,
    ) -> Driver:
        clock = ManualClock()
        fc = FakeController(clock, kind=kind)
        made.append(fc)
        config = replace(
            UiConfig(),
            width=size[0],
            height=size[1],
            language=lang,
            orientation="portrait" if size[1] >= size[0] else "landscape",
            service_pin_hash=pin_hash,
            **cfg,
        )  # type: ignore[arg-type]
        app = UiApp(fc, config, clock, surface=pygame.Surface(size), font=default_font())
        fc.set_notify(notify_view_changed)
        app.render()
        return Driver(app, fc, clock)

    yield make
    pygame.event.get()
