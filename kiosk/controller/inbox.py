"""What travels on the controller's two queues: inbox items (to the controller thread) and
dispense jobs (to the worker thread). Plain data; no behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kiosk.core import sale
from kiosk.core.payment import PaymentConfirmation, PaymentStatusReply
from kiosk.hardware.board import BoardEvent, BoardStatus

# --- inbox items ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Confirm:
    confirmation: PaymentConfirmation | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PaymentStatusItem:
    reply: PaymentStatusReply


@dataclass(frozen=True, slots=True)
class Reported:
    order_id: str
    tx: int
    slot_no: int
    outcome: sale.VendOutcome
    recorded: bool  # the board keeps this tx in its outcome memory (anchor candidate)


@dataclass(frozen=True, slots=True)
class Unknown:
    """The board could not be asked about `tx` (offline): suspend, ask again later."""

    order_id: str
    tx: int


@dataclass(frozen=True, slots=True)
class Health:
    online: bool
    status: BoardStatus | None
    reason: str


@dataclass(frozen=True, slots=True)
class SensorPoll:
    """One poll of the cabinet's temperature sensor (kiosk.controller.monitor)."""

    celsius: float | None  # None: the probe failed (or see `error`)
    humidity_pct: float | None
    error: str = ""  # the sensor did not answer


@dataclass(frozen=True, slots=True)
class Event:
    event: BoardEvent


@dataclass(frozen=True, slots=True)
class TestDone:
    tx: int
    slot_no: int
    outcome: str
    delivered: bool


@dataclass(slots=True)
class Call:
    fn: Callable[[], object]
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()


class Recover:
    pass


class Stop:
    pass


# --- dispense jobs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VendJob:
    order_id: str
    slot_no: int
    tx: int
    locker: bool


@dataclass(frozen=True, slots=True)
class QueryJob:
    order_id: str
    slot_no: int
    tx: int


@dataclass(frozen=True, slots=True)
class TestJob:
    tx: int
    slot_no: int
    kind: str  # "test" (test_slot), "unlock" (open a locker door), "check" (nothing runs)


Job = VendJob | QueryJob | TestJob
