"""The `kiosk` command: run the kiosk and the tools around it.

Owns: argument parsing and exit codes. Each subcommand is a thin function over the library;
nothing here decides anything a test of the library would not already cover.
Exit codes: 0 ok, 1 the thing checked is not ok, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import shutil
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import __version__, exitcodes
from kiosk.cli_words import install as install_words
from kiosk.config import ConfigError, KioskConfig, load_config, resolve_config_path
from kiosk.log import log_event, setup_logging
from kiosk.textfile import (
    TextFileError,
    read_text,
    say,
    say_csv_row,
    say_os_error,
    say_store_error,
    use_lang,
)

if TYPE_CHECKING:
    from kiosk.store import Store

log = logging.getLogger("kiosk.cli")


Handler = Callable[[argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $KIOSK_CONFIG, else /etc/kiosk/kiosk.toml)",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="kiosk",
        description="Edge software for poverty-alleviation smart vending kiosks.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    parser.add_argument(
        "--lang",
        dest="msg_lang",
        choices=("zh", "en"),
        help="language of this command's messages (default: $KIOSK_LANG, else the locale)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cfg = sub.add_parser("config", help="check the configuration", parents=[common])
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    chk = cfg_sub.add_parser(
        "check", help="validate the config and print every problem", parents=[common]
    )
    chk.set_defaults(func=cmd_config_check)

    cat = sub.add_parser("catalog", help="the product catalog", parents=[common])
    cat_sub = cat.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    summ = cat_sub.add_parser(
        "summary", help="summarize the catalog in the store (or the demo catalog)", parents=[common]
    )
    summ.add_argument("--demo", action="store_true", help="summarize the built-in demo catalog")
    summ.set_defaults(func=cmd_catalog_summary)

    pg = sub.add_parser("planogram", help="import / export the planogram as CSV", parents=[common])
    pg_sub = pg.add_subparsers(dest="planogram_command", metavar="ACTION", required=True)
    imp = pg_sub.add_parser(
        "import", help="apply a planogram CSV (all or nothing)", parents=[common]
    )
    imp.add_argument("csv", type=Path)
    imp.add_argument(
        "--allow-drop-stocked",
        action="store_true",
        help="allow removing slots that still hold stock (you took the items out)",
    )
    imp.set_defaults(func=cmd_planogram_import)
    exp = pg_sub.add_parser("export", help="write the planogram as CSV", parents=[common])
    exp.add_argument("--out", type=Path, help="file to write (default: standard output)")
    exp.set_defaults(func=cmd_planogram_export)

    st = sub.add_parser("store", help="the on-disk store", parents=[common])
    st_sub = st.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    seed = st_sub.add_parser(
        "seed-demo", help="load the demo catalog, planogram, stock and images", parents=[common]
    )
    seed.set_defaults(func=cmd_store_seed_demo)
    rec = st_sub.add_parser(
        "recover",
        help="after a corrupt database was moved aside: salvage it into a fresh store",
        parents=[common],
    )
    rec.set_defaults(func=cmd_store_recover)
    chk = st_sub.add_parser(
        "check",
        help="the start-up integrity check: ledger chain and every order's money rules",
        parents=[common],
    )
    chk.add_argument(
        "--accept",
        action="store_true",
        help="record the problems found as known (after the province confirmed its copies), "
        "so they no longer stop sales; new problems still do",
    )
    chk.set_defaults(func=cmd_store_check)
    for register in _plugin_registrars():
        register(sub, common)
    return parser


def _plugin_registrars() -> list[Callable[[Any, argparse.ArgumentParser], None]]:
    """Subcommands that live beside the code they drive (board tools, emulator, simulators).
    The simulator's commands come through kiosk.sim.commands, the one module of kiosk.sim this
    file may import (import-linter contract in pyproject.toml)."""
    from kiosk.cli_run import register as register_run
    from kiosk.hardware.cli_board import register as board
    from kiosk.sim.commands import registrars as sim_registrars
    from kiosk.sim.commands import test_run
    from kiosk.update.cli_update import register as update_tools

    def run(sub: Any, common: argparse.ArgumentParser) -> None:
        register_run(sub, common, test_run)  # `kiosk run --test-payments / --script buy3`

    def board_tools(sub: Any, common: argparse.ArgumentParser) -> None:
        board(sub, common, on_selftest=_queue_board_selftest, build_cabinet=_build_cabinet)

    return [run, board_tools, update_tools, *sim_registrars()]


def _build_cabinet(*args: Any, **kwargs: Any) -> Any:
    """kiosk.app.build_cabinet, imported when `kiosk board` needs it: the kiosk's own
    composition of links and drivers, whatever the protocol."""
    from kiosk.app import build_cabinet

    return build_cabinet(*args, **kwargs)


def _queue_board_selftest(
    args: argparse.Namespace, started_at: float, finished_at: float, results: list[Any]
) -> str | None:
    """`kiosk board selftest`'s result as an `events/selftest` record (source "cli") in the
    store of the kiosk config (`--config`, $KIOSK_CONFIG or the default file; none: nothing
    queued). Safe while the kiosk runs (it sends it); else sent at its next start."""
    path = _config_path(args)
    if not path.exists():
        explicit = getattr(args, "config", None) is not None
        return say("selftest_not_queued", error=say("not_found", file=path)) if explicit else None
    try:
        from kiosk.clock import SystemClock
        from kiosk.sync.outbox import Outbox
        from kiosk.sync.records import append_selftest, board_slot_results, selftest_body
        from kiosk.sync.topics import Topics

        cfg = load_config(path)
        store = _open_store(cfg)
        try:
            slot_map = {(s.board, s.address): s.slot_no for s in store.planogram.load()}
            body = selftest_body(
                source="cli",
                started_at=started_at,
                finished_at=finished_at,
                slots=board_slot_results(args.address, results, slot_map),
            )
            outbox = Outbox(store, Topics(cfg.identity.kiosk_id), SystemClock())
            event_id = append_selftest(store, outbox, cfg.identity.kiosk_id, body)
        finally:
            store.close()
    except Exception as e:  # the printed result stands; say why it was not queued
        return say("selftest_not_queued", error=f"{type(e).__name__}: {e}")
    return say("selftest_queued", id=event_id)


# --- helpers ----------------------------------------------------------------------------------


def _config_path(args: argparse.Namespace) -> Path:
    return resolve_config_path(getattr(args, "config", None))


def _load(args: argparse.Namespace) -> KioskConfig:
    cfg = load_config(_config_path(args))
    if not getattr(args, "verbose", 0):
        setup_logging(cfg.logging.level, cfg.logging.format)
    return cfg


def _open_store(cfg: KioskConfig) -> Store:
    from kiosk.store import open_store

    return open_store(cfg.store.data_dir)


# --- commands ---------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    from kiosk.config import device_secret_problems, field_problems

    path = _config_path(args)
    try:
        cfg = load_config(path)
        secret = None  # unreadable (not root): `kiosk run` checks it again
        if cfg.payments.device_secret_file is not None:
            with contextlib.suppress(OSError):
                secret = cfg.payments.device_secret_file.read_bytes()
        # what `kiosk run` needs besides: the device secret, set and well formed
        issues = device_secret_problems(cfg, secret) + field_problems(cfg, device_secret=secret)
        if issues:
            raise ConfigError(issues)
    except ConfigError as e:
        print(say("config_problems", file=path, n=len(e.issues)), file=sys.stderr)
        for issue in e.issues:
            print(f"  {issue}", file=sys.stderr)
        return exitcodes.FAIL
    ident, hw = cfg.identity, cfg.hardware
    print(say("check_ok", file=path))
    print(
        say(
            "check_kiosk",
            kiosk_id=ident.kiosk_id,
            site=ident.site_name,
            site_type=ident.site_type.value,
            area=ident.area_code,
        )
    )
    if cfg.boards:  # [[board]]: a protocol and port per board
        print(say("check_cabinet", cabinet=hw.cabinet, rows=hw.rows, cols=hw.cols))
        for b in sorted(cfg.boards, key=lambda b: b.address):
            fields = {"address": b.address, "protocol": b.protocol, "port": b.port}
            print(say("check_board", baud=b.baud, **fields))
    else:
        fields = {"cabinet": hw.cabinet, "rows": hw.rows, "cols": hw.cols, "port": hw.port}
        print(say("check_cabinet_port", baud=hw.baud, boards=list(hw.boards), **fields))
    print(say("check_broker", url=cfg.sync.broker_url, version=cfg.sync.mqtt_version))
    ui = cfg.ui
    screen = {"width": ui.width, "height": ui.height, "orientation": ui.orientation}
    print(say("check_screen", language=ui.language, **screen))
    print(say("check_data_dir", dir=cfg.store.data_dir))
    return exitcodes.OK


def cmd_catalog_summary(args: argparse.Namespace) -> int:
    from kiosk.core.catalog import catalog_summary

    if args.demo:
        from kiosk.sim.commands import demo_catalog

        print(catalog_summary(demo_catalog()))
        return exitcodes.OK
    cfg = _load(args)
    store = _open_store(cfg)
    try:
        catalog = store.catalog.load()
    finally:
        store.close()
    if len(catalog) == 0:
        print(say("no_catalog"))
        return exitcodes.FAIL
    print(catalog_summary(catalog))
    return exitcodes.OK


def cmd_planogram_import(args: argparse.Namespace) -> int:
    from kiosk.core.planogram import PlanogramCsvError, PlanogramError, planogram_from_csv

    cfg = _load(args)
    try:  # UTF-8 with or without BOM, or GBK (Excel on a Chinese Windows)
        text = read_text(args.csv, allow_gbk=True)
    except TextFileError as e:
        print(e.message(), file=sys.stderr)
        return exitcodes.USAGE
    store = _open_store(cfg)
    try:
        catalog = store.catalog.load()
        version = store.planogram.load().version + 1
        try:
            planogram = planogram_from_csv(text, version, catalog.products)
        except PlanogramCsvError as e:
            print(say("csv_rejected", file=args.csv), file=sys.stderr)
            for err in e.errors:
                print(
                    f"  {say_csv_row(err.row, err.message, err.key, err.params)}", file=sys.stderr
                )
            return exitcodes.FAIL
        try:
            store.planogram.replace(planogram, allow_drop_stocked=args.allow_drop_stocked)
        except (PlanogramError, ValueError) as e:
            print(say("csv_rejected_why", file=args.csv, error=e), file=sys.stderr)
            return exitcodes.FAIL
    finally:
        store.close()
    # the line below is the terminal's record; the event only with -v (not said twice)
    log_event(
        log,
        "planogram.imported",
        _level=logging.DEBUG,
        file=str(args.csv),
        version=version,
        slots=len(planogram),
    )
    print(say("planogram_applied", version=version, n=len(planogram)))
    return exitcodes.OK


def cmd_planogram_export(args: argparse.Namespace) -> int:
    from kiosk.core.planogram import planogram_to_csv

    cfg = _load(args)
    store = _open_store(cfg)
    try:
        names = {p.product_id: p.name_zh for p in store.catalog.load()}
        text = planogram_to_csv(store.planogram.load(), names)
    finally:
        store.close()
    if args.out:  # with a BOM, so that Excel shows the Chinese names (import accepts both)
        args.out.write_text(text, encoding="utf-8-sig")
    else:
        sys.stdout.write(text)
    return exitcodes.OK


def cmd_store_seed_demo(args: argparse.Namespace) -> int:
    from kiosk.core.planogram import SlotKind
    from kiosk.store import StoreError

    cfg = _load(args)
    kind = SlotKind(cfg.hardware.cabinet)
    try:
        return _seed_demo(cfg, kind)
    except (StoreError, sqlite3.Error, OSError) as e:
        free = _free_mb(cfg.store.data_dir)
        full = "full" in str(e).lower() or getattr(e, "errno", None) in (errno.ENOSPC, errno.EFBIG)
        key = "seed_disk_full" if full else "seed_unwritable"
        print(say(key, dir=cfg.store.data_dir, free=free, error=e), file=sys.stderr)
        return exitcodes.FAIL


def _free_mb(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(path).free / 1e6:.1f}"
    except OSError:
        return "?"


def _seed_demo(cfg: KioskConfig, kind: Any) -> int:
    from kiosk.sim.commands import seed_demo

    store = _open_store(cfg)
    try:
        catalog, slots, images = seed_demo(store, cfg.store.data_dir / "images", kind)
    finally:
        store.close()
    print(
        f"demo data loaded into {cfg.store.data_dir}: {len(catalog)} products, "
        f"{slots} {kind.value} slots, {images} images"
    )
    return exitcodes.OK


def cmd_store_check(args: argparse.Namespace) -> int:
    import json
    import time

    from kiosk.controller import ACCEPTED_DAMAGE
    from kiosk.store.orders import OrderRepo

    cfg = _load(args)
    store = _open_store(cfg)
    try:
        recovered = store.identity().get("origin") == "recovered"
        t0 = time.monotonic()
        problems = OrderRepo(store).integrity_problems(from_first_row=recovered)
        took = time.monotonic() - t0
        accepted = store.settings.get_json(ACCEPTED_DAMAGE, [])
        known = set(accepted) if isinstance(accepted, list) else set()
        new = [p for p in problems if p not in known]
        if args.accept and problems:
            store.settings.set(ACCEPTED_DAMAGE, json.dumps(sorted(set(problems) | known)))
    finally:
        store.close()
    print(f"store check: problems: {len(problems)}, not accepted: {len(new)} ({took:.2f} s)")
    for p in problems:
        print(f"  {'accepted  ' if p in known else ''}{p}")
    if args.accept and new:
        print(f"problems accepted: {len(new)}; the kiosk sells again at its next start")
        return exitcodes.OK
    if new:
        print(
            "sales stay stopped: tell the province (it holds the acknowledged copies), "
            "then run `kiosk store check --accept`"
        )
        return exitcodes.FAIL
    return exitcodes.OK


def cmd_store_recover(args: argparse.Namespace) -> int:
    import json

    from kiosk.store import StoreError, open_store, recover_store

    cfg = _load(args)
    try:
        moved = recover_store(cfg.store.data_dir)
    except (StoreError, OSError) as e:
        print(say("recover_failed", error=e), file=sys.stderr)
        return exitcodes.FAIL
    if moved is None:
        print("the store is not marked corrupt; nothing to do")
        return exitcodes.OK
    with open_store(cfg.store.data_dir) as store:
        ident = store.identity()
    detail = json.loads(str(ident.get("detail") or "{}"))
    rows = {k: v for k, v in sorted(detail.get("rows", {}).items()) if v}
    print(f"the corrupt database stays at {moved} for analysis")
    print(
        f"new store epoch {ident.get('epoch')} (was {detail.get('previous_epoch') or 'unknown'});"
        " new order ids cannot repeat old ones"
    )
    if detail.get("readable"):
        carried = ", ".join(f"{k} {v}" for k, v in rows.items()) or "nothing"
        print(f"carried forward: {carried}")
        lost = detail.get("lost", {})
        if lost:
            print("unreadable, not carried: " + ", ".join(f"{k} {v}" for k, v in lost.items()))
    else:
        print(f"nothing could be read from the old file ({detail.get('error', '')})")
        print(
            "load the catalog and planogram again (the province resends its signed state; "
            "or kiosk planogram import), then count the stock"
        )
    c = detail.get("counters", {})
    print(
        f"order sequence continues at {c.get('order_seq', 0) + 1}, "
        f"outbox at {c.get('outbox_seq', 0) + 1}"
    )
    return exitcodes.OK


def main(argv: Sequence[str] | None = None) -> int:
    install_words(sys.argv[1:] if argv is None else argv)  # argparse's words too
    parser = build_parser()
    args = parser.parse_args(argv)
    use_lang(args.msg_lang)
    verbose = getattr(args, "verbose", 0) or 0
    setup_logging("debug" if verbose else "info")
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return exitcodes.USAGE
    try:
        return func(args)
    except ConfigError as e:
        print(say("config_problems", file=_config_path(args), n=len(e.issues)), file=sys.stderr)
        for issue in e.issues:
            print(f"  {issue}", file=sys.stderr)
        return exitcodes.USAGE
    except OSError as e:  # a path the user gave that cannot be read or written: no traceback
        if verbose:
            raise
        print(say_os_error(e), file=sys.stderr)
        return exitcodes.FAIL
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a corrupt or unusable store: said, no traceback
        from kiosk.store.errors import StoreError  # imported late: start-up stays light

        if verbose or not isinstance(e, (StoreError, sqlite3.Error)):
            raise
        print(say_store_error(e), file=sys.stderr)
        return exitcodes.FAIL


if __name__ == "__main__":
    sys.exit(main())
