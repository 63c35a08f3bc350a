"""The dispense worker: the only thread that talks to the board about vends.

Owns: carrying out Vend / Unlock (after checking the tx is fresh), OUTCOME queries until an
answer is final, and technician test vends; every answer goes back to the controller's inbox.
The re-vend rule itself is pure (`kiosk.core.revend`); this module only asks the board the two
questions it needs (our tx, and the anchor).

Never: sends a tx the board already knows; resends a vend (an unknown outcome is asked with
OUTCOME); decides what an outcome means for the order (that is `kiosk.core.sale`).
Crash tests (kiosk.controller.crashpoints) wrap `send` of an instance.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from kiosk.clock import Clock
from kiosk.controller.inbox import (
    Call,
    Job,
    QueryJob,
    Reported,
    TestDone,
    TestJob,
    Unknown,
    VendJob,
)
from kiosk.controller.persist import ANCHOR, STORE_ERRORS
from kiosk.core import revend, sale
from kiosk.core.planogram import Planogram
from kiosk.hardware.board import (
    BoardDriver,
    BoardError,
    BoardOffline,
    BoardProtocolError,
    BoardRejected,
    SlotChecker,
    VendTimeout,
)
from kiosk.hardware.board import BoardVendResult as BoardResult
from kiosk.hardware.protocol import Outcome
from kiosk.log import log_event
from kiosk.store import Store

log = logging.getLogger("kiosk.controller")

_RUNNING = frozenset({Outcome.ACCEPTED, Outcome.IN_PROGRESS})
# The board keeps these in its outcome memory (a reported one can be an anchor).
RECORDED = frozenset(
    {
        Outcome.DELIVERED,
        Outcome.NOTHING_DROPPED,
        Outcome.JAMMED,
        Outcome.MOTOR_MISSING,
        Outcome.DOOR_OPENED_AND_CLOSED,
        Outcome.DOOR_NOT_OPENED,
        Outcome.DOOR_NOT_CLOSED,
        Outcome.INTERRUPTED,
        Outcome.LOCK_FAILED,
    }
)


def core_outcome(o: Outcome) -> sale.VendOutcome:
    return sale.VendOutcome(o.name)


class DispenseWorker:
    def __init__(
        self,
        board: BoardDriver,
        store: Store,
        clock: Clock,
        planogram: Callable[[], Planogram],
        post: Callable[[object], None],
        on_tx_in_use: Callable[[VendJob, Outcome], None],
        stop: threading.Event,
        *,
        vend_timeout_s: float,
        unlock_timeout_s: float,
        query_retry_s: float,
    ) -> None:
        self.board = board
        self.store = store
        self.clock = clock
        self._planogram = planogram
        self._post = post
        self._on_tx_in_use = on_tx_in_use
        self._stop = stop
        self.vend_timeout_s = vend_timeout_s
        self.unlock_timeout_s = unlock_timeout_s
        self.query_retry_s = query_retry_s
        self.jobs: queue.Queue[Job | None] = queue.Queue()

    def run(self) -> None:
        while not self._stop.is_set():
            job = self.jobs.get()
            if job is None:
                return
            try:
                if isinstance(job, VendJob):
                    self._vend(job)
                elif isinstance(job, QueryJob):
                    self._query(job.order_id, job.slot_no, job.tx)
                else:
                    self._test(job)
            except Exception:
                log.exception("dispense.failed")
                if isinstance(job, VendJob | QueryJob):
                    self._post(Unknown(job.order_id, job.tx))

    def send(self, job: VendJob) -> BoardResult:
        """The vend (or locker unlock) itself: the motor may run from here on."""
        if job.locker:
            return self.board.unlock(job.slot_no, job.tx, self.unlock_timeout_s)
        return self.board.vend(job.slot_no, job.tx, self.vend_timeout_s)

    def _vend(self, job: VendJob) -> None:
        if not self._tx_is_fresh(job):
            return
        try:
            r = self.send(job)
        except BoardRejected as e:
            log_event(log, "dispense.rejected", logging.WARNING, tx=job.tx, error=str(e))
            self._post(
                Reported(job.order_id, job.tx, job.slot_no, sale.VendOutcome.REFUSED_FAULT, False)
            )
            return
        except (VendTimeout, BoardProtocolError) as e:
            log_event(log, "dispense.unknown", logging.WARNING, tx=job.tx, error=str(e))
            self._query(job.order_id, job.slot_no, job.tx)
            return
        except BoardOffline as e:
            log_event(log, "dispense.offline", logging.WARNING, tx=job.tx, error=str(e))
            self._post(Unknown(job.order_id, job.tx))
            return
        recorded = r.outcome in RECORDED
        self._post(Reported(job.order_id, job.tx, job.slot_no, core_outcome(r.outcome), recorded))

    def _tx_is_fresh(self, job: VendJob) -> bool:
        """Before a tx first leaves: the board must not already know it. A board remembers the
        tx ids of earlier stores (and of another cabinet, if it was swapped in); a VEND with such
        an id would be answered from that memory without running a motor. The store epoch and
        counter re-basing make this practically impossible; this check makes it certain. A
        known tx is never sent: the line is retried with its next tx and an alarm is raised."""
        try:
            known = self.board.outcome(job.tx)
        except BoardError as e:
            log_event(log, "dispense.offline", logging.WARNING, tx=job.tx, error=str(e))
            self._post(Unknown(job.order_id, job.tx))
            return False
        if known is Outcome.UNKNOWN_TX:
            return True
        log_event(log, "dispense.tx_known_to_board", logging.ERROR, tx=job.tx, outcome=known.name)
        self._post(Call(lambda: self._on_tx_in_use(job, known)))
        return False

    def _query(self, order_id: str, slot_no: int, tx: int) -> None:
        """OUTCOME(tx) until it is final (or a running answer after the vend timeout)."""
        deadline = self.clock.monotonic() + self.vend_timeout_s
        offline_since: float | None = None
        while not self._stop.is_set():
            try:
                found = self.board.outcome(tx)
                offline_since = None
            except BoardError as e:
                now = self.clock.monotonic()
                offline_since = now if offline_since is None else offline_since
                if now - offline_since >= self.query_retry_s:
                    log_event(log, "dispense.query_offline", logging.WARNING, tx=tx, error=str(e))
                    self._post(Unknown(order_id, tx))
                    return
                self._stop.wait(0.5)
                continue
            if found in _RUNNING and self.clock.monotonic() < deadline:
                self._stop.wait(0.25)
                continue
            answer = core_outcome(found)
            anchor = self._anchor_answer(slot_no) if revend.needs_proof(answer) else None
            verdict = revend.queried_verdict(answer, anchor)
            log_event(log, "dispense.queried", tx=tx, outcome=found.name, verdict=verdict.value)
            self._post(Reported(order_id, tx, slot_no, verdict, found in RECORDED))
            return

    def _anchor_answer(self, slot_no: int) -> sale.VendOutcome | None:
        """What the board says about our anchor on the slot's board (None: cannot tell)."""
        s = self._planogram().slots.get(slot_no)
        if s is None:
            return None
        try:
            text = self.store.settings.get(f"{ANCHOR}{s.board}")
            if text is None:
                return None
            return core_outcome(self.board.outcome(int(text)))
        except (BoardError, ValueError, *STORE_ERRORS):
            return None

    def _test(self, job: TestJob) -> None:
        if job.kind == "check":
            self._post(TestDone(job.tx, job.slot_no, self._check(job.slot_no), False))
            return
        try:
            if job.kind == "unlock":
                r = self.board.unlock(job.slot_no, job.tx, self.unlock_timeout_s)
            else:
                r = self.board.test_slot(job.slot_no, job.tx, self.vend_timeout_s)
            outcome, delivered = r.outcome.name, r.delivered
        except BoardError as e:
            outcome, delivered = f"error: {e}", False
        self._post(TestDone(job.tx, job.slot_no, outcome, delivered))

    def _check(self, slot_no: int) -> str:
        """A slot looked at without running it: READY or why not (SlotCheck.state)."""
        if not isinstance(self.board, SlotChecker):
            return "NO_ANSWER"
        try:
            (found,) = self.board.check_slots([slot_no], 5.0)
        except BoardError as e:
            log_event(log, "dispense.check_failed", logging.WARNING, slot=slot_no, error=str(e))
            return "NO_ANSWER"
        return found.state
