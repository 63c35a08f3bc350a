"""`kiosk run` and `kiosk ledger verify`: the command line, and the run of the kiosk.

Owns: argument parsing and exit codes of these two commands (0 ok, 1 not ok, 2 usage/config,
3 records left unacknowledged after a script),
and `run()`: the kiosk (kiosk.app) until SIGINT/SIGTERM or a `restart_app` command (exit code
EXIT_RESTART), systemd readiness, the UI or the headless view log (kiosk.headless), or a
headless script to its end; a store that cannot be opened runs kiosk/degraded.py instead.

Test features (`--test-payments`, `--script buy3`, `--pay-via-province`) are the simulator's:
the test payment signer and the scripted shopper live in kiosk.sim (kiosk/sim/shopper.py) and
production code never imports them. kiosk/cli.py, the one module allowed through the door
(kiosk/sim/commands.py), hands `register` their entry point (`test_run`: the arguments -> the
key to trust and the script to run); without it those options are a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from kiosk import exitcodes, systemd
from kiosk.app import UI_BEAT_S, App, Script, build_app
from kiosk.config import (
    KioskConfig,
    load_config,
    refuse_in_field,
    resolve_config_path,
    technicians,
)
from kiosk.headless import print_views
from kiosk.log import log_event, setup_logging
from kiosk.store import StoreError
from kiosk.sync.client import SyncConfigError, sync_problem
from kiosk.textfile import say as say_msg

__all__ = ["TestRun", "cmd_ledger_verify", "cmd_run", "register", "run"]

log = logging.getLogger("kiosk.run")

# SIGTERM/SIGINT must end `kiosk run` within 5 s (systemd's stop, every restart after an
# update): at most this long for the province's acks of the last records (they stay in the
# outbox otherwise and go at the next start), then at most about this long to stop the threads
STOP_DRAIN_S = 1.0
STOP_CLOSE_S = 2.5


Say = Callable[[str], None]
# the simulator's test features: (parsed `kiosk run` arguments, say) -> (key the controller
# trusts for payment confirmations, headless script); kiosk.sim.commands.test_run
TestRun = Callable[[argparse.Namespace, Say], tuple[bytes | None, Script | None]]


def register(sub: Any, common: argparse.ArgumentParser, test_run: TestRun | None = None) -> None:
    """Add `run` and `ledger verify` to the `kiosk` subcommands."""
    run = sub.add_parser("run", help="run the kiosk (UI, or --headless)", parents=[common])
    run.add_argument("--headless", action="store_true", help="no screen: log the views")
    run.add_argument(
        "--script",
        choices=("buy3",),
        help="headless scripted shopper: buy3 buys three items and exits",
    )
    run.add_argument(
        "--test-payments",
        action="store_true",
        help="TEST ONLY: trust a throwaway key and sign payment confirmations locally",
    )
    run.add_argument(
        "--pay-via-province",
        action="store_true",
        help="with --script: print the pay URL and wait for the province's real confirmation",
    )
    run.add_argument("--timeout", type=float, default=120.0, help="script timeout (seconds)")
    run.add_argument(
        "--ack-wait",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="with --script: how long to wait for the province to acknowledge every record "
        "(default 20; exit code 3 if some are still unacknowledged)",
    )
    run.set_defaults(func=cmd_run, test_run=test_run)

    led = sub.add_parser("ledger", help="the local sale ledger", parents=[common])
    led_sub = led.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    ver = led_sub.add_parser("verify", help="check the hash chain of the ledger", parents=[common])
    ver.set_defaults(func=cmd_ledger_verify)


def _load(args: argparse.Namespace) -> KioskConfig:
    cfg = load_config(resolve_config_path(getattr(args, "config", None)))
    if not getattr(args, "verbose", 0):
        setup_logging(cfg.logging.level, cfg.logging.format)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.script and not args.headless:
        print(say_msg("run_script_headless"), file=sys.stderr)
        return exitcodes.USAGE
    if args.pay_via_province and (args.test_payments or not args.script):
        print(say_msg("run_pay_via"), file=sys.stderr)
        return exitcodes.USAGE
    test_run: TestRun | None = getattr(args, "test_run", None)
    if (args.script or args.test_payments) and test_run is None:
        print(say_msg("run_script_cmd"), file=sys.stderr)
        return exitcodes.USAGE
    # a real province's config: no test payment signer (ConfigError: exit 2, nothing started)
    refuse_in_field(cfg, test_payments=args.test_payments)
    if args.test_payments:
        print(say_msg("test_payments"), file=sys.stderr)

    def say(text: str) -> None:
        print(text, flush=True)

    trust_key, script = (None, None)
    if test_run is not None and (args.script or args.test_payments):
        trust_key, script = test_run(args, say)
    return run(
        cfg, args.headless, script=script, trust_key=trust_key, say=say, drain_timeout=args.ack_wait
    )


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    """The hash chain, and that the ledger still holds the last record the province
    acknowledged, unchanged (kiosk.sync.ledger_head: a re-chained or cut ledger fails)."""
    from kiosk.core.ledger import ChainProblem
    from kiosk.store import open_store
    from kiosk.store.orders import OrderRepo
    from kiosk.sync.ledger_head import ACKED_HEAD, acked_head

    cfg = _load(args)
    store = open_store(cfg.store.data_dir)
    try:
        repo = OrderRepo(store)
        records = repo.ledger()
        problems: list[ChainProblem | str] = list(repo.verify_ledger())
        head = acked_head(store.settings.get(ACKED_HEAD))
    finally:
        store.close()
    n = len(records)
    if head is not None:
        seq, want = head
        held = [r.record_hash for r in records if r.seq == seq]
        if not held:
            problems.append(
                f"the province acknowledged record seq {seq} ({want[:16]}...) and the ledger "
                "no longer holds it: records were removed"
            )
        elif held[0] != want:
            problems.append(
                f"record seq {seq} is {held[0][:16]}..., the province acknowledged "
                f"{want[:16]}...: the ledger was rewritten after it was sent"
            )
    if problems:
        print(f"ledger: {n} records, problems: {len(problems)}")
        for p in problems:
            print(f"  {p if isinstance(p, str) else f'seq {p.seq}: {p.kind.value}: {p.detail}'}")
        return exitcodes.FAIL
    anchor = f"; matches the province's acknowledged seq {head[0]}" if head is not None else ""
    print(f"ledger: {n} records, chain intact{anchor}")
    return exitcodes.OK


# --- the run --------------------------------------------------------------------------------
def run(
    config: KioskConfig,
    headless: bool,
    *,
    script: Script | None = None,
    trust_key: bytes | None = None,
    say: Say = print,
    sync: bool | None = None,
    drain_timeout: float = 20.0,
) -> int:
    """`kiosk run`: the kiosk until SIGINT/SIGTERM (or a `restart_app` command, exit code
    EXIT_RESTART), or a headless `script` to its end (then waits at most `drain_timeout` for
    the province to acknowledge every record). `trust_key`: the controller trusts this key for
    payment confirmations instead of the config's (the test payment signer's).

    `sync`: None starts the province link when `config.sync` is usable (`sync_problem`), True
    requires it, False never starts it. A store that cannot be opened: kiosk/degraded.py.
    """
    refuse_in_field(config, test_payments=trust_key is not None)
    problem = sync_problem(config.sync) if sync is not False else "switched off"
    try:
        app = build_app(config, province_public_key=trust_key, sync=problem is None)
    except (StoreError, sqlite3.Error, OSError) as e:
        # invariant 5: out of service and saying why, never a traceback or a crash loop
        from kiosk.degraded import run_degraded

        if script is not None:
            say(f"kiosk run: the store cannot be opened: {e}")
            return 1
        return run_degraded(config, e, headless, say)
    if problem is not None:
        if sync:
            app.store.close()
            raise SyncConfigError(problem)
        log_event(log, "sync.off", reason=problem)
    unwatch = _watch_signals(app)
    app.start()
    app.start_watchdog()
    app.start_update_gate()
    systemd.notify_ready(f"kiosk {config.identity.kiosk_id} up")
    try:
        if script is not None:
            code = _run_script(app, script)
            if code is None:
                return app.exit_code  # stopped by a signal: a clean stop, like headless
            left = _drain(app, drain_timeout)
            if left is not None:
                say(f"outbox: {left} records not acknowledged by the province")
                if left and code == exitcodes.OK:
                    return exitcodes.UNREACHABLE
            return code
        if headless:
            say(f"kiosk {config.identity.kiosk_id} running headless; Ctrl-C stops")
            print_views(app.controller, say, app.stop_requested)
            _drain(app, min(drain_timeout, STOP_DRAIN_S))
            return app.exit_code
        return _run_ui(app)
    finally:
        systemd.notify_stopping()
        app.close(STOP_CLOSE_S)
        unwatch()
        time.sleep(0)  # let daemon threads notice


def _watch_signals(app: App) -> Callable[[], None]:
    """SIGINT/SIGTERM set `app.stop_requested` at once, whatever the main thread is doing.

    A Python signal handler runs only when the main thread next runs Python code; the UI's
    main thread sleeps inside `pygame.event.wait()` (C, for up to UI_BEAT_S). So the handler
    is only a fallback: the C-level handler writes the signal number to a wakeup fd (socket
    pair) and a thread reading it sets the event; whoever waits on it (the UI's exit watch,
    the headless view log, a script's runner) then stops. Returns the undo."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: app.stop_requested.set())
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    wanted = {int(signal.SIGINT), int(signal.SIGTERM)}

    def read() -> None:
        with reader:
            while True:
                try:
                    data = reader.recv(64)
                except OSError:
                    return
                if not data:
                    return  # the undo closed the writer
                if wanted.intersection(data):
                    log_event(log, "kiosk.stop_signal")
                    app.stop_requested.set()

    threading.Thread(target=read, name="signal-watch", daemon=True).start()

    def undo() -> None:
        with contextlib.suppress(ValueError):  # not the main thread any more: nothing to undo
            signal.set_wakeup_fd(previous)
        writer.close()

    return undo


def _run_script(app: App, script: Script) -> int | None:
    """Run a headless script in a thread until its end (its exit code) or a stop request
    (None): a signal stops a scripted kiosk as fast as any other; what the script had in
    flight is recovered at the next start (the scripted shopper resumes)."""
    result: list[int] = []
    done = threading.Event()

    def target() -> None:
        try:
            result.append(script(app.controller))
        except Exception:
            log.exception("the script failed")
        finally:
            done.set()
            app.stop_requested.set()

    threading.Thread(target=target, name="script", daemon=True).start()
    app.stop_requested.wait()
    if not done.is_set() or not result:
        return None if not done.is_set() else exitcodes.FAIL
    return result[0]


def _drain(app: App, timeout: float) -> int | None:
    """Stop reporting and wait for the province's acks; the records left (None: no link)."""
    if app.sync is None:
        return None
    app.sync.stop_reporting()
    return app.sync.wait_drained(timeout)


def _run_ui(app: App) -> int:
    from kiosk.sync.media import media_dir
    from kiosk.ui.app import run as run_ui
    from kiosk.ui.images import ProductImages

    # media: the UI's pictures include fetched images, reloaded as they arrive (decoded in the
    # sync bridge's report thread, not the UI's)
    data_dir = app.config.store.data_dir
    images = ProductImages(data_dir / "images", media_dir(data_dir))
    if app.sync is not None:
        from kiosk.ui.events import notify_images_changed

        app.sync.image_listeners.append(images.image_arrived)
        app.sync.image_listeners.append(lambda _sha: notify_images_changed())
    watch = threading.Thread(target=_exit_when_requested, args=(app,), name="exit-watch")
    watch.daemon = True
    watch.start()
    app.ui_heartbeat()  # the watchdog watches the UI loop from here on
    ui_config = app.config.ui
    run_ui(
        app.controller,
        ui_config,
        app.clock,
        kiosk_mode=ui_config.fullscreen,
        images=images,
        heartbeat=app.ui_heartbeat,
        heartbeat_every_s=UI_BEAT_S,
        stop=app.stop_requested,
        technicians=technicians(app.config),
    )
    return app.exit_code


def _exit_when_requested(app: App) -> None:
    """With a UI on screen: on a signal, wake the UI loop and make it leave (in kiosk mode
    too; `run()` then closes the app); on a `restart_app` command, stop the link and the
    controller, then leave the process."""
    from kiosk.ui.app import request_stop

    app.stop_requested.wait()
    if app.exit_code == 0:
        request_stop()
        return
    with contextlib.suppress(Exception):
        systemd.notify_stopping()
        if app.sync is not None:
            app.sync.stop()
        app.controller.stop()
    os._exit(app.exit_code)
