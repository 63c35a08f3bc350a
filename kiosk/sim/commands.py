"""The simulator's side of the `kiosk` command: the one door from kiosk/cli.py into kiosk.sim.

Owns: the subcommands that drive the simulated world (`demo`, `emulator`, `province-sim`,
`fleet-sim`, `screenshot`), the demo data behind `kiosk store seed-demo` and
`kiosk catalog summary --demo`, and the test features of `kiosk run` (`test_run`:
`--test-payments`, `--script buy3`, `--pay-via-province`; kiosk/cli.py hands it to
kiosk/cli_run.py's `register`). kiosk/cli.py imports this module (lazily, when it builds its
parser or runs one of those commands) and nothing else of kiosk.sim; the import-linter contract
"production code never imports the simulator" in pyproject.toml allows exactly that one import,
so every other way from the kiosk into the simulator fails the test command. Light to import
(the `kiosk` command builds its parser with it on every run): the demo data is imported only
when a command uses it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.core.catalog import Catalog
from kiosk.core.planogram import SlotKind
from kiosk.core.stock import StockChange, StockReason

if TYPE_CHECKING:
    from kiosk.controller import Controller
    from kiosk.store import Store

__all__ = ["demo_catalog", "registrars", "seed_demo", "test_run"]


def registrars() -> list[Callable[[Any, argparse.ArgumentParser], None]]:
    """`register(subparsers, common_parent)` of each simulator subcommand."""
    from kiosk.sim.cli_emulator import register as emulator
    from kiosk.sim.cli_province import register as province
    from kiosk.sim.cli_screenshot import register as screenshot
    from kiosk.sim.demo import register as demo
    from kiosk.sim.fleet import register as fleet

    return [demo, emulator, province, fleet, screenshot]


def test_run(
    args: argparse.Namespace, say: Callable[[str], None]
) -> tuple[bytes | None, Callable[[Controller], int] | None]:
    """`kiosk run`'s test features (kiosk.cli_run.TestRun): with `--test-payments` a throwaway
    test payment signer whose key the kiosk trusts; with `--script buy3` the scripted shopper
    (kiosk.sim.shopper.script_buy3), paying with that signer or, with `--pay-via-province`,
    printing the pay URL and waiting for the province's confirmation."""
    from kiosk.sim.shopper import TestPaymentSource, script_buy3

    source = TestPaymentSource() if args.test_payments else None

    def buy3(controller: Controller) -> int:
        return script_buy3(
            controller,
            source,
            say,
            timeout=args.timeout,
            pay_via_province=args.pay_via_province,
        )

    return (
        source.public_key if source is not None else None,
        buy3 if args.script == "buy3" else None,
    )


def demo_catalog() -> Catalog:
    """The demo catalog (kiosk.sim.demo_data), for `kiosk catalog summary --demo`."""
    from kiosk.sim import demo_data

    return demo_data.demo_catalog()


def seed_demo(store: Store, images_dir: Path, kind: SlotKind) -> tuple[Catalog, int, int]:
    """Load the demo catalog, a demo planogram of `kind` and its stock into `store`, and write
    the demo product images into `images_dir`. Returns (catalog, slots, images written)."""
    from kiosk.sim.demo_data import demo_planogram, demo_stock, write_demo_images

    catalog = demo_catalog()
    planogram = demo_planogram(kind)
    store.catalog.replace(catalog)
    store.planogram.replace(planogram, allow_drop_stocked=True)
    for slot_no, level in demo_stock(planogram).items():
        current = store.stock.level(slot_no)
        if level != current:
            store.stock.apply(
                StockChange(slot_no, level - current, StockReason.COUNT_CORRECTION, "seed-demo")
            )
    images = write_demo_images(images_dir)
    return catalog, len(planogram), len(images)
