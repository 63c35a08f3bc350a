"""`kiosk-provision`: the field technician's tool to set a kiosk up.

Owns: the technician-facing commands. Subcommands that touch shared state (planogram, store)
reuse the `kiosk` library functions; nothing is implemented twice.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kiosk import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk-provision",
        description="Set up a kiosk: config, identity, registration, self-test, planogram, label.",
    )
    parser.add_argument("--version", action="version", version=f"kiosk-provision {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    pg = sub.add_parser("planogram", help="import / export the planogram CSV")
    pg.add_argument("action", choices=["import", "export"])
    pg.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "planogram":
        from kiosk.cli import main as kiosk_main

        return kiosk_main(["planogram", args.action, *args.rest])
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
