"""The start-up integrity check: before the first sale, the books since the last verified mark
(the ledger chain and every paid order's money rules; the whole store the first time, or after
a recovery). A full check then runs in the background in small chunks, for damage older than
the mark.

Owns: the list of damage found and not accepted (`damage`: out of service `store_damaged`).
Never: sells on top of a damaged record; forgets a problem a technician did not accept with
`kiosk store check --accept` (settings key ACCEPTED_DAMAGE).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from kiosk.clock import Clock
from kiosk.controller.inbox import Call
from kiosk.controller.persist import STORE_ERRORS, Persistence
from kiosk.log import log_event
from kiosk.store import Store
from kiosk.store.orders import IntegrityMark, OrderRepo

log = logging.getLogger("kiosk.controller")

VERIFIED_THROUGH = "store.verified_through"  # settings key: IntegrityMark of the last check
ACCEPTED_DAMAGE = "store.accepted_damage"  # settings key: JSON list of problems a technician
# accepted with `kiosk store check --accept` (they no longer stop sales; new ones do)


class IntegrityCheck:
    def __init__(
        self,
        store: Store,
        repo: OrderRepo,
        persist: Persistence,
        clock: Clock,
        post: Callable[[object], None],
        stop: threading.Event,
    ) -> None:
        self.store = store
        self.repo = repo
        self.persist = persist
        self.clock = clock
        self._post = post
        self._stop = stop
        self.damage: list[str] = []  # problems found and not accepted

    def at_start(self) -> None:
        """On the controller thread, before recovery. A damaged record stops sales with an
        alarm, instead of selling on top of it; `kiosk store check` shows it."""
        t0 = self.clock.monotonic()
        try:
            recovered = self.store.identity().get("origin") == "recovered"
            mark = IntegrityMark.from_json(self.store.settings.get(VERIFIED_THROUGH))
            result = self.repo.check_integrity(mark, from_first_row=recovered)
        except STORE_ERRORS as e:
            self.persist.failed(e, "integrity_check")
            return
        log_event(
            log,
            "store.integrity_checked",
            scope="since mark" if mark is not None else "full",
            problems=len(result.problems),
            ms=round((self.clock.monotonic() - t0) * 1000),
        )
        self.found(result.problems)
        if not self.damage:
            with contextlib.suppress(*STORE_ERRORS):
                self.store.settings.set(VERIFIED_THROUGH, result.mark.to_json())
        if mark is not None:
            threading.Thread(
                target=self._full_check, args=(recovered,), name="kiosk-integrity", daemon=True
            ).start()

    def _full_check(self, recovered: bool) -> None:
        try:
            problems = self.repo.check_integrity(
                from_first_row=recovered, pause=lambda: self._stop.wait(0.02)
            ).problems
        except Exception:  # the store went away (stop) or failed: the next start checks again
            log.exception("store.full_check_failed")
            return
        log_event(log, "store.full_check_done", problems=len(problems))
        if problems:
            self._post(Call(lambda: self.found(problems)))

    def found(self, problems: list[str]) -> None:
        try:
            accepted = self.store.settings.get_json(ACCEPTED_DAMAGE, [])
        except STORE_ERRORS:
            accepted = []
        known = set(accepted) if isinstance(accepted, list) else set()
        new = [p for p in problems if p not in known and p not in self.damage]
        if not new:
            return
        self.damage.extend(new)
        log_event(
            log,
            "store.damaged",
            logging.ERROR,
            first=new[0],
            problems=len(self.damage),
            action="kiosk store check",
        )
        detail = f"{len(new)} damaged record(s), first: {new[0]}"
        self.persist.alarm_alone("store_damaged", "", detail, None)
