"""The kiosk without a screen: each view the controller publishes as one line of text.

Owns: `describe` (a view -> one line: what `kiosk run --headless` prints, and what the
simulator's scripted shopper prints) and `print_views`, the loop `kiosk run --headless` runs
until it is told to stop. Decides nothing; reads views only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from kiosk import contract as ui

__all__ = ["ViewSource", "changed", "describe", "print_views"]


class ViewSource(Protocol):
    """The controller, as far as watching its views goes."""

    def view(self) -> ui.ViewState: ...

    def wait_view(
        self, predicate: Callable[[ui.ViewState], bool], timeout: float
    ) -> ui.ViewState | None: ...


def describe(v: ui.ViewState) -> str:
    """One line for a view: its mode and what matters in that mode."""
    if v.mode == "payment" and v.payment is not None:
        return f"payment: order {v.payment.order_id}, {v.payment.amount_fen} fen"
    if v.mode == "dispensing" and v.dispensing is not None:
        return "dispensing: " + ", ".join(
            f"{i.product_id}@{i.slot_no}={i.status}" for i in v.dispensing.items
        )
    if v.mode == "done" and v.done is not None:
        return f"done: order {v.done.order_id}, paid {v.done.paid_fen} fen"
    if v.mode == "problem" and v.problem is not None:
        return (
            f"problem: {v.problem.message_key}, refund {v.problem.refund_fen} fen "
            f"via {v.problem.refund_channel} (order {v.problem.order_id})"
        )
    if v.mode == "out_of_service" and v.out_of_service is not None:
        return f"out of service: {v.out_of_service.reason_key}"
    return f"{v.mode}: cart {v.cart_count} items, {v.cart_total_fen} fen"


def changed(seq: int) -> Callable[[ui.ViewState], bool]:
    """A `wait_view` predicate: any view newer than `seq`."""
    return lambda v: v.seq != seq


def print_views(views: ViewSource, say: Callable[[str], None], stop: threading.Event) -> None:
    """`say` each new view until `stop` is set."""
    last = -1
    while not stop.is_set():
        v = views.view()
        if v.seq != last:
            say(describe(v))
            last = v.seq
        views.wait_view(changed(v.seq), 1.0)
