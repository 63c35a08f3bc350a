"""Crash injection for the kill-at-every-step tests (tests/chaos/test_kill9_sale.py). TESTING ONLY.

`KIOSK_CRASH_AT=<point>:<n>` makes the kiosk SIGKILL itself at the n-th time a point passes:
- commit:n       right after the n-th order commit (checkout, or a step that persisted the order)
- vend_result:n  after the n-th vend's answer came back from the board, before it is committed
- vend_sent:n    `KIOSK_CRASH_DELAY_MS` (default 10) after the n-th vend was sent (motor running)

Production paths know nothing of this: when the variable is set, `install` wraps the persistence
step (`Persistence.commit` / `checkout`) and the vend send (`DispenseWorker.send`) of one
controller; when it is not, `install` does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from kiosk.controller.dispense import DispenseWorker
from kiosk.controller.inbox import VendJob
from kiosk.controller.persist import Persistence
from kiosk.core import sale

__all__ = ["CRASH_DELAY_ENV", "CRASH_ENV", "crash_point", "install"]

CRASH_ENV = "KIOSK_CRASH_AT"
CRASH_DELAY_ENV = "KIOSK_CRASH_DELAY_MS"

_lock = threading.Lock()
_counts: dict[str, int] = {}


def _plan() -> tuple[str, int] | None:
    text = os.environ.get(CRASH_ENV, "")
    name, sep, n = text.partition(":")
    if not sep or not n.isdigit():
        return None
    return name, int(n)


def _die(why: str) -> None:
    print(f"KIOSK_CRASH {why}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def crash_point(name: str) -> bool:
    """Count a point; SIGKILL ourselves at the planned one. True when it is the one (only for
    points that kill later, i.e. "vend_sent")."""
    plan = _plan()
    if plan is None:
        return False
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = plan == (name, _counts[name])
    if hit and name != "vend_sent":
        _die(f"{name}:{plan[1]}")
    return hit


def install(persistence: Persistence, worker: DispenseWorker) -> bool:
    """Wrap the persistence step and the vend send when `KIOSK_CRASH_AT` is set."""
    plan = _plan()
    if plan is None:
        return False
    commit, checkout, send = persistence.commit, persistence.checkout, worker.send

    def crashing_commit(
        order: sale.Order, actions: list[sale.Action], *args: Any, **kw: Any
    ) -> bool:
        ok = commit(order, actions, *args, **kw)
        if ok and any(isinstance(a, sale.Persist) for a in actions):
            crash_point("commit")
        return ok

    def crashing_checkout(*args: Any, **kw: Any) -> Any:
        placed = checkout(*args, **kw)
        if placed is not None:
            crash_point("commit")
        return placed

    def crashing_send(job: VendJob) -> Any:
        if crash_point("vend_sent"):
            delay = float(os.environ.get(CRASH_DELAY_ENV, "10")) / 1000
            threading.Timer(delay, _die, (f"vend_sent:{plan[1]}",)).start()
        result = send(job)
        crash_point("vend_result")
        return result

    _set(persistence, "commit", crashing_commit)
    _set(persistence, "checkout", crashing_checkout)
    _set(worker, "send", crashing_send)
    return True


def _set(obj: object, name: str, fn: Callable[..., Any]) -> None:
    setattr(obj, name, fn)
