"""Tap -> next frame presented, for every screen transition a shopper makes (bench_ui.py).

Runs inside ONE process on a real X window (Xvfb, SDL x11 driver), in rounds. Each round is
one whole shopper journey (JOURNEY) on the real `UiApp.loop()` over the fake controller
(SystemClock, its pump thread), and right before each of its transitions one baseline tap on a
bare pygame loop in the same window (`pygame.event.wait()`, on FINGERUP blit a prepared
full-screen surface and `pygame.display.flip()`): the main thread switches between the two
loops, so load on a shared machine falls on both alike.

A driver thread injects each tap as the touch screen would: FINGERDOWN, 100 ms later FINGERUP,
into pygame's queue (`pygame.event.post`) while the main thread sleeps in its loop. The time runs
from just before the FINGERUP is posted to the return of the first `pygame.display.flip()` /
`pygame.display.update()` whose frame shows the transition's result (a predicate on the app,
checked on the main thread as the frame is presented). The fake controller's own time handling
the intents of that tap (`post()`, under its lock) is measured too: the goal allows it on top.
The idle prompt's "more time" is timed like every other tap, from the FINGERUP (since
2026-12-06 the prompt closes when the finger lifts; it closed on the landing before, and the
lift then hit the screen beneath: tests/ui/test_timers_and_loop.py).
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pygame

DOWN_TO_UP_S = 0.10  # a finger rests ~100 ms on the glass
SETTLE_S = 0.12  # after the frame: let the loop go back to sleep before the next tap
TIMEOUT_S = 10.0
PID = "TEA-YXCL-100"

Pred = Callable[[Any], bool]


def _top(name: str) -> Pred:
    return lambda app: app.top.name == name


def _qty(n: int) -> Pred:
    return lambda app: app.view.qty_in_cart(PID) == n and app.top.name in ("product", "cart")


CODE = "24681357"  # the fake controller's offline confirmation code (set in _make_app)


class _Extended:
    """Payment "more time": the frame shows a later deadline than before the tap."""

    def __init__(self) -> None:
        self.before = 0.0

    def arm(self, app: Any) -> None:
        pay = app.view.payment
        self.before = 0.0 if pay is None else pay.expires_at

    def __call__(self, app: Any) -> bool:
        pay = app.view.payment
        return pay is not None and pay.expires_at > self.before


def _gone(name: str) -> Pred:
    return lambda app: app.top.name != name


def _typed(n: int) -> Pred:
    return lambda app: app.top.name == "offline_code" and app.top.digits == CODE[:n]


def _large(on: bool, screen: str = "catalog") -> Pred:
    return lambda app: app.large == on and app.top.name == screen


_TO_PAYMENT: tuple[tuple[str, str, Pred | None], ...] = (
    ("catalog tile -> product", f"tile-{PID}", _top("product")),
    ("product: add to cart", "add", _qty(1)),
    ("product -> cart", "go-cart", _top("cart")),
    ("cart -> payment (checkout)", "checkout", _top("payment")),
)

# (transition name, tap target, predicate on the presented frame). Special targets:
# "!pay" the simulated payment confirmation (not a tap); "@fail" (setup, no sample) makes the
# product's slots fail so the next vend ends on the problem screen; "@idle" (setup, no sample)
# moves the inactivity timer to the "are you still there?" prompt. Before each tap the driver
# waits until the target is on the screen.
JOURNEY: tuple[tuple[str, str, Pred | None], ...] = (
    ("attract -> catalog (tap anywhere)", "start", _top("catalog")),
    ("catalog -> category picker", "categories", _top("category_picker")),
    ("category picker -> catalog (all)", "pick-all", _top("catalog")),
    ("catalog: next page", "next", _top("catalog")),
    ("catalog: previous page", "prev", _top("catalog")),
    ("catalog tile -> product", f"tile-{PID}", _top("product")),
    ("product -> back (catalog)", "back", _top("catalog")),
    ("catalog tile -> product", f"tile-{PID}", _top("product")),
    ("product: add to cart", "add", _qty(1)),
    ("product -> cart", "go-cart", _top("cart")),
    ("cart: + quantity", f"plus-{PID}", _qty(2)),
    ("cart: - quantity", f"minus-{PID}", _qty(1)),
    ("cart -> payment (checkout)", "checkout", _top("payment")),
    ("payment: more time (需要更多时间)", "more-time", _Extended()),
    ("payment: cancel -> confirmation", "cancel", _top("confirm")),
    ("confirmation: no -> payment", "confirm-no", _top("payment")),
    ("payment: cancel -> confirmation", "cancel", _top("confirm")),
    ("confirmation: yes -> catalog", "confirm-yes", _top("catalog")),
    ("catalog -> cart", "cart", _top("cart")),
    ("cart -> payment (checkout)", "checkout", _top("payment")),
    ("payment -> enter code (keypad)", "code", _top("offline_code")),
    *((("keypad: type a digit", f"key-{d}", _typed(i + 1))) for i, d in enumerate(CODE)),
    ("keypad: OK (8 digits) -> dispensing", "key-ok", _top("dispensing")),
    ("done -> attract (finish)", "finish", _top("attract")),
    ("attract: language -> catalog in English", "lang", lambda a: a.lang == "en"),
    ("catalog: language switch", "lang", lambda a: a.lang == "zh"),
    ("catalog header: large text (大字模式) on", "large", _large(True)),
    ("catalog header: large text (大字模式) off", "large", _large(False)),
    *_TO_PAYMENT,
    ("", "@fail", None),
    ("payment -> dispensing (simulated confirmation)", "!pay", _top("dispensing")),
    ("problem: OK (我知道了) -> attract", "problem-ok", _top("attract")),
    ("attract: large text (大字模式) -> catalog", "large", _large(True)),
    ("", "@idle", None),
    ("idle prompt: continue", "idle-more", _gone("idle_prompt")),
)


@dataclass
class Samples:
    latency: dict[str, list[float]] = field(default_factory=dict)
    ctrl: dict[str, list[float]] = field(default_factory=dict)
    baseline: list[float] = field(default_factory=list)


class Presenter:
    """Wraps pygame.display.flip/update: wakes the driver when a frame satisfying the current
    predicate has been presented (the time taken after flip returns, on the main thread)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.app: Any = None
        self.pred: Pred | None = None
        self.hit_at: float | None = None
        self._flip = pygame.display.flip
        self._update = pygame.display.update
        pygame.display.flip = self.flip  # type: ignore[assignment]
        pygame.display.update = self.update  # type: ignore[assignment]

    def _check(self) -> bool:
        with self.cond:
            pred = self.pred
        return pred is not None and (self.app is None or pred(self.app))

    def _done(self, ok: bool) -> None:
        if ok:
            t = time.perf_counter()
            with self.cond:
                if self.pred is not None and self.hit_at is None:
                    self.hit_at = t
                    self.cond.notify_all()

    def flip(self) -> None:
        ok = self._check()
        self._flip()
        self._done(ok)

    def update(self, *a: Any) -> None:
        ok = self._check()
        self._update(*a)
        self._done(ok)

    def expect(self, pred: Pred) -> None:
        with self.cond:
            self.pred, self.hit_at = pred, None

    def wait(self) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: self.hit_at is not None, TIMEOUT_S):
                raise TimeoutError("no frame showing the transition")
            t = self.hit_at
            self.pred = None
            assert t is not None
            return t


def _finger(kind: int, pos: tuple[int, int], size: tuple[int, int]) -> pygame.event.Event:
    x, y = (pos[0] + 0.5) / size[0], (pos[1] + 0.5) / size[1]
    return pygame.event.Event(kind, x=x, y=y, dx=0.0, dy=0.0, finger_id=1, touch_id=1, pressure=1.0)


def _tap(
    pres: Presenter,
    pos: tuple[int, int],
    size: tuple[int, int],
    pred: Pred,
) -> float:
    """Down, rest, up; ms from the FINGERUP's post to the frame that satisfies `pred`."""
    pygame.event.post(_finger(pygame.FINGERDOWN, pos, size))
    time.sleep(DOWN_TO_UP_S)
    pres.expect(pred)
    t0 = time.perf_counter()
    pygame.event.post(_finger(pygame.FINGERUP, pos, size))
    ms = (pres.wait() - t0) * 1000
    time.sleep(SETTLE_S)
    return ms


def _wait_for_hit(app: Any, name: str) -> None:
    """Until the screen offers `name` (the controller moves dispensing -> done, problem)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not any(h.name == name for h in list(app.hits)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {name!r} on the screen")
        time.sleep(0.02)


def _setup(app: Any, fc: Any, what: str) -> None:
    """Untimed set-up between transitions (see JOURNEY)."""
    from kiosk.ui.app import PROMPT_LEAD_S
    from kiosk.ui.events import notify_view_changed

    if what == "@fail":
        with fc._lock:
            fc.fail_slots.update(sl.slot_no for sl in fc.planogram.slots_for(PID))
    elif what == "@idle":  # as if the shopper had stopped touching the screen long enough
        app.last_activity = app.now() - (app.config.idle_timeout_s - PROMPT_LEAD_S) - 0.5
        notify_view_changed()  # wakes the loop, whose tick() opens the prompt
        _wait_for_hit(app, "idle-more")
    else:
        raise ValueError(f"unknown set-up {what!r}")


def _bare_loop(surf: pygame.Surface, frames: list[pygame.Surface], stop: int) -> None:
    """The baseline: a bare pygame loop that flips a prepared full-screen frame on FINGERUP."""
    n = 0
    while True:
        ev = pygame.event.wait()
        if ev.type == stop:
            return
        if ev.type == pygame.FINGERUP:
            n += 1
            surf.blit(frames[n % 2], (0, 0))
            pygame.display.flip()


def _make_app(surf: pygame.Surface) -> tuple[Any, Any, list[float]]:
    """The real UiApp on the fake controller; the controller's post() timed into [0]."""
    from kiosk.clock import SystemClock
    from kiosk.config import UiConfig
    from kiosk.sim.fake_controller import FakeController
    from kiosk.ui.app import UiApp, default_font
    from kiosk.ui.events import notify_view_changed

    size = surf.get_size()
    cfg = replace(
        UiConfig(),
        width=size[0],
        height=size[1],
        language="zh",
        fullscreen=False,
        idle_timeout_s=3600,
        dim_after_s=3600,
    )
    clock = SystemClock()
    fc = FakeController(clock, vend_s=0.3)
    ctrl_s = [0.0]
    post = fc.post

    def timed_post(intent: Any) -> None:
        t = time.perf_counter()
        post(intent)
        ctrl_s[0] += time.perf_counter() - t

    fc.offline_code = CODE
    fc.post = timed_post  # type: ignore[method-assign]
    fc.start()
    app = UiApp(fc, cfg, clock, surface=surf, font=default_font(), kiosk_mode=False, display=True)
    fc.set_notify(notify_view_changed)
    return app, fc, ctrl_s


def _round(pres: Presenter, surf: pygame.Surface, s: Samples) -> None:
    """One shopper journey on the kiosk, each transition paired with a baseline tap just
    before it: the main thread runs the kiosk's loop or the bare loop, as the driver says, so
    a burst of load on a shared machine hits both alike."""
    from kiosk.ui.app import request_stop
    from kiosk.ui.events import notify_view_changed

    size = surf.get_size()
    app, fc, ctrl_s = _make_app(surf)
    frames = [pygame.Surface(size).convert(), pygame.Surface(size).convert()]
    frames[0].fill((250, 245, 235))
    frames[1].fill((235, 240, 250))
    stop = pygame.event.custom_type()
    phases: queue.Queue[str] = queue.Queue()
    bare_ready = threading.Event()
    failure: list[str] = []

    def kiosk_phase() -> None:  # the kiosk's loop again: its first frame redraws the screen
        pres.app = app
        pres.expect(lambda _a: True)
        phases.put("kiosk")
        notify_view_changed()  # what the controller said while the bare loop ran
        pres.wait()
        time.sleep(SETTLE_S)

    def baseline_tap() -> None:
        request_stop()
        pres.app = None
        bare_ready.clear()
        phases.put("bare")
        bare_ready.wait(TIMEOUT_S)
        time.sleep(SETTLE_S)
        s.baseline.append(_tap(pres, (size[0] // 2, size[1] // 2), size, lambda _a: True))
        pygame.event.post(pygame.event.Event(stop))

    def drive() -> None:
        try:
            kiosk_phase()
            deadline = time.monotonic() + TIMEOUT_S  # the warm-up thread: imports, pictures
            while not (app.threads and app.threads[0].ident) and time.monotonic() < deadline:
                time.sleep(0.01)
            for th in list(app.threads):
                th.join(TIMEOUT_S)
            for name, target, pred in JOURNEY:
                if pred is None:
                    _setup(app, fc, target)
                    continue
                if not target.startswith("!"):
                    _wait_for_hit(app, target)
                baseline_tap()
                kiosk_phase()
                arm = getattr(pred, "arm", None)
                if arm is not None:
                    arm(app)
                ctrl_s[0] = 0.0
                if target == "!pay":
                    pres.expect(pred)
                    t0 = time.perf_counter()
                    fc.simulate_payment()
                    ctrl_s[0] = time.perf_counter() - t0
                    ms = (pres.wait() - t0) * 1000
                    time.sleep(SETTLE_S)
                else:
                    rect = next(h.rect for h in list(app.hits) if h.name == target)
                    ms = _tap(pres, rect.center, size, pred)
                s.latency.setdefault(name, []).append(ms)
                s.ctrl.setdefault(name, []).append(ctrl_s[0] * 1000)
        except Exception as e:  # reported by the main thread
            failure.append(f"{type(e).__name__}: {e} (on {app.top.name})")
        finally:
            request_stop()
            phases.put("end")

    th = threading.Thread(target=drive, daemon=True)
    th.start()
    while (phase := phases.get()) != "end":
        if phase == "kiosk":
            app.running = True
            app.loop()
        else:
            bare_ready.set()
            _bare_loop(surf, frames, stop)
    th.join()
    fc.stop()
    if failure:
        raise RuntimeError(failure[0])


def pct(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, round(q * (len(ys) - 1)))]


def run_taps(size: tuple[int, int], rounds: int) -> dict[str, Any]:
    """Child entry (a DISPLAY set, SDL x11): returns the figures as plain data."""
    import pygame.freetype

    from kiosk.config import UiConfig
    from kiosk.ui.app import default_font, open_display

    cfg = replace(UiConfig(), width=size[0], height=size[1], fullscreen=False)
    surf = open_display(cfg, kiosk_mode=False)
    pygame.freetype.init()
    default_font()
    pres = Presenter()
    cold, s = Samples(), Samples()
    _round(pres, surf, cold)  # the first journey after start: reported, not counted
    for _ in range(rounds):
        _round(pres, surf, s)
    out: dict[str, Any] = {
        "driver": pygame.display.get_driver(),
        "size": list(size),
        "baseline": [statistics.median(s.baseline), pct(s.baseline, 0.95), len(s.baseline)],
        "transitions": {},
        "cold": {k: max(v) for k, v in cold.latency.items()},
    }
    for name, xs in s.latency.items():
        c = s.ctrl[name]
        out["transitions"][name] = [statistics.median(xs), pct(xs, 0.95), len(xs), pct(c, 0.95)]
    return out
