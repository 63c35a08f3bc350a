"""The UI loop: display, screen stack, input, timers, rendering.

Owns: the screen and the screen stack, the language, the inactivity timer and dimming, the
service-menu entry (3 s long-press top-left) and the PIN lockout state. Never blocks on
serial, network or disk: it reads `controller.view()` (a snapshot) and posts intents.

How it sleeps: each turn computes when it must next wake by itself (the nearest of: an
animation or countdown frame of a visible screen, the inactivity prompt/return deadline, the
dimming deadline, a long-press in progress). With no such deadline it calls
`pygame.event.wait()` with no timeout and uses no CPU until a touch or a `VIEW_CHANGED` event
posted by the controller's notify callback. Frames are drawn only when something changed
(dirty flag) and never faster than 30 fps.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import pygame
import pygame.freetype

from kiosk.clock import Clock
from kiosk.config import TechnicianConfig, UiConfig, legacy_technicians
from kiosk.contract import (
    BackToIdle,
    CheckSlot,
    Intent,
    LockSales,
    OpenDoor,
    Restock,
    ServiceExit,
    ServiceLogin,
    ServiceViewed,
    TestVend,
    UiControllerPort,
    ViewState,
)
from kiosk.log import log_event
from kiosk.ui.events import BACKGROUND_DONE, IMAGES_CHANGED, VIEW_CHANGED, notify_view_changed
from kiosk.ui.fonts import find_cjk_font, load_font
from kiosk.ui.i18n import Translator
from kiosk.ui.images import ProductImages, shared_images
from kiosk.ui.screens import ROOT_FOR_MODE
from kiosk.ui.screens.base import Screen
from kiosk.ui.theme import Metrics, metrics_for
from kiosk.ui.widgets import Hit, TextRecord, Ui

if TYPE_CHECKING:
    from kiosk.core.catalog import Product

__all__ = [
    "FRAME_S",
    "LONG_PRESS_S",
    "PROMPT_LEAD_S",
    "SCREEN_NAMES",
    "SERVICE_TIMEOUT_S",
    "STOP_REQUESTED",
    "TAP_HOLD_S",
    "WINDOW_TITLE",
    "UiApp",
    "open_display",
    "request_stop",
    "run",
]

log = logging.getLogger("kiosk.ui")
T = TypeVar("T")

WINDOW_TITLE = "kiosk-ui"
FRAME_S = 1.0 / 30  # never draw faster than 30 fps
LONG_PRESS_S = 3.0
#: While a finger has rested on the glass for less than this, a frame that only time moved (a
#: countdown's second, the attract drift) waits: the lift is about to come, its frame shows
#: the new time too, and it would otherwise wait behind the clock's frame being presented.
TAP_HOLD_S = 0.4
PROMPT_LEAD_S = 20.0  # "need more time?" shows this long before the inactivity timeout
SERVICE_TIMEOUT_S = 180.0
#: Posted by `request_stop` (from any thread, e.g. on SIGTERM/SIGINT): the loop leaves, in
#: kiosk mode too (a shopper's QUIT never ends a kiosk-mode loop; a stop request always does).
STOP_REQUESTED: int = pygame.event.custom_type()
_SERVICE_INTENTS = (
    ServiceLogin,
    ServiceExit,
    ServiceViewed,
    Restock,
    TestVend,
    CheckSlot,
    OpenDoor,
    LockSales,
)

#: Every name `show`, `kiosk.sim.render.render_once` and `kiosk screenshot --screen` accept.
SCREEN_NAMES: tuple[str, ...] = (
    "attract",
    "attract_dimmed",
    "catalog",
    "category_picker",
    "product",
    "cart",
    "payment",
    "payment_offline",
    "payment_cancel",
    "offline_code",
    "dispensing",
    "dispensing_locker",
    "done",
    "problem",
    "out_of_service",
    "idle_prompt",
    "service_pin",
    "service_menu",
    "service_restock",
    "service_count",
    "service_stock",
    "service_sync",
    "service_board",
    "service_network",
    "service_version",
)


@dataclass
class _Press:
    pos: tuple[int, int]
    t0: float
    consumed: bool = False


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Equal item by item, screens by identity (a new screen may reuse a dead one's id)."""
    return len(a) == len(b) and all(x is y or x == y for x, y in zip(a, b, strict=True))


def make_root(app: UiApp, name: str) -> Screen:
    from kiosk.ui.screens.attract import AttractScreen
    from kiosk.ui.screens.catalog import CatalogScreen
    from kiosk.ui.screens.dispensing import DispensingScreen
    from kiosk.ui.screens.done import DoneScreen
    from kiosk.ui.screens.out_of_service import OutOfServiceScreen
    from kiosk.ui.screens.payment import PaymentScreen
    from kiosk.ui.screens.problem import ProblemScreen

    classes: dict[str, type[Screen]] = {
        "attract": AttractScreen,
        "catalog": CatalogScreen,
        "payment": PaymentScreen,
        "dispensing": DispensingScreen,
        "done": DoneScreen,
        "problem": ProblemScreen,
        "out_of_service": OutOfServiceScreen,
    }
    return classes[name](app)


class UiApp:
    """One UI on one surface. Tests drive it with `step(block=False)`; `loop()` runs it."""

    def __init__(
        self,
        controller: UiControllerPort,
        config: UiConfig,
        clock: Clock,
        *,
        surface: pygame.Surface,
        font: pygame.freetype.Font,
        images: ProductImages | None = None,
        kiosk_mode: bool = True,
        display: bool = False,
        wait: Callable[..., pygame.event.Event] | None = None,
        on_screen: Callable[[str], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        heartbeat_every_s: float | None = None,
        technicians: tuple[TechnicianConfig, ...] | None = None,
    ) -> None:
        # technicians: who may open the service menu (kiosk.config.technicians); None: the
        # single ui.service_pin_hash of `config`, as technician "default".
        self.technicians = legacy_technicians(config) if technicians is None else technicians
        self.pin_awaiting = 0  # kiosk.ui.screens.service_pin: no PIN checked before it shows
        # heartbeat: called after every loop turn, and the loop turns at least every
        # heartbeat_every_s even when nothing moves, so the systemd watchdog can tell a
        # sleeping loop (alive, cheap: one wake per few seconds) from a hung one.
        self.heartbeat = heartbeat
        self.heartbeat_every_s = heartbeat_every_s
        self.controller = controller
        self.config = config
        self.clock = clock
        self.surface = surface
        self.font = font
        self.images = images or shared_images()
        self.kiosk_mode = kiosk_mode
        self.display = display
        self.wait = wait or pygame.event.wait
        self.on_screen = on_screen
        self._metrics = {
            large: metrics_for(*surface.get_size(), large=large) for large in (False, True)
        }
        self.lang: str = config.language
        self.large = False  # large-text mode (大字模式): off again at idle, like the language
        self.frame_m = self._metrics[False]  # the sizes the last full frame was drawn at
        self.view: ViewState = controller.view()
        # Offscreen (screenshots, tests): every picture now. On a display the pictures are
        # drawn by a background thread after the first frame (loop()); a picture needed
        # before then is drawn on demand by images.surface().
        self._preload_pending = display
        if not display:
            self.images.preload(pv.product for pv in self.view.products)
        self.last_activity = self.now()
        self.stack: list[Screen] = [make_root(self, ROOT_FOR_MODE[self.view.mode])]
        self.hits: list[Hit] = []
        self.texts: list[TextRecord] = []
        self.dirty = True
        self.running = True
        self.frames = 0
        self._presses: dict[object, _Press] = {}
        self._last_frame_at = -math.inf
        self._next_anim_at: float | None = None
        self._reported: str | None = None
        self._anim_due = False
        self._drawn: tuple[object, ...] | None = None  # what the surface shows, see render()
        # (key, surface, text records) of the layers under a dialog, see render()
        self._backdrop: tuple[tuple[object, ...], pygame.Surface, list[TextRecord]] | None = None
        self._translators = {lang: Translator(lang) for lang in ("zh", "en")}
        self.threads: list[threading.Thread] = []
        self._results: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    # --- the API screens use -----------------------------------------------------------
    def now(self) -> float:
        return self.clock.monotonic()

    def post(self, intent: Intent) -> None:
        if isinstance(intent, _SERVICE_INTENTS):
            log_event(log, "ui.service." + type(intent).__name__, **asdict(intent))
        self.controller.post(intent)
        self.dirty = True

    def push(self, screen: Screen) -> None:
        self.stack.append(screen)
        self.dirty = True

    def pop(self, screen: Screen | None = None) -> None:
        if len(self.stack) > 1 and (screen is None or self.stack[-1] is screen):
            self.stack.pop()
            self.dirty = True

    def replace_top(self, screen: Screen) -> None:
        if len(self.stack) > 1:
            self.stack[-1] = screen
        else:
            self.stack.append(screen)
        self.dirty = True

    def toggle_lang(self) -> None:
        self.lang = "en" if self.lang == "zh" else "zh"
        self.dirty = True

    @property
    def m(self) -> Metrics:
        """The sizes of this frame: large text for a shopper who asked for it; the service
        screens (a technician's) always at the normal size."""
        return self._metrics[self.large and not self.in_service]

    def set_large(self, large: bool) -> None:
        """Large-text mode on or off: bigger type, fewer and bigger tiles on every shopper
        screen."""
        if large != self.large:
            self.large = large
            self.dirty = True

    def toggle_large(self) -> None:
        self.set_large(not self.large)

    def _reset_shopper(self) -> None:
        """Back at idle: the configured language and normal text for the next shopper."""
        self.lang = self.config.language
        self.set_large(False)

    def mark_dirty(self) -> None:
        self.dirty = True

    def run_in_background(self, work: Callable[[], T], done: Callable[[T], None]) -> None:
        """CPU-heavy work (PIN hashing) off the loop. `done(result)` runs later on the UI
        thread; the worker only queues the result and posts a bare BACKGROUND_DONE to wake
        the loop (no Python objects ride on pygame events)."""

        def target() -> None:
            result = work()
            self._results.put(lambda: done(result))
            pygame.event.post(pygame.event.Event(BACKGROUND_DONE))

        th = threading.Thread(target=target, name="ui-background", daemon=True)
        self.threads.append(th)
        th.start()

    def exit_service(self, reason: Literal["exit", "timeout"]) -> None:
        if any(s.service for s in self.stack):
            self.stack = [s for s in self.stack if not s.service]
            self.post(ServiceExit(reason))
            self.last_activity = self.now()
            self.dirty = True

    @property
    def top(self) -> Screen:
        return self.stack[-1]

    @property
    def in_service(self) -> bool:
        return any(s.service for s in self.stack)

    @property
    def dimmed(self) -> bool:
        return (
            self.stack[0].name == "attract"
            and not self.in_service
            and self.now() - self.last_activity >= self.config.dim_after_s
        )

    # --- view state ---------------------------------------------------------------------
    def refresh_view(self) -> None:
        view = self.controller.view()
        if view is self.view:
            return
        self.view = view
        root = ROOT_FOR_MODE[view.mode]
        if self.stack[0].name != root:
            service_part = [s for s in self.stack if s.service]
            self.stack = [make_root(self, root), *service_part]
            self.last_activity = self.now()
            if root == "attract":
                self._reset_shopper()
        for s in self.stack:
            s.on_view(view)
        self.dirty = True

    # --- input ----------------------------------------------------------------------------
    def _corner(self) -> pygame.Rect:
        side = round(self.m.touch * 1.5)
        return pygame.Rect(0, 0, side, side)

    def _press_down(self, key: object, pos: tuple[int, int]) -> None:
        now = self.now()
        self._presses[key] = _Press(pos, now)
        self.last_activity = now
        # No frame for a finger landing: nothing is drawn pressed, and tick() redraws what the
        # activity changes (undimming, the idle prompt). A frame here was still being
        # presented when the finger lifted and delayed the tap's own frame (bench_ui taps).

    def _press_up(self, key: object, pos: tuple[int, int]) -> None:
        press = self._presses.pop(key, None)
        if press is None or press.consumed:
            return
        self.last_activity = self.now()
        for hit in reversed(self.hits):
            if hit.rect.collidepoint(press.pos):
                if hit.rect.collidepoint(pos):
                    hit.action()
                    self.dirty = True
                return

    def handle(self, ev: pygame.event.Event) -> None:
        t = ev.type
        if t == pygame.NOEVENT:
            return
        if t == VIEW_CHANGED:
            self.refresh_view()
        elif t == IMAGES_CHANGED:
            for s in self.stack:  # screens rebuild what they drew from a placeholder
                s.on_view(self.view)
            self.dirty = True
        elif t == pygame.FINGERDOWN or t == pygame.FINGERUP:
            w, h = self.surface.get_size()
            pos = (min(w - 1, int(ev.x * w)), min(h - 1, int(ev.y * h)))
            key = ("finger", getattr(ev, "touch_id", 0), ev.finger_id)
            (self._press_down if t == pygame.FINGERDOWN else self._press_up)(key, pos)
        elif t == pygame.MOUSEBUTTONDOWN or t == pygame.MOUSEBUTTONUP:
            if getattr(ev, "touch", False) or ev.button != 1:
                return  # SDL's copy of a touch we already handled, or not the main button
            mouse_key: object = ("mouse",)
            down = t == pygame.MOUSEBUTTONDOWN
            (self._press_down if down else self._press_up)(mouse_key, ev.pos)
        elif t == BACKGROUND_DONE:
            while True:
                try:
                    finish = self._results.get_nowait()
                except queue.Empty:
                    break
                finish()
                self.dirty = True
        elif t == STOP_REQUESTED:
            log_event(log, "ui.stop")
            self.running = False
        elif t == pygame.QUIT:
            if not self.kiosk_mode:
                self.running = False
            else:
                log_event(log, "ui.quit_ignored")
        elif t in (
            pygame.WINDOWEXPOSED,
            pygame.VIDEOEXPOSE,
            pygame.WINDOWSIZECHANGED,
            pygame.WINDOWSHOWN,
            pygame.WINDOWRESTORED,
        ):
            self.dirty = True
        # keys (Esc, Alt-F4, ...) are ignored: there is no keyboard way out of a kiosk

    # --- timers ---------------------------------------------------------------------------
    def _idle_deadlines(self, now: float) -> list[float]:
        """Absolute times at which an inactivity rule fires for the current screens."""
        if self.in_service:
            return [self.last_activity + SERVICE_TIMEOUT_S]
        root = self.stack[0]
        policy = root.idle_policy
        timeout = float(self.config.idle_timeout_s)
        if policy == "prompt":
            prompt_at = self.last_activity + max(0.0, timeout - PROMPT_LEAD_S)
            if self.top.name == "idle_prompt" or now >= prompt_at:
                return [self.last_activity + timeout]
            return [prompt_at]
        if policy == "return":
            return [self.last_activity + float(getattr(root, "return_after_s", timeout))]
        if root.name == "attract" and not self.dimmed:
            return [self.last_activity + self.config.dim_after_s]
        return []

    def tick(self, now: float) -> None:
        """Fire whatever is due at `now`: long-press, inactivity prompt/return, animation."""
        corner = self._corner()
        for press in self._presses.values():
            if (
                not press.consumed
                and corner.collidepoint(press.pos)
                and now - press.t0 >= LONG_PRESS_S
            ):
                press.consumed = True
                self.open_service()
        if self.in_service:
            if now - self.last_activity >= SERVICE_TIMEOUT_S:
                self.exit_service("timeout")
        else:
            root = self.stack[0]
            idle = now - self.last_activity
            timeout = float(self.config.idle_timeout_s)
            if root.idle_policy == "prompt":
                prompting = self.top.name == "idle_prompt"
                if idle >= timeout:
                    self._back_to_idle()
                elif idle >= timeout - PROMPT_LEAD_S and not prompting:
                    from kiosk.ui.screens.idle_prompt import IdlePromptScreen

                    self.push(IdlePromptScreen(self))
                elif idle < timeout - PROMPT_LEAD_S and prompting and not self._presses:
                    # any touch closes the prompt, but only once the finger lifts: the lift
                    # belongs to the prompt's own buttons, not to the screen beneath
                    self.pop()
            elif root.idle_policy == "return":
                if idle >= float(getattr(root, "return_after_s", timeout)):
                    self._back_to_idle()
            elif root.name == "attract" and self.dimmed != getattr(self, "_was_dimmed", False):
                self.dirty = True
        self._was_dimmed = self.dimmed
        anim_at = self._anim_at()
        if anim_at is not None and now >= anim_at:
            self._anim_due = True  # only time moved: render_update() may redraw a part

    def _anim_at(self) -> float | None:
        """When the next time-only frame is due: the screens' own time, held back while a
        finger that landed less than TAP_HOLD_S ago still rests (see TAP_HOLD_S)."""
        at = self._next_anim_at
        if at is None:
            return None
        resting = [p.t0 + TAP_HOLD_S for p in self._presses.values() if not p.consumed]
        return max(at, *resting) if resting else at

    def _back_to_idle(self) -> None:
        self.post(BackToIdle("timeout"))
        self._reset_shopper()
        self.last_activity = self.now()  # retry only after another full timeout
        self.dirty = True

    def open_service(self) -> None:
        if self.in_service or self.stack[0].name in ("payment", "dispensing"):
            return
        oos = self.view.out_of_service
        if oos is not None and oos.reason_key == "updating":
            return  # no technician session during an update (the controller refuses one too)
        from kiosk.ui.screens.service_pin import ServicePinScreen

        log_event(log, "ui.service.entry")
        self.push(ServicePinScreen(self))

    def next_wakeup(self, now: float) -> float | None:
        """Seconds until the loop must wake by itself; None: only an event can change anything."""
        due: list[float] = list(self._idle_deadlines(now))
        anim_at = self._anim_at()
        if anim_at is not None:
            due.append(anim_at)
        corner = self._corner()
        for press in self._presses.values():
            if not press.consumed and corner.collidepoint(press.pos):
                due.append(press.t0 + LONG_PRESS_S)
        if self.dirty:
            due.append(self._last_frame_at + FRAME_S)
        if not due:
            return None
        return max(0.0, min(due) - now, self._last_frame_at + FRAME_S - now)

    # --- drawing --------------------------------------------------------------------------
    def render(self) -> Ui:
        now = self.now()
        m = self.m
        ui, visible = self._paint(now, m)
        self.hits, self.texts = ui.hits, ui.texts
        self.dirty = False
        self._drawn = (*visible, self.lang, m, self.surface.get_size())
        self.frame_m = m
        self._finish_frame(now, visible)
        if self.display:
            pygame.display.flip()
        self._report()
        return ui

    def _paint(self, now: float, m: Metrics) -> tuple[Ui, list[Screen]]:
        ui = Ui(self.surface, m, self.font, self._translators[self.lang], now)
        start = max(i for i, s in enumerate(self.stack) if not s.overlay or i == 0)
        visible = self.stack[start:]
        below, top = visible[:-1], visible[-1]
        looks = [s.time_key(now) for s in below]
        static = (
            k is not None or s.next_frame(now) is None for s, k in zip(below, looks, strict=True)
        )
        if below and all(static):
            # A dialog over screens that are static or say what time shows on them (the
            # payment clock's second): the layers below are drawn once into a backdrop and
            # reused while the stack below, what time shows, the view and the language stay
            # the same. identity, not ids: a new screen may reuse a dead one's id
            key = (*below, tuple(looks), self.view, self.lang, m, self.surface.get_size())
            if self._backdrop is None or not _same(self._backdrop[0], key):
                for s in below:
                    s.draw(ui)
                self._backdrop = (key, self.surface.copy(), list(ui.texts))
            else:
                self.surface.blit(self._backdrop[1], (0, 0))
                ui.texts.extend(self._backdrop[2])
            ui.hits.clear()  # only the top-most layer takes touches
            top.draw(ui)
        else:
            self._backdrop = None
            for s in visible:
                ui.hits.clear()  # only the top-most layer takes touches
                s.draw(ui)
        return ui, visible

    def render_update(self) -> Ui:
        """An animation frame: only time moved since the last frame. A lone screen that can
        (`Screen.update`) redraws just what moved and only those rectangles reach the display;
        anything else gets a full `render()`."""
        now = self.now()
        visible = self.stack[-1:]
        m = self.frame_m
        key = (*visible, self.lang, m, self.surface.get_size())
        if self._drawn is None or len(self.stack) != 1 or not _same(self._drawn, key):
            return self.render()
        ui = Ui(self.surface, m, self.font, self._translators[self.lang], now)
        rects = self.top.update(ui)
        if rects is None:
            return self.render()
        self.hits, self.texts = ui.hits, ui.texts
        self._finish_frame(now, visible, counted=bool(rects))
        if self.display and rects:
            pygame.display.update(rects)
        return ui

    def _finish_frame(self, now: float, visible: list[Screen], *, counted: bool = True) -> None:
        self._anim_due = False
        if counted:
            self._last_frame_at = now
            self.frames += 1
        frames = [f for f in (s.next_frame(now) for s in visible) if f is not None]
        self._next_anim_at = now + max(FRAME_S, min(frames)) if frames else None

    def _report(self) -> None:
        name = self.top.name
        if name != self._reported:
            self._reported = name
            if self.on_screen is not None:
                self.on_screen(name)

    # --- the loop -------------------------------------------------------------------------
    def step(self, *, block: bool = True) -> None:
        """One turn: sleep until an event or a deadline, handle events, fire timers, draw."""
        if block:
            timeout = self.next_wakeup(self.now())
            if self.heartbeat_every_s is not None:
                every = self.heartbeat_every_s
                timeout = every if timeout is None else min(timeout, every)
            # no deadline: block until an event (no CPU while nothing moves)
            wait_ms = None if timeout is None else max(1, math.ceil(timeout * 1000))
            ev = self.wait() if wait_ms is None else self.wait(wait_ms)
            self.handle(ev)
        for ev in pygame.event.get():
            self.handle(ev)
        self.tick(self.now())
        if self.dirty:
            self.render()
        elif self._anim_due:
            self.render_update()
        if self.heartbeat is not None:
            self.heartbeat()

    def loop(self) -> None:
        self.render()
        if self._preload_pending:
            self._preload_pending = False
            products = [pv.product for pv in self.view.products]
            th = threading.Thread(
                target=_warm_up, args=(self.images, products), name="ui-preload", daemon=True
            )
            self.threads.append(th)
            th.start()
        while self.running:
            self.step()


def _warm_up(images: ProductImages, products: list[Product]) -> None:
    """After the first frame, off the loop: import what the first tap of each screen would
    otherwise import on the UI thread (the screens, the QR encoder; ~100 ms at the first
    shopper's taps), then draw the product pictures."""
    import importlib

    for mod in (
        "kiosk.ui.screens.catalog",
        "kiosk.ui.screens.category_picker",
        "kiosk.ui.screens.product",
        "kiosk.ui.screens.cart",
        "kiosk.ui.screens.payment",
        "kiosk.ui.screens.confirm",
        "kiosk.ui.screens.offline_code",
        "kiosk.ui.screens.dispensing",
        "kiosk.ui.screens.done",
        "kiosk.ui.screens.problem",
        "kiosk.ui.screens.idle_prompt",
        "qrcode",
    ):
        importlib.import_module(mod)
    images.preload(products)


# --- production entry -------------------------------------------------------------------


def open_display(config: UiConfig, kiosk_mode: bool = True) -> pygame.Surface:
    """Open the window (X11/Wayland) or the whole screen (KMSDRM, fullscreen)."""
    os.environ.setdefault("SDL_TOUCH_MOUSE_EVENTS", "0")  # belt: we also drop event.touch
    pygame.display.init()
    pygame.freetype.init()
    flags = pygame.FULLSCREEN if (config.fullscreen and kiosk_mode) else 0
    surface = pygame.display.set_mode((config.width, config.height), flags)
    pygame.display.set_caption(WINDOW_TITLE)
    if kiosk_mode:
        pygame.mouse.set_visible(False)
    pygame.event.set_blocked(
        [
            pygame.MOUSEMOTION,
            pygame.FINGERMOTION,
            pygame.MOUSEWHEEL,
            pygame.TEXTINPUT,
            pygame.TEXTEDITING,
            pygame.KEYUP,
        ]
    )
    return surface


def run(
    controller: UiControllerPort,
    ui_config: UiConfig,
    clock: Clock,
    *,
    kiosk_mode: bool = True,
    images: ProductImages | None = None,
    on_screen: Callable[[str], None] | None = None,
    heartbeat: Callable[[], None] | None = None,
    heartbeat_every_s: float | None = None,
    stop: threading.Event | None = None,
    technicians: tuple[TechnicianConfig, ...] | None = None,
) -> None:
    """Run the UI until QUIT (only honoured outside kiosk mode) or a `request_stop`. Raises
    FontMissing first. `stop`: whoever sets it calls `request_stop()`; one set before the
    display was open (when a post would be lost) is seen here."""
    font = load_font(find_cjk_font(ui_config.font_path))
    surface = open_display(ui_config, kiosk_mode)
    if stop is not None and stop.is_set():
        request_stop()
    app = UiApp(
        controller,
        ui_config,
        clock,
        surface=surface,
        font=font,
        images=images,
        kiosk_mode=kiosk_mode,
        display=True,
        on_screen=on_screen,
        heartbeat=heartbeat,
        heartbeat_every_s=heartbeat_every_s,
        technicians=technicians,
    )
    controller.set_notify(notify_view_changed)
    app.loop()
    pygame.display.quit()


def request_stop() -> None:
    """Make a running `run()` leave its loop, in kiosk mode too. Thread-safe, never blocks:
    it wakes a loop asleep in `pygame.event.wait()` at once."""
    if pygame.display.get_init() or pygame.get_init():
        pygame.event.post(pygame.event.Event(STOP_REQUESTED))


# --- screenshots and tests --------------------------------------------------------------

_fonts: dict[str, pygame.freetype.Font] = {}


def default_font(path: str | None = None) -> pygame.freetype.Font:
    key = path or ""
    if key not in _fonts:
        from pathlib import Path

        _fonts[key] = load_font(find_cjk_font(Path(path) if path else None))
    return _fonts[key]


def show(app: UiApp, name: str) -> None:
    """Put the stack into the state the screen `name` (one of SCREEN_NAMES) needs."""
    from kiosk.ui.screens.cart import CartScreen
    from kiosk.ui.screens.catalog import CatalogScreen
    from kiosk.ui.screens.idle_prompt import IdlePromptScreen
    from kiosk.ui.screens.offline_code import OfflineCodeScreen
    from kiosk.ui.screens.product import ProductScreen
    from kiosk.ui.screens.service_count import ServiceCountScreen
    from kiosk.ui.screens.service_info import ServiceInfoScreen
    from kiosk.ui.screens.service_menu import ServiceMenuScreen
    from kiosk.ui.screens.service_pin import ServicePinScreen
    from kiosk.ui.screens.service_slots import ServiceSlotsScreen

    if name not in SCREEN_NAMES:
        raise ValueError(f"unknown screen {name!r}; known: {', '.join(SCREEN_NAMES)}")
    if name == "product":
        pid = (
            app.view.cart[0].product_id
            if app.view.cart
            else app.view.products[0].product.product_id
        )
        app.push(ProductScreen(app, pid))
    elif name == "cart":
        app.push(CartScreen(app))
    elif name == "category_picker":
        from kiosk.ui.screens.category_picker import CategoryPickerScreen

        root = app.stack[0]
        assert isinstance(root, CatalogScreen)
        app.push(CategoryPickerScreen(app, root))
    elif name == "offline_code":
        app.push(OfflineCodeScreen(app))
    elif name == "payment_cancel":
        from kiosk.ui.screens.payment import PaymentScreen

        root = app.stack[0]
        assert isinstance(root, PaymentScreen)
        root._cancel()
    elif name == "idle_prompt":
        app.push(ProductScreen(app, app.view.products[0].product.product_id))
        app.push(IdlePromptScreen(app))
        app.last_activity = app.now() - (app.config.idle_timeout_s - 15)
    elif name == "attract_dimmed":
        app.last_activity = app.now() - app.config.dim_after_s - 1
    elif name.startswith("service_"):
        if name == "service_pin":
            app.push(ServicePinScreen(app))
            return
        app.push(ServiceMenuScreen(app))
        sub = name.removeprefix("service_")
        if sub in ("restock", "stock"):
            app.push(ServiceSlotsScreen(app, sub))
        elif sub == "count":
            app.push(ServiceSlotsScreen(app, "restock"))
            slot = next(s for s in app.view.service.slots if s.product_id)
            app.push(ServiceCountScreen(app, slot.slot_no, slot.capacity))
        elif sub in ("sync", "board", "network", "version"):
            app.push(ServiceInfoScreen(app, sub))
    app.dirty = True
