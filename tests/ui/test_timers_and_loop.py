"""Inactivity prompt and return, dimming, how the loop sleeps, no keyboard escape, and the
hidden service menu (long-press, PIN, lockout, logged actions)."""

from __future__ import annotations

import time
from itertools import pairwise

import pygame
import pytest

from kiosk.contract import (
    BackToIdle,
    LockSales,
    Restock,
    ServiceExit,
    ServiceLogin,
    ServiceViewed,
)
from kiosk.contract import TestVend as VendTest
from kiosk.core.pin import DEMO_PIN
from kiosk.ui.app import FRAME_S, LONG_PRESS_S, SERVICE_TIMEOUT_S, TAP_HOLD_S


def _to_payment(d) -> None:  # type: ignore[no-untyped-def]
    """A product into the cart and checkout: the payment screen."""
    d.tap("start")
    d.tap(next(h.name for h in d.app.hits if h.name.startswith("tile-")))
    d.tap("add")
    d.tap("go-cart")
    d.tap("checkout")
    assert d.screen == "payment"


class _Stop(Exception):
    pass


def _record_waits(app) -> list[tuple]:
    calls: list[tuple] = []

    def wait(*args):
        calls.append(args)
        return pygame.event.Event(pygame.NOEVENT)

    app.wait = wait
    return calls


def test_idle_prompt_then_attract_and_chinese_again(make_driver) -> None:
    d = make_driver()
    d.tap("start")
    d.tap("lang")
    d.tap("tile-TEA-YXCL-100")
    d.tap("add")
    assert d.app.lang == "en"
    d.advance(39.0)
    assert d.screen == "product"
    d.advance(1.5)  # 40.5 s idle: >= 20 s before the 60 s timeout
    assert d.screen == "idle_prompt"
    d.tap("idle-more")
    assert d.screen == "product"
    d.advance(41.0)
    assert d.screen == "idle_prompt"
    d.advance(20.0)
    assert BackToIdle("timeout") in d.fc.posted
    assert d.screen == "attract"
    assert d.app.lang == "zh"
    assert d.app.view.cart == ()


def test_any_touch_dismisses_the_prompt(make_driver) -> None:
    d = make_driver()
    d.tap("start")
    d.advance(45.0)
    assert d.screen == "idle_prompt"
    d.finger((5, d.app.surface.get_height() // 2))  # on the scrim, not a button
    assert d.screen == "catalog"


def _lift(d, pos: tuple[int, int]) -> None:
    x, y = d._norm(pos)
    pygame.event.post(
        pygame.event.Event(
            pygame.FINGERUP, x=x, y=y, dx=0.0, dy=0.0, finger_id=1, touch_id=1, pressure=0.0
        )
    )
    d.run()


@pytest.mark.parametrize("button", ["idle-more", "idle-leave"])
def test_a_prompt_button_acts_when_the_finger_lifts_not_what_lies_beneath(
    make_driver, button: str
) -> None:
    """A real tap: the finger lands, frames pass, then it lifts. The landing used to close
    the prompt at once, so the lift hit the catalog underneath: "more time" opened a product
    page and "no, I'm done" never ended the session (found by bench/_ui_taps.py)."""
    d = make_driver()
    d.tap("start")
    d.advance(45.0)
    assert d.screen == "idle_prompt"
    pos = d.hit(button).center
    d.finger(pos, up=False)
    d.clock.advance(0.1)
    d.run()  # frames while the finger is down
    _lift(d, pos)
    if button == "idle-more":
        assert d.screen == "catalog"
        assert not any(isinstance(i, BackToIdle) for i in d.fc.posted)
    else:
        assert BackToIdle("shopper") in d.fc.posted


def test_payment_keeps_its_own_countdown(make_driver) -> None:
    d = make_driver()
    d.tap("start")
    d.tap("tile-TEA-YXCL-100")
    d.tap("add")
    d.tap("go-cart")
    d.tap("checkout")
    d.advance(70.0)  # past the 60 s inactivity timeout: no prompt on the payment screen
    assert d.screen == "payment"
    assert any("0:50" in r.text for r in d.app.texts)
    d.advance(60.0)  # the controller expires the order
    assert d.screen == "problem"


@pytest.mark.parametrize(
    ("size", "large", "offline"),
    [
        ((1080, 1920), False, False),  # portrait: the countdown under the amount
        ((1920, 1080), False, True),  # landscape, offline band
        ((540, 960), True, True),  # the narrow column: amount and time on one line
        ((800, 480), True, False),  # the condensed column: time beside the amount
    ],
    ids=lambda v: f"{v[0]}x{v[1]}" if isinstance(v, tuple) else str(v),
)
def test_payment_clock_tick_repaints_only_the_countdown(
    make_driver, size: tuple[int, int], large: bool, offline: bool
) -> None:
    """Once a second only the countdown changes: the screen repaints and presents just its
    rectangle (a full-screen frame there delayed a tap that landed meanwhile: bench_ui taps),
    and what it shows, its texts and its touch targets are exactly what a full redraw gives."""
    d = make_driver(size)
    d.app.set_large(large)
    d.fc.set_province_online(not offline)
    _to_payment(d)
    assert d.screen == "payment"
    pay = d.app.top
    updates: list[list[pygame.Rect] | None] = []
    real_update = pay.update

    def update(ui):  # type: ignore[no-untyped-def]
        updates.append(real_update(ui))
        return updates[-1]

    pay.update = update  # type: ignore[method-assign]
    left = d.app.view.payment.expires_at - d.app.now()
    d.advance(left - int(left) + 0.05)  # just past the next whole second
    before = d.app.surface.copy()
    frames, n = d.app.frames, len(updates)
    d.advance(1.0)
    assert d.app.frames == frames + 1 and len(updates) == n + 1
    rects = updates[-1]
    assert rects is not None and len(rects) == 1
    rect = rects[0]
    assert rect.w * rect.h < size[0] * size[1] // 8  # a line, not the screen
    ticked = d.app.surface.copy()
    texts = list(d.app.texts)
    hits = [(h.name, tuple(h.rect)) for h in d.app.hits]
    assert any(h[0] == "cancel" for h in hits)
    d.app.render()  # a full redraw at the same moment
    assert pygame.image.tobytes(ticked, "RGB") == pygame.image.tobytes(d.app.surface, "RGB")
    assert texts == d.app.texts
    assert hits == [(h.name, tuple(h.rect)) for h in d.app.hits]
    # every pixel the clock changed since the first frame lies inside the presented rectangle
    delta = before.copy()
    delta.blit(ticked, (0, 0), special_flags=pygame.BLEND_RGB_SUB)
    back = ticked.copy()
    back.blit(before, (0, 0), special_flags=pygame.BLEND_RGB_SUB)
    delta.blit(back, (0, 0), special_flags=pygame.BLEND_RGB_ADD)  # non-black where they differ
    changed = pygame.mask.from_threshold(delta, (0, 0, 0), (1, 1, 1, 255))
    changed.invert()
    boxes = changed.get_bounding_rects()
    assert boxes, "the clock did not move"
    assert rect.contains(boxes[0].unionall(boxes))


def test_a_resting_finger_holds_the_clock_frame_until_it_lifts(make_driver) -> None:
    """The payment clock's frame waits while a finger that just landed rests (its lift's
    frame shows the new second too, and would otherwise wait behind the clock's frame); a
    finger resting longer than TAP_HOLD_S does not stop the clock."""
    d = make_driver()
    _to_payment(d)
    assert d.screen == "payment"

    def shown_time() -> str:
        return next(r.text for r in d.app.texts if ":" in r.text and r.text[-2:].isdigit())

    left = d.app.view.payment.expires_at - d.app.now()
    d.advance(left - int(left) + 0.05)  # just past a whole second
    d.advance(0.85)  # 0.1 s before the next one
    before, frames = shown_time(), d.app.frames
    spot = d.hit("cancel").midtop
    spot = (spot[0], spot[1] - 40)  # on the screen, on nothing
    d.finger(spot, up=False)
    d.clock.advance(0.2)  # the second turns while the finger rests
    d.run()
    assert (d.app.frames, shown_time()) == (frames, before)
    assert d.app.next_wakeup(d.app.now()) == pytest.approx(TAP_HOLD_S - 0.2, abs=0.01)
    d.finger(spot)  # the lift: one frame, with the new second
    assert d.app.frames == frames + 1 and shown_time() != before
    # a finger left resting: the clock goes on once TAP_HOLD_S has passed
    d.finger(spot, up=False)
    frames, before = d.app.frames, shown_time()
    d.advance(TAP_HOLD_S + 1.0)
    assert d.app.frames > frames and shown_time() != before


def test_a_dialog_over_payment_reuses_it_within_a_second(make_driver) -> None:
    """The cancel question over the payment screen: the payment layer is drawn once per second
    its clock shows (`Screen.time_key`) and reused for other frames, and a reused frame is the
    frame drawn afresh; when the second turns, the clock under the dialog moves."""
    d = make_driver()
    _to_payment(d)
    pay = d.app.top
    left = d.app.view.payment.expires_at - d.app.now()
    d.advance(left - int(left) + 0.05)  # just past a whole second
    d.tap("cancel")
    assert d.screen == "confirm"
    drawn: list[float] = []
    real_draw = pay.draw

    def draw(ui):  # type: ignore[no-untyped-def]
        drawn.append(ui.now)
        real_draw(ui)

    pay.draw = draw  # type: ignore[method-assign]

    def frame() -> tuple[bytes, list[str]]:
        d.app.dirty = True
        d.app.render()
        return pygame.image.tobytes(d.app.surface, "RGB"), [r.text for r in d.app.texts]

    first = frame()
    d.clock.advance(0.5)  # the same second
    again = frame()
    assert again == first and drawn == []
    d.app._backdrop = None
    assert frame() == first and len(drawn) == 1  # drawn afresh: the same frame
    d.clock.advance(0.5)  # the next second
    turned = frame()
    assert len(drawn) == 2 and turned[1] != first[1] and turned[0] != first[0]


def test_payment_time_key_changes_exactly_when_its_clock_does(make_driver) -> None:
    """`PaymentScreen.time_key` (what a dialog's backdrop over it is keyed by) changes at the
    same moments as the countdown's pixels: each whole second and the warning colour at 20 s."""
    d = make_driver((540, 960))
    _to_payment(d)
    pay = d.app.top
    d.advance(d.app.view.payment.expires_at - d.app.now() - 23.02)
    seen = []
    for _ in range(60):  # 23 s left down to 17 s, in tenths
        d.clock.advance(0.1)
        d.app.dirty = True
        d.app.render()
        rect = pay._tick[0]
        pixels = pygame.image.tobytes(d.app.surface.subsurface(rect), "RGB")
        seen.append((pay.time_key(d.app.now()), pixels))
    turns = [a[0] != b[0] for a, b in pairwise(seen)]
    assert turns == [a[1] != b[1] for a, b in pairwise(seen)]
    assert sum(turns) >= 5  # the seconds from 0:23 to 0:17
    assert any(a[0][1] != b[0][1] for a, b in pairwise(seen))  # 20 s


def test_attract_dims(make_driver) -> None:
    d = make_driver(dim_after_s=120)
    assert not d.app.dimmed
    d.advance(121.0)
    assert d.app.dimmed
    assert d.app.next_wakeup(d.app.now()) == pytest.approx(1.0, abs=0.05)


def test_blocking_wait_when_nothing_moves(make_driver) -> None:
    d = make_driver()
    d.fc.set_out_of_service("board_offline")
    d.run()
    assert d.screen == "out_of_service"
    calls = _record_waits(d.app)
    for _ in range(3):
        d.app.step()
    assert calls == [(), (), ()]  # pygame.event.wait() without a timeout


def test_timed_wait_while_something_moves(make_driver) -> None:
    d = make_driver()
    calls = _record_waits(d.app)
    d.app.step()  # attract animates: a timeout of one frame or more, never below 30 fps cap
    assert len(calls[0]) == 1 and calls[0][0] >= int(FRAME_S * 1000)
    d.tap("start")
    calls.clear()
    d.app.step()  # catalog: only the inactivity deadline (40 s away)
    assert calls[0][0] == pytest.approx(40_000, abs=50)


def test_view_changed_wakes_and_redraws_only_then(make_driver) -> None:
    d = make_driver()
    d.fc.set_out_of_service("board_offline")
    d.run()
    frames = d.app.frames
    d.run()
    assert d.app.frames == frames  # nothing changed: no redraw
    d.fc.set_out_of_service("storage_error")
    d.run()
    assert d.app.frames == frames + 1


def test_no_keyboard_or_quit_escape_in_kiosk_mode(make_driver) -> None:
    d = make_driver()
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0))
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_F4, mod=pygame.KMOD_ALT))
    d.run()
    assert d.app.running
    d.app.kiosk_mode = False
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    d.run()
    assert not d.app.running


def _long_press(d, seconds: float) -> None:
    x, y = d._norm((5, 5))
    pygame.event.post(pygame.event.Event(pygame.FINGERDOWN, x=x, y=y, finger_id=7, touch_id=1))
    d.run()
    d.advance(seconds)
    pygame.event.post(pygame.event.Event(pygame.FINGERUP, x=x, y=y, finger_id=7, touch_id=1))
    d.run()


def _enter_pin(d, pin: str) -> None:
    for digit in pin:
        d.tap(f"pin-{digit}")
    d.tap("pin-ok")
    for th in d.app.threads:
        th.join(timeout=5)
    deadline = time.monotonic() + 5
    while getattr(d.app.top, "checking", False) and time.monotonic() < deadline:
        d.run()


def test_short_press_in_corner_does_not_open_service(make_driver) -> None:
    d = make_driver()
    _long_press(d, LONG_PRESS_S - 1)
    assert d.screen == "catalog"  # a plain tap on the attract screen starts shopping


def test_no_service_menu_while_updating(make_driver) -> None:
    """The "维护中 / updating" screen of a software update: the corner opens nothing (the
    controller refuses a login too, tests/unit/test_update_trial.py)."""
    d = make_driver()
    d.fc.set_out_of_service("updating")
    d.run()
    assert d.screen == "out_of_service"
    _long_press(d, LONG_PRESS_S + 0.1)
    assert d.screen == "out_of_service"
    d.fc.set_out_of_service(None)
    d.run()
    _long_press(d, LONG_PRESS_S + 0.1)
    assert d.screen == "service_pin"


def test_service_menu_login_actions_and_exit(make_driver) -> None:
    d = make_driver()
    _long_press(d, LONG_PRESS_S + 0.1)
    assert d.screen == "service_pin"
    _enter_pin(d, DEMO_PIN)
    assert ServiceLogin(ok=True, technician="default") in d.fc.posted
    assert d.screen == "service_menu"
    d.tap("slots:restock")
    d.tap("fill-10")
    assert Restock(10, None) in d.fc.posted
    assert d.app.view.service.slots[0].count == d.app.view.service.slots[0].capacity
    d.tap("set-11")
    assert d.screen == "service_count"
    d.tap("count-3")
    d.tap("count-ok")
    assert Restock(11, 3) in d.fc.posted
    d.tap("back")
    d.tap("slots:test_vend")
    d.tap("vend-12")
    assert VendTest(12) not in d.fc.posted  # a test vend drops an item: confirmed first
    d.tap("confirm-yes")
    assert VendTest(12) in d.fc.posted
    d.tap("back")
    d.tap("info:sync")
    assert ServiceViewed("sync") in d.fc.posted
    assert any(r.text == "14" for r in d.app.texts)  # normal-priority queue depth
    d.tap("back")
    d.tap("lock")
    assert LockSales(True) in d.fc.posted
    assert d.app.view.mode == "out_of_service" and d.screen == "service_menu"
    d.tap("lock")
    d.tap("exit")
    assert ServiceExit("exit") in d.fc.posted
    assert d.screen == "attract"


def test_wrong_pins_lock_with_growing_delays(make_driver) -> None:
    """2 wrong PINs are free, the 3rd locks for 30 s, the 4th for 60 s; the lock is the
    controller's (the view's), and the screen says how long to wait."""
    d = make_driver(lang="en")
    _long_press(d, LONG_PRESS_S + 0.1)
    for _ in range(3):
        _enter_pin(d, "000000")
    assert d.fc.posted.count(ServiceLogin(ok=False)) == 3
    pin = d.app.view.service.pin
    assert pin.failures == 3 and pin.locked_until == pytest.approx(d.app.now() + 30, abs=1)
    d.run()
    assert any("try again in 30 s" in r.text for r in d.app.texts)
    _enter_pin(d, DEMO_PIN)  # right PIN, but locked: refused without checking
    assert ServiceLogin(ok=False, locked_out=True) in d.fc.posted
    assert d.screen == "service_pin"
    d.advance(10.0)
    assert any("try again in 20 s" in r.text for r in d.app.texts)
    d.advance(21.0)
    _enter_pin(d, "111111")  # the 4th wrong PIN: 60 s
    assert any("try again in 1 min 0 s" in r.text for r in d.app.texts)
    d.advance(61.0)
    _enter_pin(d, DEMO_PIN)
    assert d.screen == "service_menu"
    assert d.app.view.service.pin.failures == 0


def test_short_pin_is_never_checked(make_driver) -> None:
    d = make_driver()
    _long_press(d, LONG_PRESS_S + 0.1)
    for digit in DEMO_PIN[:5]:
        d.tap(f"pin-{digit}")
    assert "pin-ok" not in [h.name for h in d.app.hits]  # no OK below 6 digits
    d.tap(f"pin-{DEMO_PIN[5]}")
    assert "pin-ok" in [h.name for h in d.app.hits]


def test_pin_waits_for_the_controller(make_driver) -> None:
    """No PIN is checked before the controller has published its lockout."""
    from dataclasses import replace

    d = make_driver()
    _long_press(d, LONG_PRESS_S + 0.1)
    view = d.app.view
    d.app.view = replace(
        view, service=replace(view.service, pin=replace(view.service.pin, ready=False))
    )
    for digit in DEMO_PIN:
        d.tap(f"pin-{digit}")
    assert "pin-ok" not in [h.name for h in d.app.hits]
    assert any(r.text == "请稍候……" for r in d.app.texts)


def test_service_session_times_out(make_driver) -> None:
    d = make_driver()
    _long_press(d, LONG_PRESS_S + 0.1)
    d.advance(SERVICE_TIMEOUT_S + 1)
    assert ServiceExit("timeout") in d.fc.posted
    assert d.screen == "attract"


def test_an_arriving_picture_wakes_a_redraw(make_driver) -> None:  # type: ignore[no-untyped-def]
    """Media fetched over MQTT lands while nothing else changes: IMAGES_CHANGED redraws."""
    from kiosk.ui.events import notify_images_changed

    d = make_driver()
    d.app.render()
    drawn: list[bool] = []
    real_render = d.app.render

    def render() -> None:
        drawn.append(True)
        real_render()

    d.app.render = render
    d.app.step(block=False)
    assert drawn == []  # nothing changed: no redraw
    notify_images_changed()
    d.app.step(block=False)
    assert drawn == [True]


def test_loop_beats_for_the_watchdog_even_when_nothing_moves(make_driver) -> None:  # type: ignore[no-untyped-def]
    d = make_driver()
    d.fc.set_out_of_service("board_offline")
    d.run()
    beats: list[bool] = []
    d.app.heartbeat = lambda: beats.append(True)
    d.app.heartbeat_every_s = 5.0
    calls = _record_waits(d.app)
    d.app.step()
    assert calls == [(5000,)]  # a 5 s wait instead of a wait without timeout
    assert beats == [True]
