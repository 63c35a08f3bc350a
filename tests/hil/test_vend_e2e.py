"""End to end over a real pty: the kiosk's SerialLink + SerialBoard in this process, the board
emulator in another, every test once per wire (clean, lossy, bytewise, delayed; see
tests/support/hil.py). The emulator's physical log is the ground truth: what the motor really did.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kiosk.hardware.protocol import BoardReset, Outcome, ResetReason
from tests.support.hil import (
    Resolved,
    Rig,
    vend_and_resolve,
    vend_until_known,
    wait_until,
)

MakeRig = Callable[..., Rig]


def emu_status(rig: Rig) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(rig.emu.ctl("status"))
    return status


def runs_of(rig: Rig, tx: int) -> list[dict[str, Any]]:
    return rig.emu.runs().get(tx, [])


def vend_with_action_mid_run(rig: Rig, slot: int, tx: int, action: str) -> Resolved:
    """Start a vend, wait until the emulator's motor runs for ``tx``, send ``action`` to the
    emulator's control channel, and return how the kiosk resolved the tx."""
    acted = threading.Event()

    def sale() -> Resolved:
        while True:
            r = vend_and_resolve(rig.board, slot, tx)
            # Before the action, UNKNOWN_TX means the VEND never reached the board (lossy wire):
            # the same tx again, as vend_until_known does.
            if acted.is_set() or r.outcome is not Outcome.UNKNOWN_TX:
                return r

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(sale)
        running = wait_until(lambda: emu_status(rig)["busy_tx"] == tx or future.done(), 60.0)
        assert running and not future.done(), f"the motor never ran for tx {tx}"
        rig.emu.ctl(action)
        acted.set()
        return future.result(timeout=90)


def test_vend_delivered(make_rig: MakeRig) -> None:
    rig = make_rig()
    stock_before = emu_status(rig)["stock"][12]

    r = vend_until_known(rig.board, 12, 101)

    assert r.outcome is Outcome.DELIVERED
    [run] = runs_of(rig, 101)
    assert run["result"] == "DELIVERED" and run["dropped"] is True and run["slot"] == 12
    assert emu_status(rig)["stock"][12] == stock_before - 1


def test_jammed_slot_reports_jammed_and_nothing_drops(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.emu.ctl("jam 7")

    r = vend_until_known(rig.board, 7, 201)

    assert r.outcome is Outcome.JAMMED
    [run] = runs_of(rig, 201)
    assert run["result"] == "JAMMED" and run["dropped"] is False
    assert vend_until_known(rig.board, 8, 202).outcome is Outcome.DELIVERED  # other slots work


def test_blind_drop_sensor_reports_nothing_dropped(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.emu.ctl("blind 9")

    r = vend_until_known(rig.board, 9, 301)

    assert r.outcome is Outcome.NOTHING_DROPPED
    [run] = runs_of(rig, 301)
    # The product did fall: the kiosk cannot know, and must not claim DELIVERED.
    assert run["result"] == "NOTHING_DROPPED" and run["dropped"] is True


@pytest.mark.parametrize("memory", ["keep", "lose"])
def test_board_reset_mid_vend_is_never_resent(make_rig: MakeRig, memory: str) -> None:
    rig = make_rig(time_scale=0.3)  # motor turns 0.45..0.9 s: long enough to reset it mid-run
    tx = 401 if memory == "keep" else 402

    r = vend_with_action_mid_run(rig, 3, tx, f"reset {memory}")

    # keep: the board recorded INTERRUPTED; lose: it has no record. Either way the kiosk must
    # report what the board says (the caller decides about a refund), and never run it again.
    runs = runs_of(rig, tx)
    assert len(runs) == 1, f"tx {tx} ran {len(runs)} times: {runs}; kiosk saw {r}"
    assert runs[0]["result"] == "INTERRUPTED"
    expected = Outcome.INTERRUPTED if memory == "keep" else Outcome.UNKNOWN_TX
    assert r.outcome is expected, r
    resets = [e for e in rig.emu.physical_log() if e["event"] == "board_reset"]
    assert resets[-1]["memory_kept"] is (memory == "keep")

    def watchdog_resets() -> list[BoardReset]:
        return [
            e
            for e in rig.kiosk.events
            if isinstance(e, BoardReset) and e.reason is ResetReason.WATCHDOG
        ]

    assert wait_until(lambda: bool(watchdog_resets()), 10.0)
    [event] = watchdog_resets()
    assert event.interrupted_tx == (tx if memory == "keep" else 0)
    assert event.memory_kept is (memory == "keep")

    # The board was re-identified behind the scenes: the next sale works.
    assert vend_until_known(rig.board, 4, tx + 10).outcome is Outcome.DELIVERED
    assert len(runs_of(rig, tx)) == 1


def test_unplug_mid_vend_then_replug_resolves_by_query(make_rig: MakeRig) -> None:
    rig = make_rig(time_scale=0.3)
    tx = 501

    r = vend_with_action_mid_run(rig, 5, tx, "unplug 1.0")

    # The board kept its own power and finished the vend; the kiosk learned it by asking.
    assert r.outcome is Outcome.DELIVERED, r
    assert r.via == "outcome" and "BoardOffline" in r.error, r
    [run] = runs_of(rig, tx)
    assert run["result"] == "DELIVERED"
    c = rig.link.counters()
    assert c["disconnects"] >= 1 and c["reconnects"] >= 1, c
    assert vend_until_known(rig.board, 6, tx + 1).outcome is Outcome.DELIVERED
