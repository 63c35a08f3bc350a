"""The kiosk whose store cannot be opened: stays up, out of service, says why, tells the province.

Owns: `run_degraded`, what `kiosk run` does instead of selling when `open_store` fails (a corrupt
database moved aside, a moved-aside database whose marker is missing, a schema newer than this
software, a full or unwritable disk). It keeps the process up, so systemd sees a running service
and not a crash loop; it shows the out-of-service screen with a service code that names the
command to run; it logs that command; and when the province link is configured it connects with
a store held in memory and sends one alarm and the reported state (not selling, and why).
Must never write the data directory: the technician's evidence stays exactly as it was.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import __version__, systemd
from kiosk import contract as ui
from kiosk.clock import Clock, SystemClock
from kiosk.config import KioskConfig
from kiosk.log import log_event
from kiosk.store import SchemaTooNew, Store, StoreCorrupt
from kiosk.store.connection import Database
from kiosk.store.migrations import migrate

if TYPE_CHECKING:
    from kiosk.sync.acks import AckVerifier

__all__ = ["StoreProblem", "classify_store_error", "run_degraded"]

log = logging.getLogger("kiosk.degraded")


@dataclass(frozen=True, slots=True)
class StoreProblem:
    """Why the store cannot be used, for the screen (reason key, service code), the log and the
    province (alarm kind), and what the technician runs."""

    reason_key: str  # ui.OUT_OF_SERVICE_KEYS
    code: str  # shown on the out-of-service screen and in the alarm
    action: str  # what to run, in the technician's words
    detail: str

    @property
    def screen_code(self) -> str:
        return f"{self.code}: {self.action}"


def classify_store_error(e: BaseException, data_dir: Path) -> StoreProblem:
    detail = " ".join(str(e).split())[:400]
    if isinstance(e, StoreCorrupt):
        return StoreProblem(
            "store_corrupt",
            "STORE_CORRUPT",
            "kiosk store recover",
            detail,
        )
    if isinstance(e, SchemaTooNew):
        return StoreProblem(
            "storage_error", "STORE_TOO_NEW", "install the newer kiosk version again", detail
        )
    full = "full" in detail.lower() or "no space" in detail.lower()
    return StoreProblem(
        "disk_low" if full else "storage_error",
        "DISK_FULL" if full else "STORE_UNAVAILABLE",
        f"free space on {data_dir}" if full else f"check {data_dir} (disk, permissions)",
        detail,
    )


class _StaticController:
    """The UI's controller when there is nothing to sell: one out-of-service view, intents
    ignored (there is no store to record anything in)."""

    def __init__(self, view: ui.ViewState) -> None:
        self._view = view

    def post(self, intent: object) -> None:
        log_event(log, "degraded.intent_ignored", intent=type(intent).__name__)

    def view(self) -> ui.ViewState:
        return self._view

    def set_notify(self, notify: Callable[[], None]) -> None:
        pass


def _memory_store(data_dir: Path, clock: Clock) -> Store:
    """A store in memory, only for the outbox of the alarm and the reported state."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    migrate(conn, clock=clock)
    return Store(Database(conn, clock), data_dir)


def _tell_province(config: KioskConfig, problem: StoreProblem, clock: Clock) -> Any:
    """Connect and queue one alarm and the reported state; returns the started client (or None
    when no province link is configured)."""
    from kiosk.sync import messages
    from kiosk.sync.client import SyncClient, sync_problem
    from kiosk.sync.outbox import Outbox, Priority
    from kiosk.sync.records import alarm_severity
    from kiosk.sync.topics import Topics

    why = sync_problem(config.sync)
    if why is not None:
        log_event(log, "sync.off", reason=why)
        return None
    kiosk_id = config.identity.kiosk_id
    store = _memory_store(config.store.data_dir, clock)
    topics = Topics(kiosk_id)
    outbox = Outbox(store, topics, clock, ack_timeout_s=config.sync.ack_timeout_s)
    # the same problem gives the same event id on every start: the province keeps one alarm
    digest = hashlib.sha256(f"{problem.code}|{problem.detail}".encode()).hexdigest()[:16]
    alarm = messages.alarm(
        problem.code,
        f"{problem.detail} -> technician: {problem.action}",
        alarm_severity(problem.code),
        reason=problem.reason_key,
        action=problem.action,
    )
    outbox.append("alarm", alarm, Priority.HIGH, event_id=f"alarm-{kiosk_id}-store-{digest}")
    outbox.append(
        "reported",
        messages.reported_state(
            applied_versions={},
            stock={},
            software_version=__version__,
            selling=False,
            out_of_service_reason=problem.reason_key,
        ),
        Priority.NORMAL,
    )
    client = SyncClient(
        config.sync,
        kiosk_id,
        outbox,
        topics,
        clock,
        lambda _t, _b: None,
        0,
        acks=_ack_verifier(config, kiosk_id),
    )
    client.start()
    return client


def _ack_verifier(config: KioskConfig, kiosk_id: str) -> AckVerifier | None:
    """Acks checked with the province key of the config (the store and its keyring are out of
    reach). Without a key (or one that does not load) no ack is trusted: the records are sent
    again at the next start, and the province keeps one copy."""
    from kiosk.sync.acks import AckVerifier
    from kiosk.sync.signing import load_public_key_pem

    path = config.sync.province_public_key
    if path is None:
        return None
    try:
        return AckVerifier.for_key(kiosk_id, load_public_key_pem(path))
    except (OSError, ValueError) as e:
        log_event(log, "sync.no_ack_key", logging.WARNING, error=repr(e))
        return None


def run_degraded(
    config: KioskConfig,
    error: BaseException,
    headless: bool,
    say: Callable[[str], None] = print,
    *,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Out of service until SIGTERM/SIGINT (or `stop`); returns 0 then (a clean stop)."""
    clock = clock or SystemClock()
    problem = classify_store_error(error, config.store.data_dir)
    log_event(
        log,
        "store.unusable",
        logging.ERROR,
        code=problem.code,
        action=problem.action,
        detail=problem.detail,
    )
    say(f"OUT OF SERVICE ({problem.code}): {problem.detail}")
    say(f"technician: run `{problem.action}` (docs/technician-guide.md, 'Store problems')")
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: stop.set())
    client = _tell_province(config, problem, clock)
    view = ui.ViewState(
        seq=1,
        mode="out_of_service",
        service_phone=config.ui.service_phone,
        out_of_service=ui.OutOfServiceView(problem.reason_key, code=problem.screen_code),
    )
    systemd.notify_ready(f"kiosk {config.identity.kiosk_id} OUT OF SERVICE: {problem.code}")
    beat = threading.Thread(target=_watchdog, args=(stop,), name="degraded-watchdog", daemon=True)
    beat.start()
    try:
        if headless:
            stop.wait()
        else:
            _show(config, view, stop)
    finally:
        systemd.notify_stopping()
        if client is not None:
            client.stop()
    return 0


def _watchdog(stop: threading.Event) -> None:
    interval = systemd.watchdog_interval()
    every = interval / 2 if interval else 5.0
    while not stop.wait(every):
        systemd.notify_watchdog()


def _show(config: KioskConfig, view: ui.ViewState, stop: threading.Event) -> None:
    from kiosk.ui.app import run as run_ui

    threading.Thread(target=_quit_ui_on, args=(stop,), name="degraded-stop", daemon=True).start()
    run_ui(_StaticController(view), config.ui, SystemClock(), kiosk_mode=config.ui.fullscreen)


def _quit_ui_on(stop: threading.Event) -> None:
    """A full-screen UI ignores QUIT (kiosk mode); nothing here holds state worth a slow exit."""
    import os

    import pygame

    stop.wait()
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    threading.Event().wait(2.0)
    systemd.notify_stopping()
    os._exit(0)
