"""`kiosk run` and `kiosk ledger verify`: thin CLI over kiosk.app and the ledger repository.

Owns: argument parsing and exit codes of these two commands (0 ok, 1 not ok, 2 usage/config).
Never decides anything the library does not already decide; `--test-payments` is test-only.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kiosk.config import KioskConfig, load_config, resolve_config_path
from kiosk.log import setup_logging

__all__ = ["cmd_ledger_verify", "cmd_run", "register"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
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
    run.set_defaults(func=cmd_run)

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
    from kiosk.app import TestPaymentSource, run

    cfg = _load(args)
    if args.script and not args.headless:
        print("kiosk run: --script needs --headless", file=sys.stderr)
        return EXIT_USAGE
    if args.pay_via_province and (args.test_payments or not args.script):
        print(
            "kiosk run: --pay-via-province needs --script and excludes --test-payments",
            file=sys.stderr,
        )
        return EXIT_USAGE
    source = TestPaymentSource() if args.test_payments else None
    if source is not None:
        print("TEST PAYMENTS: confirmations are signed by a throwaway local key", file=sys.stderr)

    def say(text: str) -> None:
        print(text, flush=True)

    return run(
        cfg,
        args.headless,
        source,
        script=args.script,
        say=say,
        timeout=args.timeout,
        pay_via_province=args.pay_via_province,
    )


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from kiosk.store import open_store
    from kiosk.store.orders import OrderRepo

    cfg = _load(args)
    store = open_store(cfg.store.data_dir)
    try:
        repo = OrderRepo(store)
        n = len(repo.ledger())
        problems = repo.verify_ledger()
    finally:
        store.close()
    if problems:
        print(f"ledger: {n} records, {len(problems)} problem(s)")
        for p in problems:
            print(f"  {p if isinstance(p, str) else f'seq {p.seq}: {p.kind.value}: {p.detail}'}")
        return EXIT_FAIL
    print(f"ledger: {n} records, chain intact")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m kiosk.cli_run run ...` / `... ledger verify` (before kiosk/cli.py wires it)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="kiosk", parents=[common])
    register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(argv)
    setup_logging("debug" if getattr(args, "verbose", 0) else "info")
    from kiosk.config import ConfigError

    try:
        code: int = args.func(args)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
