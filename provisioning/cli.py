"""`kiosk-provision`: the field technician's tool to set a kiosk up.

Owns: the technician-facing command line (init, pin, keys, register, selftest, status,
label, planogram, install-service) and nothing else: each subcommand lives in its own module, and
subcommands that touch shared state (planogram, store) reuse the `kiosk` library functions;
nothing is implemented twice.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Sequence

from kiosk import __version__, exitcodes
from kiosk.cli_words import install as install_words
from kiosk.log import formatter
from kiosk.store.errors import StoreError
from kiosk.textfile import say_os_error, say_store_error, use_lang
from provisioning import init, keys, label, pins, register, selftest, service, status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk-provision",
        description="Set up a kiosk: config, identity, registration, self-test, planogram, label.",
    )
    parser.add_argument("--version", action="version", version=f"kiosk-provision {__version__}")
    parser.add_argument(
        "--lang",
        dest="msg_lang",
        choices=("zh", "en"),
        help="language of this command's messages (default: $KIOSK_LANG, else the locale)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    init.add_parser(sub)
    pins.add_parser(sub)
    keys.add_parser(sub)
    register.add_parser(sub)
    selftest.add_parser(sub)
    status.add_parser(sub)
    label.add_parser(sub)
    pg = sub.add_parser("planogram", help="import / export the planogram CSV")
    pg.add_argument("action", choices=["import", "export"])
    pg.add_argument("rest", nargs=argparse.REMAINDER)
    service.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    install_words(sys.argv[1:] if argv is None else argv)  # argparse's words too
    parser = build_parser()
    args = parser.parse_args(argv)
    use_lang(args.msg_lang)
    # the technician reads our own messages; library warnings (link retries...) only clutter.
    # The kiosk's redacted line format (kiosk.log): a token or key never reaches the screen
    handler = logging.StreamHandler()
    handler.setFormatter(formatter("kv"))
    logging.basicConfig(level=logging.ERROR, handlers=[handler])
    if args.command == "planogram":
        from kiosk.cli import main as kiosk_main

        return kiosk_main(["planogram", args.action, *args.rest])
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return exitcodes.USAGE
    try:
        return int(func(args))
    except OSError as e:  # a path the technician gave that cannot be used: no traceback
        print(say_os_error(e), file=sys.stderr)
        return exitcodes.FAIL
    except (StoreError, sqlite3.Error) as e:  # a corrupt or unusable store: no traceback
        print(say_store_error(e), file=sys.stderr)
        return exitcodes.FAIL
    except KeyboardInterrupt:
        print("\ninterrupted")
        return exitcodes.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
